//! Tests that chain kinds from different crates (each crate's own tests
//! see only its kinds).

use std::path::Path;

use dvx_stage_kit::source_files::testing::run;
use dvx_stages_extract::ast_extract::AstExtract;
use dvx_stages_net::clone::CloneRepos;
use serde_json::{json, Value};

/// The shipped example repositories, cloned from their bundles at `v1.0`,
/// give seed 004's phase-6 counts (300 grep / 150 read / 100 direct).
#[test]
fn example_bundles_give_the_phase6_counts() {
    let repo_root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repos: Vec<Value> = ["webkit", "clikit", "modelkit"]
        .iter()
        .map(|n| json!({"name": n, "url": format!("examples/repos/{n}.bundle"), "rev": "v1.0"}))
        .collect();
    let cloned = dir.path().join("repos");
    let (m, log) =
        run(CloneRepos, repo_root, &[], std::slice::from_ref(&cloned), json!({ "repos": repos }));
    m.unwrap_or_else(|e| panic!("{}\n{log}", e.message));
    let out = dir.path().join("examples.jsonl");
    let (m, _) = run(AstExtract, repo_root, &[cloned], std::slice::from_ref(&out), json!({"seed": 6}));
    let m = m.unwrap();
    if let Ok(keep) = std::env::var("DVX_KEEP_EXAMPLES") {
        std::fs::copy(&out, keep).unwrap();
    }
    assert_eq!(m["parse_failed"], json!(0));
    assert_eq!(m["patterns"]["grep"]["produced"], json!(300));
    assert_eq!(m["patterns"]["read"]["produced"], json!(150));
    assert_eq!(m["patterns"]["direct"]["produced"], json!(100));
}
