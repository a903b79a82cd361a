//! Checks of the shipped `pipelines/*.yaml` against the kinds in this crate:
//! each stage of a registered kind passes `check`, stage names are unique
//! across imports, and every dep is either a file in the repository or an
//! out of an earlier stage. (The engine's own spec parser is tested there.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use dvx_stage_api::StageShape;
use serde_json::Value;

fn load(dir: &Path, file: &str, stages: &mut BTreeMap<String, (String, Value)>, order: &mut Vec<String>) {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    for import in doc.get("imports").and_then(Value::as_array).into_iter().flatten() {
        load(dir, import.as_str().unwrap(), stages, order);
    }
    for (name, stage) in doc["stages"].as_object().unwrap() {
        if let Some((other, _)) = stages.get(name) {
            assert_eq!(other, file, "stage `{name}` defined in {other} and {file}");
            continue;
        }
        stages.insert(name.clone(), (file.to_string(), stage.clone()));
        order.push(name.clone());
    }
}

#[test]
fn shipped_pipelines_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let registry = crate::builtin_registry();
    let mut kinds_seen = BTreeSet::new();
    for file in ["phase5.yaml", "phase6.yaml", "phase7.yaml", "phase7-github.yaml", "v5_8_curated.yaml"] {
        let mut stages = BTreeMap::new();
        let mut order = Vec::new();
        load(&root.join("pipelines"), file, &mut stages, &mut order);
        let mut produced = BTreeSet::new();
        for name in &order {
            let stage = &stages[name].1;
            let list = |k: &str| -> Vec<String> {
                stage
                    .get(k)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect()
            };
            let (deps, outs) = (list("deps"), list("outs"));
            for d in &deps {
                assert!(
                    produced.contains(d) || root.join(d).exists(),
                    "{file}: stage `{name}`: dep {d} is neither an earlier out nor a file"
                );
            }
            produced.extend(outs.iter().cloned());
            let kind = stage["kind"].as_str().unwrap();
            let Some(k) = registry.get(kind) else { continue };
            let params = stage.get("params").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            k.check(&StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None })
                .unwrap_or_else(|e| panic!("{file}: stage `{name}`: {:?}: {}", e.field, e.message));
            // The normalised params are params the kind accepts and a fixed
            // point: what the key holds reads back as itself.
            let norm = k.normalised_params(&params).unwrap();
            k.check(&StageShape { params: &norm, deps: deps.len(), outs: outs.len(), cmd: None })
                .unwrap_or_else(|e| panic!("{file}: stage `{name}` normalised: {:?}: {}", e.field, e.message));
            assert_eq!(k.normalised_params(&norm).unwrap(), norm, "{file}: stage `{name}`");
            kinds_seen.insert(kind.to_string());
        }
    }
    assert!(kinds_seen.len() >= 10, "the shipped pipelines use most kinds: {kinds_seen:?}");
}
