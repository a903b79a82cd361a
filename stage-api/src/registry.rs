//! The set of stage kinds a pipeline may use. The binary fills it with the
//! built-ins; the engine only looks kinds up by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stage::Stage;
use crate::typed::{Typed, TypedStage};

/// Stage kinds by name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Add a kind; a later registration of the same name replaces the earlier.
    pub fn register(&mut self, stage: Arc<dyn Stage>) {
        self.kinds.insert(stage.kind(), stage);
    }

    /// Add a typed kind through the [`Typed`] adapter.
    pub fn register_typed<T: TypedStage>(&mut self, kind: T) {
        self.register(Arc::new(Typed::new(kind)));
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Stage>> {
        self.kinds.get(name)
    }

    /// Every registered kind name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}
