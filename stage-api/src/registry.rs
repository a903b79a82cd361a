//! The set of stage kinds a pipeline may use. The binary fills it with the
//! built-ins; the engine only looks kinds up by name.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::shard::RecordShards;
use crate::stage::Stage;
use crate::typed::{Typed, TypedStage};

/// Stage kinds by name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
    /// The kinds that may be sharded (`shards: N`), with how.
    shards: BTreeMap<&'static str, Arc<dyn RecordShards>>,
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

    /// Let stages of `kind` take `shards: N`, split and merged by `shards`.
    pub fn register_shards(&mut self, kind: &'static str, shards: Arc<dyn RecordShards>) {
        self.shards.insert(kind, shards);
    }

    /// How stages of `kind` are sharded; `None` when the kind cannot be.
    pub fn shards(&self, kind: &str) -> Option<&Arc<dyn RecordShards>> {
        self.shards.get(kind)
    }

    /// Every registered kind name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}
