//! Chat templates against transformers' `apply_chat_template` on the
//! committed fixtures (tests/fixtures/templates, written by make_fixtures.py
//! there): tiny tokenizers with Llama 3.2's, Qwen2.5's and Zephyr's special
//! tokens and chat templates; the ids of every sample conversation, its
//! assistant mask and its generation prompt must match exactly.

use std::path::{Path, PathBuf};

use dvx_model::{Conversation, ModelChat, TemplateSet, Today, Tok};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates").join(name)
}

/// `(role, content)` of a ShareGPT or OpenAI-messages record.
fn messages(record: &Value) -> Vec<(String, String)> {
    if let Some(m) = record.get("messages") {
        return m
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (s(&m["role"]), m["content"].as_str().unwrap_or("").into()))
            .collect();
    }
    fn role(from: &str) -> &str {
        match from {
            "human" => "user",
            "gpt" => "assistant",
            other => other,
        }
    }
    record["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (role(m["from"].as_str().unwrap()).to_string(), s(&m["value"])))
        .collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap().to_string()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Every case of one fixture: (mismatched ids, mismatched mask flags, cases).
fn check(name: &str) -> (usize, usize, usize) {
    let dir = fixture(name);
    let tok = Tok::from_model_folder(&dir, None, None, &[]).unwrap();
    let chat = ModelChat::read(&dir).unwrap();
    let set = TemplateSet::from_model(chat.template.expect("the fixture has a chat template"));
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let (mut bad_ids, mut bad_mask) = (0, 0);
    let cases = cases.as_array().unwrap();
    for (i, case) in cases.iter().enumerate() {
        let record = &case["record"];
        let conv = match record.get("messages") {
            Some(m) => Conversation::chat(messages(record))
                .with_openai_messages(m.as_array().unwrap(), record.get("tools"))
                .unwrap(),
            None => Conversation::chat(messages(record)),
        };
        let rendered = set.render(&conv).unwrap().unwrap();
        assert_eq!(rendered.text, s(&case["text"]), "{name} case {i}: rendered text");
        let (got, train) = tok.encode_rendered(&rendered).unwrap();
        let want = ids(&case["ids"]);
        if got != want {
            bad_ids += 1;
            eprintln!("{name} case {i}: ids\n  dvx {got:?}\n  hf  {want:?}");
            continue;
        }
        let want_mask: Vec<bool> = case["mask"].as_array().unwrap().iter().map(|m| m.as_u64() == Some(1)).collect();
        if train != want_mask {
            bad_mask += 1;
            eprintln!("{name} case {i}: mask\n  dvx {train:?}\n  ref {want_mask:?}");
        }
        let prompt = set.prompt(&conv, Today::fixed()).unwrap().unwrap();
        assert!(!prompt.bos, "a model's template writes its own bos");
        assert_eq!(tok.encode(&prompt.text).unwrap(), ids(&case["prompt_ids"]), "{name} case {i}: generation prompt");
    }
    (bad_ids, bad_mask, cases.len())
}

#[test]
fn llama3_matches_apply_chat_template() {
    assert_eq!(check("llama3"), (0, 0, 9));
}

#[test]
fn qwen25_matches_apply_chat_template() {
    assert_eq!(check("qwen2.5"), (0, 0, 10));
}

#[test]
fn zephyr_matches_apply_chat_template() {
    assert_eq!(check("zephyr"), (0, 0, 6));
}

#[test]
fn specials_come_from_the_model_files() {
    let id = |tok: &Tok, t: &str| match &tok.tokenizer {
        dvx_model::tokenizer::Tokenizer::Hf(tk) => tk.token_to_id(t).unwrap(),
        dvx_model::tokenizer::Tokenizer::Bytes => unreachable!(),
    };
    // Llama 3: chat eos is <|eot_id|>; generation also stops at the others listed.
    let llama = Tok::from_model_folder(&fixture("llama3"), None, Some(0), &[]).unwrap();
    assert_eq!(llama.info.eos_token_id, id(&llama, "<|eot_id|>"));
    assert_eq!(llama.info.bos_token_id, Some(id(&llama, "<|begin_of_text|>")));
    let stops = llama.info.stop_ids();
    assert!(stops.contains(&id(&llama, "<|end_of_text|>")) && stops.contains(&id(&llama, "<|eom_id|>")), "{stops:?}");
    // Qwen2.5: no bos, even though config.json names one; pad is <|endoftext|>.
    let qwen = Tok::from_model_folder(&fixture("qwen2.5"), None, Some(5), &[]).unwrap();
    assert_eq!(qwen.info.bos_token_id, None);
    assert_eq!(qwen.info.eos_token_id, id(&qwen, "<|im_end|>"));
    assert_eq!(qwen.info.pad_token_id, id(&qwen, "<|endoftext|>"));
    // Zephyr: </s>; a SentencePiece tokenizer gets one "▁" for the whole text.
    let zephyr = Tok::from_model_folder(&fixture("zephyr"), None, None, &[]).unwrap();
    assert_eq!((zephyr.info.bos_token_id, zephyr.info.eos_token_id), (Some(1), 2));
}
