//! Data formats end to end through the dvx binary: the same records as
//! JSONL, as Parquet written by pyarrow and as a `datasets.save_to_disk`
//! folder give the same dedup kept set and the same split, and outs are
//! written in the format their extension names.

use std::path::Path;

use dvx_records::{read_all, Record};

use crate::support::Project;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(name)
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

fn records(p: &Project, rel: &str) -> Vec<Record> {
    read_all(&p.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn same_records_in_any_container_give_the_same_kept_set_and_split() {
    let p = Project::new();
    for name in ["seed.jsonl", "seed.parquet", "seed_hf", "seed_shards"] {
        copy_tree(&fixture(name), &p.path(name));
    }
    let mut yaml = String::from("stages:\n");
    for (tag, dep) in [("j", "seed.jsonl"), ("p", "seed.parquet"), ("h", "seed_hf"), ("s", "seed_shards")] {
        yaml.push_str(&format!(
            "  dedup_{tag}:\n    kind: dedup\n    deps: [{dep}]\n    outs: [kept_{tag}.jsonl]\n    \
             params: {{fields: [instruction, response]}}\n  \
             split_{tag}:\n    kind: split\n    deps: [{dep}]\n    outs: [train_{tag}.parquet, valid_{tag}.jsonl.zst]\n    \
             params: {{ratio: [0.75, 0.25], seed: 3}}\n"
        ));
    }
    p.write("dvx.yaml", &yaml);
    p.dvx(&["run"]).ok();
    let seed = records(&p, "seed.jsonl");
    let kept = records(&p, "kept_j.jsonl");
    assert!(kept.len() < seed.len() && !kept.is_empty(), "{} of {}", kept.len(), seed.len());
    let (train, valid) = (records(&p, "train_j.parquet"), records(&p, "valid_j.jsonl.zst"));
    assert_eq!(train.len() + valid.len(), seed.len());
    assert!(!train.is_empty() && !valid.is_empty());
    for tag in ["p", "h", "s"] {
        assert_eq!(records(&p, &format!("kept_{tag}.jsonl")), kept, "dedup of {tag}");
        assert_eq!(records(&p, &format!("train_{tag}.parquet")), train, "split of {tag}");
        assert_eq!(records(&p, &format!("valid_{tag}.jsonl.zst")), valid, "split of {tag}");
    }
    // The Parquet outs themselves are the same bytes whatever the input container.
    let bytes = std::fs::read(p.path("train_j.parquet")).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(std::fs::read(p.path("train_p.parquet")).unwrap(), bytes);
}

#[test]
fn a_parquet_column_of_no_json_type_is_named() {
    let p = Project::new();
    copy_tree(&fixture("binary.parquet"), &p.path("in.parquet"));
    p.write("dvx.yaml", "stages:\n  f:\n    kind: filter\n    deps: [in.parquet]\n    outs: [o.jsonl]\n    params: {}\n");
    let run = p.dvx(&["run"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(err.contains("in.parquet: column `blob` has Arrow type Binary"), "{err}");
}

#[test]
fn a_record_out_no_writer_supports_fails_at_load_naming_it() {
    let p = Project::new();
    p.write("in.jsonl", "{\"instruction\": \"q\", \"response\": \"a\"}\n");
    p.write(
        "dvx.yaml",
        "stages:\n  f:\n    kind: filter\n    deps: [in.jsonl]\n    outs: [kept.jsonl, rejects.csv]\n    params: {}\n",
    );
    let run = p.dvx(&["run"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(err.contains("out of stage `f` (filter): `rejects.csv`: records are written"), "{err}");
    assert!(!p.path("kept.jsonl").exists(), "nothing may run");
}
