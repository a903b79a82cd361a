//! Built-in stage kinds. Each kind is one module implementing
//! [`dvx_engine::Stage`]; [`builtin_registry`] lists them all.

use std::sync::Arc;

use dvx_engine::Registry;

pub mod ast_extract;
mod balance;
mod benchmark;
mod clone;
mod cmd;
mod dedup;
mod example_record;
mod fetch;
mod filter;
mod grep_sim;
mod html_extract;
mod merge;
mod multiply;
#[cfg(test)]
mod pipeline_tests;
pub mod records;
mod score;
mod seeded;
#[cfg(test)]
mod shipped_pipelines;
mod source_files;
mod split;
mod stage_params;
mod support;
#[cfg(test)]
mod testkit;
mod train;
mod validate;

/// A registry with every built-in stage kind.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(cmd::Cmd));
    r.register(Arc::new(balance::Balance));
    r.register(Arc::new(filter::Filter));
    r.register(Arc::new(score::Score));
    r.register(Arc::new(merge::Merge));
    r.register(Arc::new(split::Split));
    r.register(Arc::new(validate::Validate));
    r.register(Arc::new(dedup::Dedup));
    r.register(Arc::new(dedup::MinhashIndex));
    r.register(Arc::new(ast_extract::AstExtract));
    r.register(Arc::new(clone::CloneRepos));
    r.register(Arc::new(multiply::Multiply));
    r.register(Arc::new(fetch::Fetch));
    r.register(Arc::new(html_extract::HtmlExtract));
    r.register(Arc::new(train::Train));
    r.register(Arc::new(benchmark::Benchmark));
    r
}
