//! `train` on a Hugging Face base that brings its own chat template: `auto`
//! picks it, the trained folder keeps it, and serving the result prompts
//! with it (ids as transformers gives them, model/tests/fixtures/templates).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use dvx_stage_api::Typed;
use serde_json::{json, Value};

use super::tests::{run_stage, write_jsonl};
use super::Train;
use dvx_model::model::{init_weights, ArchConfig};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model/tests/fixtures/templates/qwen2.5")
}

/// A tiny Qwen2 folder with the Qwen2.5 fixture's tokenizer files.
fn write_qwen_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let tk: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tk["model"]["vocab"].as_object().unwrap().len() + tk["added_tokens"].as_array().unwrap().len();
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "torch_dtype": "float32",
        "vocab_size": vocab, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
        "bos_token_id": 0, "eos_token_id": 0, "use_sliding_window": false
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let arch: ArchConfig = serde_json::from_value(config).unwrap();
    let w = init_weights(&arch, 3, &Device::Cpu).unwrap();
    let w: std::collections::HashMap<String, Tensor> =
        w.into_iter().map(|(k, t)| (k, t.to_dtype(DType::F32).unwrap())).collect();
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn auto_uses_the_base_models_chat_template_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("hf");
    write_qwen_folder(&base);
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("cases.json")).unwrap()).unwrap();
    let records: Vec<Value> = cases.as_array().unwrap().iter().map(|c| c["record"].clone()).collect();
    let (t, v) = (dir.path().join("t.jsonl"), dir.path().join("v.jsonl"));
    write_jsonl(&t, &records);
    write_jsonl(&v, &records[..2]);
    let params = json!({"lora": {"rank": 2}, "steps": 2, "batch_size": 2, "log_every": 0});
    let outs = [dir.path().join("ad"), dir.path().join("m.json")];
    let (r, log) = run_stage(&Typed::new(Train), &params, &[t, v, base.clone()], &outs, 1);
    r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let m: Value = serde_json::from_slice(&std::fs::read(&outs[1]).unwrap()).unwrap();
    assert!(log.contains("template: the base model's own chat template"), "{log}");
    // Every record kept, each one's tokens as transformers gives them.
    let want_tokens: usize = cases.as_array().unwrap().iter().map(|c| c["ids"].as_array().unwrap().len()).sum();
    assert_eq!(m["data"]["train"]["tokens"], json!(want_tokens), "{}", m["data"]);

    // A LoRA run writes a PEFT adapter; dvx's own settings sit beside it in dvx.json.
    let dvx: Value = serde_json::from_slice(&std::fs::read(outs[0].join("dvx.json")).unwrap()).unwrap();
    let src = std::fs::read_to_string(fixture().join("../src/qwen2.5.jinja")).unwrap();
    assert_eq!(dvx["template"]["model"]["source"].as_str().unwrap().trim_end(), src.trim_end());
    assert_eq!(dvx["template"]["model"].get("bos_token"), None);
    let tok = &dvx["tokenizer"];
    assert_eq!(tok["bos_token_id"], Value::Null, "Qwen has no bos");
    assert_eq!(tok["stop_token_ids"].as_array().unwrap().len(), 1, "{tok}");

    // Serving the adapter prompts with the same template.
    let served = dvx_model::serving::ServedModel::load(&outs[0], Some(base.as_path())).unwrap();
    let case = &cases[3];
    let msgs: Vec<(String, String)> = case["record"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect();
    let last = msgs.iter().rposition(|(r, _)| r == "assistant").unwrap();
    let want: Vec<u32> = case["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    assert_eq!(served.chat_prompt(&msgs[..last]).unwrap(), want);
    // With tools, tool calls and tool results, as an OpenAI request sends them.
    for case in cases.as_array().unwrap().iter().filter(|c| c["format"] == "openai-tools") {
        let msgs = case["record"]["messages"].as_array().unwrap();
        let last = msgs.iter().rposition(|m| m["role"] == "assistant").unwrap();
        let want: Vec<u32> =
            case["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(served.chat_prompt_with_tools(&msgs[..last], case["record"].get("tools")).unwrap(), want);
    }
}
