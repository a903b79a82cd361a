//! Version records: one pipeline run, named by the blake3 of its canonical
//! body (pipeline, resolved stage specs, sources, stage keys and outputs).
//! Timestamps and metrics live beside the body, outside the hash, so a run
//! that reaches the same data reaches the same version hash.

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};
use crate::hash::{Hash, StageKey};
use crate::objects::OutputRef;
use crate::runs::read_dir_sorted;
use crate::store::Cache;

/// A version: its hashed body and its unhashed meta.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version hash (blake3 of the canonical `body`).
    pub hash: Hash,
    /// What the hash covers; its shape is the engine's.
    pub body: serde_json::Value,
    /// When and how it was made, and per-stage metrics.
    pub meta: VersionMeta,
}

/// Unhashed facts about a version.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Unix seconds of the latest run that produced it.
    pub created: u64,
    /// The nanoseconds within that second: two versions made in one second
    /// still sort in the order they were made (`gc --keep-last` relies on it).
    /// Records written before it existed read as 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created_nanos: u32,
    /// Pipeline file it came from.
    pub pipeline_file: String,
    /// Stage name → metrics.
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Stage name → status in the run that wrote this record.
    #[serde(default)]
    pub statuses: serde_json::Map<String, serde_json::Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl VersionMeta {
    /// Meta stamped with the current time.
    pub fn now(pipeline_file: String) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        VersionMeta { created: now.as_secs(), created_nanos: now.subsec_nanos(), pipeline_file, ..Default::default() }
    }

    /// When it was made, to the nanosecond where known: the newest sorts last.
    pub fn made_at(&self) -> (u64, u32) {
        (self.created, self.created_nanos)
    }
}

/// The canonical JSON bytes of a value: object keys sorted, no whitespace.
/// Written directly (no sorted copy of the tree): keys and versions hash it
/// on every run.
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("a string serialises");
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::{canonical_json, VersionMeta};

    #[test]
    fn versions_made_in_one_second_list_newest_first_whatever_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = crate::Cache::open(dir.path(), crate::CacheOptions::default()).unwrap();
        let meta = |nanos| VersionMeta { created: 1_700_000_000, created_nanos: nanos, ..Default::default() };
        let made: Vec<_> = (0..6u32)
            .map(|i| cache.put_version(serde_json::json!({ "n": i }), meta(1000 * (i + 1))).unwrap())
            .collect();
        let listed: Vec<_> = cache.versions().unwrap().into_iter().map(|v| v.hash).collect();
        assert_eq!(listed, made.into_iter().rev().collect::<Vec<_>>());
        // Records from before the field read as the start of their second.
        let old: VersionMeta = serde_json::from_str(r#"{"created": 5, "pipeline_file": "p.yaml"}"#).unwrap();
        assert_eq!(old.made_at(), (5, 0));
        assert!(!serde_json::to_string(&old).unwrap().contains("created_nanos"));
    }

    #[test]
    fn canonical_is_sorted_compact_json() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b": [1, {"z": "é\n", "a": null}], "a": 1.5, "c": {"y": true, "x": -2}}"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":1.5,"b":[1,{"a":null,"z":"é\n"}],"c":{"x":-2,"y":true}}"#
        );
    }
}

/// The parts of a version body the cache reads: every object it names.
/// (The body's full shape is the engine's.)
#[derive(Deserialize, Default)]
pub(crate) struct Refs {
    #[serde(default)]
    pub stages: Vec<StageRefs>,
    #[serde(default)]
    pub sources: Vec<OutputRef>,
}

#[derive(Deserialize)]
pub(crate) struct StageRefs {
    /// Its shape is checked as the body is read.
    pub key: Option<StageKey>,
    #[serde(default)]
    pub outputs: Vec<OutputRef>,
}

impl Refs {
    /// Read and check a body: hashes well formed, every path a clean relative path.
    pub(crate) fn of(body: &serde_json::Value) -> std::result::Result<Refs, String> {
        let refs = Refs::deserialize(body).map_err(|e| e.to_string())?;
        for o in refs.stages.iter().flat_map(|s| s.outputs.iter()) {
            crate::paths::check_rel_path(&o.path).map_err(|m| format!("output path: {m}"))?;
        }
        // A dep outside the workspace is recorded by its absolute path: kept, never restored.
        for o in &refs.sources {
            crate::paths::check_rel_path(o.path.strip_prefix('/').unwrap_or(&o.path))
                .map_err(|m| format!("source path: {m}"))?;
        }
        Ok(refs)
    }

    /// Every output and source it names.
    pub(crate) fn outputs(&self) -> impl Iterator<Item = &OutputRef> {
        self.stages.iter().flat_map(|s| s.outputs.iter()).chain(self.sources.iter())
    }
}

