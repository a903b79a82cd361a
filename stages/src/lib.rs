//! Built-in stage kinds. Each kind is one module implementing
//! [`dvx_engine::Stage`]; [`builtin_registry`] lists them all.

use std::sync::Arc;

use dvx_engine::Registry;

mod cmd;
mod dedup;
pub mod records;

/// A registry with every built-in stage kind.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(cmd::Cmd));
    r.register(Arc::new(dedup::Dedup));
    r.register(Arc::new(dedup::MinhashIndex));
    r
}
