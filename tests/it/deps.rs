//! The edges between our crates point one way. This reads every workspace
//! member's `Cargo.toml` and fails on an edge the table below does not allow,
//! naming it. A new member needs a row here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which of our crates each crate may depend on (normal, dev or build).
const ALLOWED: &[(&str, &[&str])] = &[
    ("dvx-stage-api", &[]),
    ("dvx-cache", &[]),
    ("dvx-engine", &["dvx-cache", "dvx-stage-api"]),
    ("dvx-records", &["dvx-stage-api", "dvx-cache"]),
    ("dvx-seeded", &[]),
    // The model knows nothing of stages, records or the cache.
    ("dvx-model", &["dvx-seeded"]),
    // The kinds' shared kit, and the kind crates grouped by heavy dependency.
    ("dvx-stage-kit", &["dvx-stage-api", "dvx-cache", "dvx-records", "dvx-seeded"]),
    ("dvx-stages-data", &["dvx-stage-api", "dvx-stage-kit", "dvx-cache", "dvx-records"]),
    ("dvx-stages-extract", &["dvx-stage-api", "dvx-stage-kit"]),
    ("dvx-stages-net", &["dvx-stage-api", "dvx-stage-kit", "dvx-cache"]),
    ("dvx-stages-ml", &["dvx-stage-api", "dvx-stage-kit", "dvx-model", "dvx-seeded"]),
    // The registry of every built-in kind.
    (
        "dvx-stages",
        &["dvx-stage-api", "dvx-stage-kit", "dvx-stages-data", "dvx-stages-extract", "dvx-stages-net", "dvx-stages-ml", "dvx-model"],
    ),
    ("dvx-serve", &["dvx-model"]),
    // dvx-stages-net: the binary builds the run's shared HTTP client from it.
    ("dvx", &["dvx-stage-api", "dvx-cache", "dvx-engine", "dvx-stages", "dvx-stages-net", "dvx-records", "dvx-serve"]),
];

fn read(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Each workspace package's name and manifest, the root included.
fn packages() -> BTreeMap<String, toml::Table> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = read(&root.join("Cargo.toml"));
    let members = manifest["workspace"]["members"].as_array().expect("workspace.members");
    let mut dirs = vec![root.clone()];
    dirs.extend(members.iter().map(|m| root.join(m.as_str().expect("member is a path"))));
    dirs.into_iter()
        .map(|dir| {
            let m = read(&dir.join("Cargo.toml"));
            let name = m["package"]["name"].as_str().expect("package.name").to_string();
            (name, m)
        })
        .collect()
}

/// The crates `manifest` depends on, by package name (a renamed dependency
/// counts under its `package`), with the table that names it.
fn dependencies(manifest: &toml::Table) -> Vec<(String, String)> {
    let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
    let mut tables: Vec<(String, &toml::Table)> =
        kinds.iter().filter_map(|k| Some((k.to_string(), manifest.get(*k)?.as_table()?))).collect();
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for (cfg, t) in targets {
            for k in kinds {
                if let Some(deps) = t.get(k).and_then(|d| d.as_table()) {
                    tables.push((format!("target.{cfg}.{k}"), deps));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (kind, deps) in tables {
        for (key, spec) in deps {
            let name = spec.get("package").and_then(|p| p.as_str()).unwrap_or(key);
            out.push((name.to_string(), kind.clone()));
        }
    }
    out
}

/// Every edge between our crates that `ALLOWED` does not allow, in words.
fn forbidden(packages: &BTreeMap<String, toml::Table>) -> Vec<String> {
    let ours: BTreeSet<&str> = packages.keys().map(String::as_str).collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = Vec::new();
    for (name, manifest) in packages {
        let Some(may) = allowed.get(name.as_str()) else {
            bad.push(format!("`{name}` is a workspace member with no row in ALLOWED (tests/it/deps.rs)"));
            continue;
        };
        for (dep, kind) in dependencies(manifest) {
            if ours.contains(dep.as_str()) && !may.contains(&dep.as_str()) {
                bad.push(format!("forbidden edge `{name}` -> `{dep}` (in [{kind}])"));
            }
        }
    }
    bad
}

#[test]
fn crate_edges_point_one_way() {
    let bad = forbidden(&packages());
    assert!(bad.is_empty(), "crate edges break the rule in docs/architecture.md:\n{}", bad.join("\n"));
}

#[test]
fn a_forbidden_edge_is_named() {
    let mut packages = packages();
    let stages = packages.get_mut("dvx-stages").expect("dvx-stages is a member");
    let dev: toml::Table = "dvx-engine = { workspace = true }".parse().unwrap();
    stages.insert("dev-dependencies".into(), toml::Value::Table(dev));
    let renamed: toml::Table =
        "[target.'cfg(unix)'.dependencies]\nstore = { package = \"dvx-stages\", path = \"../stages\" }\n"
            .parse()
            .unwrap();
    packages.get_mut("dvx-cache").unwrap().extend(renamed);
    assert_eq!(
        forbidden(&packages),
        [
            "forbidden edge `dvx-cache` -> `dvx-stages` (in [target.cfg(unix).dependencies])",
            "forbidden edge `dvx-stages` -> `dvx-engine` (in [dev-dependencies])",
        ]
    );
}

#[test]
fn table_knows_every_member() {
    let packages = packages();
    for (name, _) in ALLOWED {
        assert!(packages.contains_key(*name), "ALLOWED names `{name}`, which is not a workspace member");
    }
}

/// Heavy crates a crate must never compile, not even through another: a
/// stage author working on dataset kinds does not build a model runtime, an
/// HTTP stack or a Python parser.
const BANNED: &[(&str, &[&str])] = &[
    ("dvx-stage-api", &["candle-core", "reqwest", "ruff_python_parser", "tl", "tokio"]),
    ("dvx-engine", &["candle-core", "reqwest", "ruff_python_parser", "tl"]),
    ("dvx-stage-kit", &["candle-core", "reqwest", "ruff_python_parser", "tl", "plotters"]),
    ("dvx-stages-data", &["candle-core", "reqwest", "ruff_python_parser", "tl", "plotters"]),
    ("dvx-stages-extract", &["candle-core", "reqwest", "plotters"]),
    ("dvx-stages-net", &["candle-core", "ruff_python_parser", "tl", "plotters"]),
];

/// The packages `package` compiles (normal and build dependencies, this
/// platform), from `cargo tree`.
fn compiled(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--offline", "-e", "normal,build", "--prefix", "none", "--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

#[test]
fn crates_do_not_reach_banned_dependencies() {
    let mut bad = Vec::new();
    for (package, banned) in BANNED {
        let reached = compiled(package);
        assert!(reached.contains(*package), "cargo tree -p {package} does not list the package itself");
        bad.extend(banned.iter().filter(|b| reached.contains(**b)).map(|b| format!("`{package}` compiles `{b}`")));
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
