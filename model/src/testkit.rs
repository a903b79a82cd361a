//! Small random models for tests, here and in the crates that use this one
//! (the `testkit` feature).

use candle_core::Device;

use crate::model::{init_weights, ArchConfig, Transformer};

/// A one-layer Llama-shaped config small enough for unit tests.
pub fn tiny(vocab: usize) -> ArchConfig {
    ArchConfig {
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: "llama".into(),
        vocab_size: vocab,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: None,
        max_position_embeddings: 32,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        tie_word_embeddings: true,
        attention_bias: false,
        rope_scaling: None,
        learned_positions: false,
        hf: Default::default(),
    }
}

/// A random model with weights large enough that its logits are far from
/// uniform (so float rounding cannot flip a greedy choice).
pub fn random_model(vocab: usize, seed: u64) -> Transformer {
    let mut cfg = tiny(vocab);
    cfg.num_hidden_layers = 2;
    cfg.max_position_embeddings = 48;
    let dev = Device::Cpu;
    let w = init_weights(&cfg, seed, &dev).unwrap();
    let w = w
        .into_iter()
        .map(|(k, t)| {
            let t = if k.ends_with("norm.weight") { t } else { (t * 10.0).unwrap() };
            (k, t)
        })
        .collect();
    Transformer::new(&cfg, &w, &dev).unwrap()
}

/// A model of the given size with fresh (small) weights.
pub fn sized_model(vocab: usize, width: usize, layers: usize, context: usize) -> Transformer {
    let mut cfg = tiny(vocab);
    (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) = (width, 4 * width, layers);
    cfg.max_position_embeddings = context;
    let w = init_weights(&cfg, 1, &Device::Cpu).unwrap();
    Transformer::new(&cfg, &w, &Device::Cpu).unwrap()
}

/// A tiny word-level `tokenizer.json`, written by hand.
pub fn write_word_tokenizer(path: &std::path::Path) {
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "<unk>",
            "vocab": {"<unk>": 0, "</s>": 1, "hello": 2, "world": 3, ":": 4}}
    });
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}
