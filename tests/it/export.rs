//! `export` end to end: seed records split, then written as mlx-lm's data
//! folder and as a Hub folder (read back from Parquet by its Parquet seed),
//! cached as folder outputs and restored bit for bit.

use std::path::Path;

use dvx_records::read_all;

use crate::support::Project;

fn seed() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/seed.jsonl");
    std::fs::read_to_string(p).unwrap()
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                out.push((e.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&e).unwrap()));
            }
        }
    }
    out.sort();
    out
}

const PIPELINE: &str = "stages:
  split:
    kind: split
    deps: [seed.jsonl]
    outs: [train.parquet, val.jsonl, test.jsonl]
    params: {ratio: [0.6, 0.2, 0.2], seed: 1}
  mlx:
    kind: export
    deps: [train.parquet, val.jsonl, test.jsonl]
    outs: [export/mlx]
    params: {layout: mlx_lm}
  hub:
    kind: export
    deps: [train.parquet, val.jsonl, test.jsonl]
    outs: [export/hub]
    params: {layout: hub, license: cc-by-4.0, name: seed-002}
";

#[test]
fn splits_exported_for_mlx_and_the_hub_and_restored() {
    let p = Project::new();
    p.write("seed.jsonl", &seed());
    p.write("dvx.yaml", PIPELINE);
    let run = p.dvx(&["run"]).ok();
    let version = run.version();
    let n = |rel: &str| read_all(&p.path(rel)).unwrap().len();
    let (train, val, test) = (n("train.parquet"), n("val.jsonl"), n("test.jsonl"));
    assert_eq!(train + val + test, 24);
    // mlx-lm: chat lines of user then assistant, the seed's response as the answer.
    let mlx = p.read("export/mlx/train.jsonl");
    assert_eq!(mlx.lines().count(), train);
    for line in mlx.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let m = v["messages"].as_array().unwrap();
        assert_eq!((m[0]["role"].as_str(), m[1]["role"].as_str()), (Some("user"), Some("assistant")));
        assert!(m[1]["content"].as_str().unwrap().starts_with("Step "), "{line}");
        assert_eq!(v.as_object().unwrap().len(), 1, "{line}");
    }
    assert_eq!(p.read("export/mlx/valid.jsonl").lines().count(), val);
    // Hub: the Parquet split holds the split's records; the card counts them.
    assert_eq!(read_all(&p.path("export/hub/data/train-00000-of-00001.parquet")).unwrap(), read_all(&p.path("train.parquet")).unwrap());
    let card = p.read("export/hub/README.md");
    assert!(card.starts_with("---\n"), "{card}");
    assert!(card.contains("license: cc-by-4.0"), "{card}");
    assert!(card.contains(&format!("num_examples: {train}")), "{card}");
    let train_hash = blake3::hash(&std::fs::read(p.path("train.parquet")).unwrap()).to_hex().to_string();
    assert!(card.contains(&train_hash), "the card names train.parquet's object hash:\n{card}");

    // Both folders are outputs of the version: restored bit for bit.
    let before = (files(&p.path("export/mlx")), files(&p.path("export/hub")));
    let to = p.path("restored");
    p.dvx(&["checkout", &version, "--to", to.to_str().unwrap()]).ok();
    assert_eq!((files(&to.join("export/mlx")), files(&to.join("export/hub"))), before);
    // A second run is all cached and prints the same version.
    assert_eq!(p.dvx(&["run"]).ok().version(), version);
}
