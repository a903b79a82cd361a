//! Built-in stage kinds. Each kind is one module implementing
//! [`dvx_engine::Stage`]; [`builtin_registry`] lists them all.

use std::sync::Arc;

use dvx_engine::Registry;

mod balance;
mod cmd;
mod filter;
mod merge;
mod score;
mod split;
mod validate;
mod dedup;
pub mod ast_extract;
mod clone;
mod example_record;
mod fetch;
mod grep_sim;
mod html_extract;
mod multiply;
mod seeded;
#[cfg(test)]
mod shipped_pipelines;
mod source_files;
mod stage_params;
mod benchmark;
mod train;
pub mod records;
mod support;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod testkit;

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
