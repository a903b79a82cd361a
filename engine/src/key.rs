//! Stage keys.
//!
//! A key is blake3 over a canonical, length-prefixed encoding of:
//! the key scheme version, the stage kind and its implementation version,
//! the normalised params (as the kind parsed them, defaults filled in, see
//! [`normalised_params`]) as canonical JSON (keys sorted), the interpolated `cmd`, the declared
//! env (sorted), the stage folder and out paths (relative to the root wdir),
//! each dep's path, kind and content hash in declared order, and the stage's
//! fingerprint (resolved git commits, remote ETags).
//!
//! Never in a key: timestamps, absolute paths of the workspace, map iteration
//! order, the stage's name (two stages doing the same work share results).
//!
//! Scheme v2 (this one) hashes normalised params; v1 hashed them as written,
//! so `seed: 0` and no `seed` were two keys.

use dvx_cache::{canonical_json, Hash, OutputKind, StageKey};

/// Everything a key is made of.
#[derive(Debug, Clone)]
pub struct KeyInputs<'a> {
    /// The kind: two kinds with equal params are still different work.
    pub kind: &'a str,
    /// The kind's implementation version: bumping it invalidates every key of the kind.
    pub version: u32,
    /// The normalised params, hashed as canonical JSON (key order does not matter).
    pub params: &'a serde_json::Value,
    /// `cmd` after `${…}` interpolation: what actually runs.
    pub cmd: Option<&'a str>,
    /// The `env:` the stage declares (the ambient environment is not in the key).
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// The folder the stage runs in, relative to the workspace.
    pub cwd: &'a str,
    /// Where the outputs go: the same work written elsewhere is another key.
    pub outs: &'a [String],
    /// Deps: path, kind, hash.
    pub deps: &'a [(String, OutputKind, Hash)],
    /// Extra facts from the stage.
    pub fingerprint: Option<&'a serde_json::Value>,
}

struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt(&mut self, s: Option<&[u8]>) {
        match s {
            None => {
                self.0.update(&[0]);
            }
            Some(b) => {
                self.0.update(&[1]);
                self.bytes(b);
            }
        }
    }
}

impl<'a> KeyInputs<'a> {
    /// The key inputs of `def`, given its normalised params, its deps'
    /// hashes and its fingerprint.
    pub fn for_stage(
        def: &'a crate::spec::StageDef,
        version: u32,
        params: &'a serde_json::Value,
        deps: &'a [(String, OutputKind, Hash)],
        fingerprint: Option<&'a serde_json::Value>,
    ) -> Self {
        KeyInputs {
            kind: &def.kind,
            version,
            params,
            cmd: def.cmd.as_deref(),
            env: &def.env,
            cwd: &def.cwd,
            outs: &def.outs,
            deps,
            fingerprint,
        }
    }

    /// The stage key.
    pub fn key(&self) -> StageKey {
        let mut h = KeyHasher(blake3::Hasher::new());
        h.str("dvx-stage-key-v2");
        h.str(self.kind);
        h.bytes(&self.version.to_le_bytes());
        h.bytes(&canonical_json(self.params));
        h.opt(self.cmd.map(str::as_bytes));
        h.bytes(&(self.env.len() as u64).to_le_bytes());
        for (k, v) in self.env {
            h.str(k);
            h.str(v);
        }
        h.str(self.cwd);
        h.bytes(&(self.outs.len() as u64).to_le_bytes());
        for o in self.outs {
            h.str(o);
        }
        h.bytes(&(self.deps.len() as u64).to_le_bytes());
        for (p, k, hash) in self.deps {
            h.str(p);
            h.str(match k {
                OutputKind::File => "file",
                OutputKind::Dir => "dir",
            });
            h.str(hash.as_str());
        }
        h.opt(self.fingerprint.map(canonical_json).as_deref());
        StageKey::from_blake3(h.0.finalize())
    }
}

impl KeyInputs<'_> {
    /// The key of one shard of a sharded stage (`shards: N`): these inputs
    /// with the one dep's hash replaced by its part's, under another scheme
    /// name. Neither the shard's index nor the count is in it, so a shard
    /// whose records did not change keeps its key whatever moved around it.
    pub fn shard_key(&self, part: &Hash) -> StageKey {
        let path = self.deps.first().map(|d| d.0.clone()).unwrap_or_default();
        let deps = [(path, OutputKind::File, part.clone())];
        let whole = KeyInputs { deps: &deps, ..self.clone() }.key();
        let mut h = KeyHasher(blake3::Hasher::new());
        h.str("dvx-shard-key-v1");
        h.str(whole.as_str());
        StageKey::from_blake3(h.0.finalize())
    }
}

/// The params of `def` as its kind normalises them for the key: parsed,
/// with defaults filled in, so an explicit default is the same stage as an
/// omitted one. `cmd` params are kept as written.
pub fn normalised_params(
    def: &crate::spec::StageDef,
    stage: &dyn crate::Stage,
) -> Result<serde_json::Value, crate::StageFailure> {
    stage.normalised_params(&def.params).map_err(crate::StageFailure::from)
}

/// Ask a stage for its fingerprint (facts beyond params and deps), with its
/// paths resolved against the workspace `wdir`.
pub fn fingerprint(
    wdir: &std::path::Path,
    def: &crate::spec::StageDef,
    stage: &dyn crate::Stage,
) -> Result<Option<serde_json::Value>, crate::StageFailure> {
    let cwd = crate::abs(wdir, &def.cwd);
    let deps: Vec<std::path::PathBuf> = def.deps.iter().map(|d| crate::abs(wdir, d)).collect();
    stage.fingerprint(&crate::FingerprintContext { cwd: &cwd, deps: &deps, params: &def.params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_param_order_but_not_values() {
        let env = Default::default();
        let p1 = serde_json::json!({"a": 1, "b": 2});
        let p2: serde_json::Value = serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap();
        let p3 = serde_json::json!({"a": 1, "b": 3});
        let k = |p| {
            KeyInputs {
                kind: "cmd",
                version: 1,
                params: p,
                cmd: Some("x"),
                env: &env,
                cwd: "",
                outs: &[],
                deps: &[],
                fingerprint: None,
            }
            .key()
        };
        assert_eq!(k(&p1), k(&p2));
        assert_ne!(k(&p1), k(&p3));
    }
}
