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
    r
}
