//! Built-in stage kinds. Each kind is one module implementing
//! [`dvx_stage_api::TypedStage`] (registered through the
//! [`dvx_stage_api::Typed`] adapter); [`builtin_registry`] lists them all.
//! This crate builds against the stage API alone, never the engine.

use dvx_stage_api::Registry;

pub mod ast_extract;
mod balance;
mod benchmark;
mod clone;
mod cmd;
mod convert;
mod dedup;
mod example_record;
mod export;
mod export_model;
mod fetch;
mod field_check;
mod filter;
mod grep_sim;
mod html_extract;
mod llm;
mod merge;
mod multiply;
#[cfg(test)]
mod params_docs;
#[cfg(test)]
mod pipeline_tests;
mod plots;
pub mod records;
mod reuse;
mod score;
mod scores;
mod seeded;
mod shards;
#[cfg(test)]
mod shipped_pipelines;
mod source_files;
mod split;
mod support;
#[cfg(test)]
mod testkit;
mod train;
mod validate;

/// A registry with every built-in stage kind.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.register_typed(cmd::Cmd);
    r.register_typed(balance::Balance);
    r.register_typed(filter::Filter);
    r.register_typed(score::Score);
    r.register_typed(merge::Merge);
    r.register_typed(split::Split);
    r.register_typed(validate::Validate);
    r.register_typed(dedup::Dedup);
    r.register_typed(dedup::MinhashIndex);
    r.register_typed(ast_extract::AstExtract);
    r.register_typed(clone::CloneRepos);
    r.register_typed(multiply::Multiply);
    r.register_typed(fetch::Fetch);
    r.register_typed(html_extract::HtmlExtract);
    r.register_typed(train::Train);
    r.register_typed(export_model::ExportModel);
    r.register_typed(benchmark::Benchmark);
    r.register_typed(scores::Scores);
    r.register_typed(convert::Convert);
    r.register_typed(export::Export);
    r.register_typed(llm::Generate);
    r.register_typed(llm::Judge);
    shards::register(&mut r);
    r
}