impl Cache {
    fn version_path(&self, hash: &Hash) -> std::path::PathBuf {
        self.versions_dir().join(format!("{hash}.json"))
    }

    /// Store a version; returns its hash. Refused unless every object it
    /// names is in this cache, so a printed version can always be restored;
    /// pins it (and them) for this handle's lease.
    pub fn put_version(&self, body: serde_json::Value, meta: VersionMeta) -> Result<Hash> {
        let hash = Hash::of_bytes(&canonical_json(&body));
        let path = self.version_path(&hash);
        let refs = Refs::of(&body).map_err(|message| CacheError::BadRecord { path: path.clone(), message })?;
        // Pins what is there, so a gc from now on keeps it.
        let outputs: Vec<OutputRef> = refs.outputs().cloned().collect();
        if let Some(&i) = self.missing(&outputs)?.first() {
            let o = &outputs[i];
            return Err(CacheError::MissingObject(format!("{} (of `{}`)", o.hash, o.path)));
        }
        let _gc = self.gc_shared()?;
        // Same data as an earlier run: the record (and its first creation time) stands.
        if self.get_version(&hash).is_err() {
            let rec = VersionRecord { hash: hash.clone(), body, meta };
            let bytes = serde_json::to_vec_pretty(&rec).expect("version serialises");
            self.write_record(&path, &bytes)?;
        }
        self.pin('v', [hash.as_str()])?;
        Ok(hash)
    }

    /// Keep an existing version alive for this handle's lease (a run that
    /// reached the same version as before); false if it is not there.
    pub fn keep_version(&self, hash: &Hash) -> Result<bool> {
        let _gc = self.gc_shared()?;
        if !self.has_version(hash) {
            return Ok(false);
        }
        self.pin('v', [hash.as_str()])?;
        Ok(true)
    }

    /// Whether a version record exists.
    pub fn has_version(&self, hash: &Hash) -> bool {
        self.version_path(hash).exists()
    }

    /// Read a version by full hash, checked: its body hashes to its name and
    /// names only clean relative paths. Anything else is a
    /// [`CacheError::BadRecord`] naming the file.
    pub fn get_version(&self, hash: &Hash) -> Result<VersionRecord> {
        let path = self.version_path(hash);
        let bytes = std::fs::read(&path).map_err(|e| CacheError::Io { path: path.clone(), source: e })?;
        let bad = |message: String| CacheError::BadRecord { path: path.clone(), message };
        let rec: VersionRecord = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if &rec.hash != hash {
            return Err(bad(format!("the record says it is version {}", rec.hash)));
        }
        let actual = Hash::of_bytes(&canonical_json(&rec.body));
        if &actual != hash {
            return Err(bad(format!("its body hashes to {}, not to its name: it was edited", actual.short())));
        }
        Refs::of(&rec.body).map_err(bad)?;
        Ok(rec)
    }

    /// Every version hash in the cache (files not named like one are left out).
    pub fn version_hashes(&self) -> Result<Vec<Hash>> {
        Ok(read_dir_sorted(&self.versions_dir())?
            .iter()
            .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(".json").and_then(Hash::parse))
            .collect())
    }

    /// Every readable version, newest first. A damaged record is skipped with
    /// a warning (`dvx cache verify` reports it): one bad file must not stop
    /// the team.
    pub fn versions(&self) -> Result<Vec<VersionRecord>> {
        let mut v = Vec::new();
        for h in self.version_hashes()? {
            match self.get_version(&h) {
                Ok(rec) => v.push(rec),
                Err(e) => tracing::warn!("skipping version {}: {e}", h.short()),
            }
        }
        v.sort_by(|a, b| b.meta.made_at().cmp(&a.meta.made_at()).then(a.hash.cmp(&b.hash)));
        Ok(v)
    }

    /// Resolve a unique prefix of a version hash.
    pub fn resolve_version(&self, prefix: &str) -> Result<Hash> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() < 4 {
            return Err(CacheError::Resolve(format!(
                "`{prefix}` is too short: give at least 4 characters of a version hash"
            )));
        }
        let matches: Vec<Hash> =
            self.version_hashes()?.into_iter().filter(|h| h.as_str().starts_with(&prefix)).collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(CacheError::Resolve(format!("no version starts with `{prefix}` in {}", self.root().display()))),
            n => Err(CacheError::Resolve(format!("`{prefix}` is ambiguous: {n} versions start with it"))),
        }
    }

    /// Remove a version record.
    pub(crate) fn remove_version(&self, hash: &Hash) -> Result<()> {
        let path = self.version_path(hash);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CacheError::Io { path, source: e }),
        }
    }
}
