//! Training examples: records rendered through the template, tokenized, with
//! a per-token loss mask; shuffled batches padded to their longest example.

use std::path::Path;

use dvx_stage_api::StageFailure;
use serde::Serialize;

use dvx_model::rng::Rng;
use dvx_model::{Conversation, TemplateSet, Tok};

use crate::records::RecordReader;

/// One tokenized record.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Token ids: what the template renders, tokenized whole (a preset puts
    /// the tokenizer's bos first; a model's own template writes its own).
    pub ids: Vec<u32>,
    /// Whether the loss counts predicting `ids[i]`.
    pub train: Vec<bool>,
}

/// What happened to a file's records.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DataStats {
    /// Records read from the file, well-formed or not.
    pub records: usize,
    /// Training examples made from them.
    pub examples: usize,
    /// Records with nothing to train on (no assistant turn, no `text`), or
    /// whose trained part was cut away by `max_length`.
    pub skipped: usize,
    /// Examples cut to `max_length`.
    pub truncated: usize,
    /// Tokens in the kept examples.
    pub tokens: usize,
    /// Of which trained on.
    pub trained_tokens: usize,
}

/// A record as the model's templates see it: its turns whatever its shape,
/// and its `text` when it has none. An OpenAI-messages record also gives a
/// model's template its messages whole where they carry more than role and
/// content (`tool_calls`, `tool_call_id`, `name`…), and its `tools`, as
/// transformers' `apply_chat_template(messages, tools=...)` does.
pub fn conversation(record: &crate::records::Record) -> Result<Conversation, String> {
    use crate::records::{detect_shape, Shape};
    let shape = detect_shape(record);
    let mut c = Conversation {
        turns: crate::records::turns(record),
        single_exchange: shape == Shape::Alpaca,
        text: record.get("text").and_then(|t| t.as_str()).map(str::to_string),
        ..Conversation::default()
    };
    match shape {
        Shape::Chat => {
            let raw = record["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
            c = c.with_openai_messages(raw, record.get("tools"))?;
        }
        // Tools outside OpenAI messages would be dropped: say so.
        _ if record.get("tools").is_some_and(|t| !t.is_null()) && !c.turns.is_empty() => {
            return Err("field `tools` is read only on OpenAI-messages records (`messages` with `tool_calls` and \
                        `tool` messages); convert the record to that shape"
                .into())
        }
        _ => {}
    }
    Ok(c)
}

/// Tokenize one record; `None` when nothing in it is trained on.
pub fn encode_record(
    record: &crate::records::Record,
    set: &TemplateSet,
    tok: &Tok,
    max_length: usize,
) -> Result<Option<(Example, bool)>, String> {
    let Some(rendered) = set.render(&conversation(record)?)? else { return Ok(None) };
    let (ids, train) = tok.encode_rendered(&rendered)?;
    let mut ex = Example { ids, train };
    let truncated = ex.ids.len() > max_length;
    ex.ids.truncate(max_length);
    ex.train.truncate(max_length);
    // Position 0 is never predicted.
    if ex.ids.len() < 2 || !ex.train[1..].iter().any(|&t| t) {
        return Ok(None);
    }
    Ok(Some((ex, truncated)))
}

/// Read and tokenize every record of a JSONL file.
pub fn load(
    path: &Path,
    set: &TemplateSet,
    tok: &Tok,
    max_length: usize,
) -> Result<(Vec<Example>, DataStats), StageFailure> {
    let mut out = Vec::new();
    let mut stats = DataStats::default();
    for item in RecordReader::open(path)? {
        let (line, record) = item?;
        stats.records += 1;
        match encode_record(&record, set, tok, max_length)
            .map_err(|e| StageFailure::bad_input(format!("{}:{line}: {e}", path.display())))?
        {
            Some((ex, truncated)) => {
                stats.truncated += usize::from(truncated);
                stats.tokens += ex.ids.len();
                stats.trained_tokens += ex.train[1..].iter().filter(|&&t| t).count();
                out.push(ex);
            }
            None => stats.skipped += 1,
        }
    }
    stats.examples = out.len();
    Ok((out, stats))
}

/// A padded batch, row-major `[rows, len]`: inputs, next-token targets and
/// loss weights (1 for trained targets, 0 for context and padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Input ids.
    pub input: Vec<u32>,
    /// Target ids (input shifted by one).
    pub target: Vec<u32>,
    /// Loss weight per target.
    pub weight: Vec<f32>,
    /// Number of rows.
    pub rows: usize,
    /// Length of each row.
    pub len: usize,
    /// Input tokens that are not padding.
    pub tokens: usize,
}

