//! Large objects are stored as content-defined chunks: appending records to
//! a dataset grows the cache by about the appended bytes, not by another
//! copy of every file; versions still restore bit for bit; verify checks
//! chunks and names the object a damaged chunk belongs to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::Project;

const PIPELINE: &str = r#"name: chunks
stages:
  keep:
    kind: filter
    deps: [data.jsonl]
    outs: [kept.jsonl]
    params:
      default: {field: keep, eq: true}
  split:
    kind: split
    deps: [kept.jsonl]
    outs: [train.jsonl, valid.jsonl]
    params: {ratio: [0.9, 0.1], seed: 7}
"#;

/// `n` records of about 1 KB each, numbered from `first`, text drawn from a
/// small vocabulary by a fixed generator: the same call gives the same bytes.
fn records(first: u64, n: u64) -> String {
    const WORDS: [&str; 16] = [
        "cache", "chunk", "record", "stage", "version", "append", "split", "filter", "model", "token", "window",
        "shard", "hash", "bytes", "train", "valid",
    ];
    let mut out = String::new();
    let mut x = first.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in first..first + n {
        let text: Vec<&str> = (0..150).map(|_| WORDS[(next() % 16) as usize]).collect();
        let keep = next() % 10 != 0;
        out.push_str(&format!(
            "{{\"id\":{i},\"category\":\"c{}\",\"keep\":{keep},\"text\":\"{}\"}}\n",
            i % 5,
            text.join(" ")
        ));
    }
    out
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if ft.is_file() {
            out.push(entry.path());
        }
    }
    out.sort();
    out
}

/// Bytes of every file under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    files_under(dir).iter().map(|f| std::fs::metadata(f).unwrap().len()).sum()
}

const FILES: [&str; 4] = ["data.jsonl", "kept.jsonl", "train.jsonl", "valid.jsonl"];

fn contents(p: &Project, root: &str) -> BTreeMap<&'static str, Vec<u8>> {
    FILES.iter().map(|f| (*f, std::fs::read(p.path(root).join(f)).unwrap())).collect()
}

#[test]
fn an_append_grows_the_cache_by_about_the_appended_bytes() {
    let p = Project::new();
    p.write("dvx.yaml", PIPELINE);
    let base = records(0, 10_000);
    assert!(base.len() > 9_000_000, "{} bytes", base.len());
    p.write("data.jsonl", &base);
    let v1 = p.dvx(&["run"]).ok().version();
    let first = contents(&p, "");
    let cache = p.path(".dvx/cache");
    let before = tree_bytes(&cache);
    assert!(cache.join("chunks-v1").is_dir(), "large outputs are stored as chunks");

    let appended = records(10_000, 1_000);
    p.write("data.jsonl", &(base + &appended));
    let v2 = p.dvx(&["run"]).ok().version();
    assert_ne!(v1, v2);
    let second = contents(&p, "");
    let grew = tree_bytes(&cache) - before;
    // Per stored file: three times the appended bytes plus 1% of its size.
    let allowed: u64 = second.values().map(|b| 3 * appended.len() as u64 + b.len() as u64 / 100).sum();
    eprintln!("appended {} bytes; cache grew by {grew} (allowed {allowed}; {before} before)", appended.len());
    assert!(grew <= allowed, "cache grew by {grew} bytes, more than {allowed}");

    // Both versions restore bit for bit.
    for (v, want, dir) in [(&v1, &first, "at-v1"), (&v2, &second, "at-v2")] {
        p.dvx(&["checkout", v, "--to", p.path(dir).to_str().unwrap()]).ok();
        assert!(contents(&p, dir) == *want, "checkout of {v} differs");
    }
    // In place, the outputs (the sources stay the user's).
    p.dvx(&["checkout", &v1]).ok();
    let now = contents(&p, "");
    for f in &FILES[1..] {
        assert!(now[f] == first[f], "{f} differs after checkout");
    }

    let clean = p.dvx(&["cache", "verify"]).ok().stdout();
    assert!(clean.contains("cache is clean"), "{clean}");

    // One flipped byte in one chunk: verify fails and names the object.
    let chunk = files_under(&cache.join("chunks-v1")).remove(0);
    let mut bytes = std::fs::read(&chunk).unwrap();
    bytes[10] ^= 0x20;
    std::fs::remove_file(&chunk).unwrap();
    std::fs::write(&chunk, &bytes).unwrap();
    let owners: Vec<String> = ["kept.jsonl", "train.jsonl", "data.jsonl"]
        .iter()
        .flat_map(|f| [blake3::hash(&first[f]).to_hex().to_string(), blake3::hash(&second[f]).to_hex().to_string()])
        .collect();
    let report = p.dvx(&["cache", "verify"]);
    assert_eq!(report.code(), 1);
    let text = report.stdout();
    let named = text.lines().filter(|l| l.starts_with("damaged object ")).collect::<Vec<_>>();
    assert!(!named.is_empty(), "{text}");
    for line in named {
        assert!(owners.iter().any(|h| line.contains(h.as_str())), "{line} names no stored file");
        assert!(line.contains("is corrupt"), "{line}");
    }
}
