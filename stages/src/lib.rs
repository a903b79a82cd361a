//! Built-in stage kinds, registered. The kinds live in crates grouped by the
//! heavy dependency they bring (`dvx-stages-data`: none; `-extract`: ruff's
//! parser, tl; `-net`: reqwest; `-ml`: candle), each implementing
//! [`dvx_stage_api::TypedStage`] on the shared `dvx-stage-kit`;
//! [`builtin_registry`] lists them all. Builds against the stage API alone,
//! never the engine.

use dvx_stage_api::Registry;

pub use dvx_stages_data as data;
pub use dvx_stages_extract as extract;
pub use dvx_stages_extract::ast_extract;
pub use dvx_stages_ml as ml;
pub use dvx_stages_net as net;

#[cfg(test)]
mod cross_kind_tests;
#[cfg(test)]
mod params_docs;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod shipped_pipelines;

/// A registry with every built-in stage kind.
pub fn builtin_registry() -> Registry {
    use dvx_stages_data::{balance, cmd, convert, dedup, export, filter, merge, multiply, score, shards, split, validate};
    use dvx_stages_extract::{ast_extract, html_extract};
    use dvx_stages_ml::{benchmark, export_model, scores, train};
    use dvx_stages_net::{clone, fetch, llm};
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