/// Pad `examples` into one batch.
pub fn batch(examples: &[&Example], pad: u32) -> Batch {
    let len = examples.iter().map(|e| e.ids.len() - 1).max().unwrap_or(0);
    let mut b = Batch {
        input: Vec::with_capacity(len * examples.len()),
        target: Vec::with_capacity(len * examples.len()),
        weight: Vec::with_capacity(len * examples.len()),
        rows: examples.len(),
        len,
        tokens: 0,
    };
    for e in examples {
        let n = e.ids.len() - 1;
        b.tokens += n;
        b.input.extend_from_slice(&e.ids[..n]);
        b.target.extend_from_slice(&e.ids[1..]);
        b.weight.extend(e.train[1..].iter().map(|&t| if t { 1.0 } else { 0.0 }));
        b.input.extend(std::iter::repeat_n(pad, len - n));
        b.target.extend(std::iter::repeat_n(pad, len - n));
        b.weight.extend(std::iter::repeat_n(0.0, len - n));
    }
    b
}

/// An endless stream of example indices, reshuffled every epoch.
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
    rng: Rng,
    /// Epochs begun so far.
    pub epoch: usize,
}

impl Sampler {
    /// A sampler over `n` (> 0) examples.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Sampler { order: (0..n).collect(), pos: n, rng: Rng::for_name(seed, "shuffle"), epoch: 0 };
        s.order.shrink_to_fit();
        s
    }

    /// The next `k` indices; a batch may straddle two epochs.
    pub fn take(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            if self.pos == self.order.len() {
                self.rng.shuffle(&mut self.order);
                self.pos = 0;
                self.epoch += 1;
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvx_model::TemplateParam;

    #[test]
    fn encode_masks_and_eos() {
        let set = TemplateParam::Text("{user}>{assistant}".into()).resolve().unwrap();
        let tok = Tok::bytes();
        let r = serde_json::json!({"instruction": "ab", "output": "c"});
        let (ex, cut) = encode_record(r.as_object().unwrap(), &set, &tok, 64).unwrap().unwrap();
        assert_eq!(ex.ids, vec![256, 97, 98, 62, 99, 257]);
        assert_eq!(ex.train, vec![false, false, false, false, true, true]);
        assert!(!cut);
        // Cut before the answer: nothing left to train on.
        assert!(encode_record(r.as_object().unwrap(), &set, &tok, 4).unwrap().is_none());
        let (ex, cut) = encode_record(r.as_object().unwrap(), &set, &tok, 5).unwrap().unwrap();
        assert_eq!(ex.ids.len(), 5);
        assert!(cut);
    }

    /// ShareGPT and OpenAI-messages records, through the record readers'
    /// turns and a model's own template, give transformers' ids and masks
    /// (fixtures in model/tests/fixtures/templates).
    #[test]
    fn records_match_apply_chat_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model/tests/fixtures/templates");
        for name in ["llama3", "qwen2.5", "zephyr"] {
            let dir = root.join(name);
            let tok = Tok::from_model_folder(&dir, None, None, &[]).unwrap();
            let set = TemplateSet::from_model(dvx_model::ModelChat::read(&dir).unwrap().template.unwrap());
            let cases: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
            for (i, case) in cases.as_array().unwrap().iter().enumerate() {
                let (ex, cut) = encode_record(case["record"].as_object().unwrap(), &set, &tok, 4096).unwrap().unwrap();
                let want: Vec<u32> =
                    case["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
                let mask: Vec<bool> = case["mask"].as_array().unwrap().iter().map(|x| x.as_u64() == Some(1)).collect();
                assert_eq!(ex.ids, want, "{name} case {i}");
                assert_eq!(ex.train, mask, "{name} case {i}");
                assert!(!cut);
            }
        }
    }

    /// A record that uses tools, for a template that never reads them (or
    /// dvx's presets), is refused with its line, not trained without them.
    #[test]
    fn tools_need_a_template_that_reads_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model/tests/fixtures/templates");
        let zephyr = root.join("zephyr");
        let tok = Tok::from_model_folder(&zephyr, None, None, &[]).unwrap();
        let set = TemplateSet::from_model(dvx_model::ModelChat::read(&zephyr).unwrap().template.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        let offers = r#"{"tools": [{"type": "function", "function": {"name": "f"}}], "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#;
        let calls = r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]}]}"#;
        std::fs::write(&p, format!("{{\"messages\": [{{\"role\": \"user\", \"content\": \"q\"}}, {{\"role\": \"assistant\", \"content\": \"a\"}}]}}\n{offers}\n")).unwrap();
        let err = load(&p, &set, &tok, 4096).err().unwrap().message;
        assert!(err.contains("t.jsonl:2: the record offers `tools`") && err.contains("no tool support"), "{err}");
        std::fs::write(&p, format!("{calls}\n")).unwrap();
        let err = load(&p, &set, &tok, 4096).err().unwrap().message;
        assert!(err.contains("t.jsonl:1: message 2 has `tool_calls`"), "{err}");
        let presets = TemplateParam::default().resolve().unwrap();
        let err = load(&p, &presets, &Tok::bytes(), 4096).err().unwrap().message;
        assert!(err.contains("t.jsonl:1: the record uses tools"), "{err}");
        // Tools on a ShareGPT record would be dropped.
        let r = serde_json::json!({"tools": [], "conversations": [{"from": "human", "value": "q"}]});
        assert!(conversation(r.as_object().unwrap()).unwrap_err().contains("OpenAI-messages"));
        // A malformed `tools` field names itself.
        let r = serde_json::json!({"tools": 3, "messages": [{"role": "user", "content": "q"}]});
        assert!(conversation(r.as_object().unwrap()).unwrap_err().contains("field `tools`"));
    }

    #[test]
    fn batch_pads_and_weights() {
        let a = Example { ids: vec![1, 2, 3], train: vec![false, false, true] };
        let b = Example { ids: vec![4, 5], train: vec![false, true] };
        let bt = batch(&[&a, &b], 0);
        assert_eq!((bt.rows, bt.len, bt.tokens), (2, 2, 3));
        assert_eq!(bt.input, vec![1, 2, 4, 0]);
        assert_eq!(bt.target, vec![2, 3, 5, 0]);
        assert_eq!(bt.weight, vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn sampler_covers_each_epoch() {
        let mut s = Sampler::new(5, 1);
        let mut first: Vec<usize> = s.take(5);
        first.sort();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.take(3).len(), 3);
        assert_eq!(s.epoch, 2);
        assert_eq!(Sampler::new(5, 1).take(7), Sampler::new(5, 1).take(7));
    }

    #[test]
    fn load_names_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(&p, "{\"instruction\":\"a\",\"output\":\"b\"}\n{\"id\":1}\nnot json\n").unwrap();
        let set = TemplateParam::default().resolve().unwrap();
        let err = load(&p, &set, &Tok::bytes(), 64).err().unwrap();
        assert!(
            err.message.ends_with("t.jsonl:3: malformed JSON: expected ident at line 1 column 2"),
            "{}",
            err.message
        );
    }
}
