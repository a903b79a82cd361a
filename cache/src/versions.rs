//! Version records: one pipeline run, named by the blake3 of its canonical
//! body (pipeline, resolved stage specs, sources, stage keys and outputs).
//! Timestamps and metrics live beside the body, outside the hash, so a run
//! that reaches the same data reaches the same version hash.

use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};
use crate::hash::Hash;
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
    /// Pipeline file it came from.
    pub pipeline_file: String,
    /// Stage name → metrics.
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    /// Stage name → status in the run that wrote this record.
    #[serde(default)]
    pub statuses: serde_json::Map<String, serde_json::Value>,
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
    use super::canonical_json;

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

impl Cache {
    /// Store a version; returns its hash.
    pub fn put_version(&self, body: serde_json::Value, meta: VersionMeta) -> Result<Hash> {
        let hash = Hash::of_bytes(&canonical_json(&body));
        let path = self.versions_dir().join(format!("{hash}.json"));
        if path.exists() {
            // Same data as an earlier run: the record (and its first creation time) stands.
            return Ok(hash);
        }
        let rec = VersionRecord { hash: hash.clone(), body, meta };
        let bytes = serde_json::to_vec_pretty(&rec).expect("version serialises");
        self.write_record(&path, &bytes)?;
        Ok(hash)
    }

    /// Whether a version record exists.
    pub fn has_version(&self, hash: &Hash) -> bool {
        self.versions_dir().join(format!("{hash}.json")).exists()
    }

    /// Read a version by full hash.
    pub fn get_version(&self, hash: &Hash) -> Result<VersionRecord> {
        let path = self.versions_dir().join(format!("{hash}.json"));
        let bytes = std::fs::read(&path).map_err(|e| CacheError::Io { path: path.clone(), source: e })?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::BadRecord { path, message: e.to_string() })
    }

    /// Every version hash in the cache.
    pub fn version_hashes(&self) -> Result<Vec<Hash>> {
        Ok(read_dir_sorted(&self.versions_dir())?
            .iter()
            .filter_map(|p| p.file_name()?.to_str()?.strip_suffix(".json").and_then(Hash::parse))
            .collect())
    }

    /// Every version, newest first.
    pub fn versions(&self) -> Result<Vec<VersionRecord>> {
        let mut v = Vec::new();
        for h in self.version_hashes()? {
            v.push(self.get_version(&h)?);
        }
        v.sort_by(|a, b| b.meta.created.cmp(&a.meta.created).then(a.hash.cmp(&b.hash)));
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
        let path = self.versions_dir().join(format!("{hash}.json"));
        std::fs::remove_file(&path).map_err(|e| CacheError::Io { path, source: e })
    }
}
