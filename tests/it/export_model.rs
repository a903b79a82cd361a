//! `train` writes a PEFT adapter onto a transformers-made base and
//! `export-model` writes it every way: GGUF (f16, q8_0), llama.cpp LoRA
//! GGUF, PEFT and a merged bf16 folder. (The numbers are checked against
//! PEFT/transformers fixtures in dvx-model's tests; here the pipeline runs
//! for real, caches, and refuses bad input clearly.)

use std::path::Path;

use serde_json::Value;

use crate::support::Project;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn json(p: &Project, rel: &str) -> Value {
    serde_json::from_str(&p.read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// GGUF magic, version and tensor count from the file's header.
fn gguf_header(path: &Path) -> (Vec<u8>, u32, u64) {
    let b = std::fs::read(path).unwrap();
    let v = u32::from_le_bytes(b[4..8].try_into().unwrap());
    (b[..4].to_vec(), v, u64::from_le_bytes(b[8..16].try_into().unwrap()))
}

const PIPELINE: &str = r#"name: export
stages:
  adapter:
    kind: train
    deps: [train.jsonl, valid.jsonl, base]
    outs: [adapter, metrics.json]
    params: {lora: {rank: 4, alpha: 8, targets: [q, v]}, template: chatml, steps: 3, batch_size: 2, eval_every: 3}
  gguf:
    kind: export-model
    deps: [adapter, base]
    outs: [model-f16.gguf]
    params: {format: gguf}
  gguf-q8:
    kind: export-model
    deps: [adapter, base]
    outs: [model-q8_0.gguf]
    params: {format: gguf, dtype: q8_0}
  gguf-lora:
    kind: export-model
    deps: [adapter, base]
    outs: [adapter.gguf]
    params: {format: gguf-lora}
  merged:
    kind: export-model
    deps: [adapter, base]
    outs: [merged]
    params: {format: merged}
  peft-copy:
    kind: export-model
    deps: [adapter, base]
    outs: [peft]
    params: {format: peft}
"#;

#[test]
fn trains_a_peft_adapter_and_exports_it_every_way() {
    let p = Project::new();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("model/tests/fixtures/peft/base"), &p.path("base"));
    let mut recs = String::new();
    for i in 0..8 {
        recs.push_str(&format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"read the file {i}\"}}, {{\"role\": \"assistant\", \"content\": \"grep searches files\"}}]}}\n"
        ));
    }
    p.write("train.jsonl", &recs).write("valid.jsonl", &recs).write("dvx.yaml", PIPELINE);
    let first = p.dvx(&["run"]).ok();

    // train: PEFT's layout.
    let ac = json(&p, "adapter/adapter_config.json");
    assert_eq!((ac["peft_type"].as_str(), ac["r"].as_u64()), (Some("LORA"), Some(4)));
    assert_eq!(ac["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
    assert!(p.path("adapter/adapter_model.safetensors").is_file() && p.path("adapter/dvx.json").is_file());

    for (f, tensors) in [("model-f16.gguf", 3 + 2 * 9), ("model-q8_0.gguf", 3 + 2 * 9), ("adapter.gguf", 2 * 2 * 2)] {
        let (magic, version, n) = gguf_header(&p.path(f));
        assert_eq!((magic.as_slice(), n), (&b"GGUF"[..], tensors as u64), "{f}");
        assert!(version >= 2, "{f}");
    }
    // q8_0 is about half of f16 for the matrices.
    let size = |f: &str| std::fs::metadata(p.path(f)).unwrap().len();
    assert!(size("model-q8_0.gguf") < size("model-f16.gguf") * 7 / 10);
    let lora_gguf = std::fs::read(p.path("adapter.gguf")).unwrap();
    assert!(lora_gguf.windows(b"adapter.lora.alpha".len()).any(|w| w == b"adapter.lora.alpha"));
    assert!(lora_gguf.windows(b"blk.1.attn_v.weight.lora_b".len()).any(|w| w == b"blk.1.attn_v.weight.lora_b"));

    // merged: bf16 like the base, with the files transformers reads.
    let cfg = json(&p, "merged/config.json");
    assert_eq!(cfg["torch_dtype"], "bfloat16");
    for f in ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        assert!(p.path("merged").join(f).is_file(), "merged/{f}");
    }
    assert!(json(&p, "merged/tokenizer_config.json")["chat_template"].as_str().unwrap().contains("<|im_start|>"));
    // peft: the same adapter bytes.
    assert_eq!(
        std::fs::read(p.path("peft/adapter_model.safetensors")).unwrap(),
        std::fs::read(p.path("adapter/adapter_model.safetensors")).unwrap()
    );

    // Nothing changed: nothing runs again, and the version is the same.
    let again = p.dvx(&["run"]).ok();
    assert_eq!(first.version(), again.version());
}

#[test]
fn refuses_what_it_cannot_export() {
    let p = Project::new();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("model/tests/fixtures/peft/base"), &p.path("base"));
    p.write(
        "dvx.yaml",
        "name: bad\nstages:\n  e:\n    kind: export-model\n    deps: [base]\n    outs: [a]\n    params: {format: peft}\n",
    );
    let r = p.dvx(&["run"]);
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("an adapter export takes two deps"), "{}", r.stderr());
    p.write(
        "dvx.yaml",
        "name: bad\nstages:\n  e:\n    kind: export-model\n    deps: [base]\n    outs: [m.gguf]\n    params: {format: gguf, dtype: q4_k}\n",
    );
    let r = p.dvx(&["run"]);
    assert!(r.stderr().contains("dtype") && r.stderr().contains("q4_k"), "{}", r.stderr());
}
