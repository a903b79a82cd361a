//! Built-in stage kinds. Each kind is one module implementing
//! [`dvx_engine::Stage`]; [`builtin_registry`] lists them all.

use std::sync::Arc;

use dvx_engine::Registry;

mod benchmark;
mod cmd;
mod train;
pub mod records;

/// A registry with every built-in stage kind.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(cmd::Cmd));
    r.register(Arc::new(train::Train));
    r.register(Arc::new(benchmark::Benchmark));
    r
}
