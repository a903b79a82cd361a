//! The canonical record hash: a record's identity for dedup, split and
//! balance, whatever container it was read from.

use dvx_cache::canonical_json;
use serde_json::Value;

use crate::Record;

/// A 64-bit hash of a record's canonical JSON (or of the named fields
/// only, by dotted path) mixed with `seed`. Keys are sorted and numbers
/// written one way ([`canonical_json`], the encoding the cache uses for
/// keys), so the same record read from JSONL or Parquet hashes the same, and
/// it hashes the same wherever it sits in its file.
pub fn record_hash(record: &Record, seed: u64, fields: &[String]) -> u64 {
    let text = if fields.is_empty() {
        canonical_json(&Value::Object(record.clone()))
    } else {
        let mut text = Vec::new();
        for f in fields {
            // Length-prefixed so field boundaries cannot shift.
            let part = canonical_json(field(record, f).unwrap_or(&Value::Null));
            text.extend_from_slice(format!("{}:", part.len()).as_bytes());
            text.extend_from_slice(&part);
        }
        text
    };
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(&text);
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The value at a dotted field path (`meta.category`, `messages.0.content`).
pub fn field<'a>(record: &'a Record, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = record.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}
