//! Tokenizers: a byte-level one (the default, nothing to download) or a
//! Hugging Face `tokenizer.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chat_template::ModelChat;
use crate::template::Rendered;

/// Token ids of the byte tokenizer's specials, after the 256 byte values.
const BYTE_BOS: u32 = 256;
const BYTE_EOS: u32 = 257;
const BYTE_PAD: u32 = 258;
/// Vocabulary of the byte tokenizer: 256 bytes + bos, eos, pad.
pub const BYTE_VOCAB: usize = 259;

/// Which tokenizer a model uses and its special ids, as stored in the
/// model's `config.json` under `dvx.tokenizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// `bytes` or `tokenizer.json` (a file of that name beside the weights).
    pub kind: String,
    /// Prepended to every sequence, when the tokenizer has one.
    pub bos_token_id: Option<u32>,
    /// Ends every assistant turn; generation stops on it.
    pub eos_token_id: u32,
    /// Fills batches; never trained on.
    pub pad_token_id: u32,
    /// More ids generation stops at (a model's `generation_config.json` may
    /// list several, e.g. Llama 3's `<|eot_id|>` and `<|end_of_text|>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_token_ids: Vec<u32>,
}

impl TokenizerInfo {
    /// Every id generation stops at: eos first, then the others.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = vec![self.eos_token_id];
        ids.extend(self.stop_token_ids.iter().filter(|&&i| i != self.eos_token_id));
        ids
    }
}

/// A loaded tokenizer.
#[derive(Clone)]
pub enum Tokenizer {
    /// Each UTF-8 byte is a token.
    Bytes,
    /// A `tokenizers` tokenizer read from `tokenizer.json`.
    Hf(Box<tokenizers::Tokenizer>),
}

/// A tokenizer with its special ids.
#[derive(Clone)]
pub struct Tok {
    /// The tokenizer itself.
    pub tokenizer: Tokenizer,
    /// Its specials and kind.
    pub info: TokenizerInfo,
}

/// Names tried, in order, for the end-of-sequence token of a `tokenizer.json`
/// when neither the params nor the base config name one.
const EOS_CANDIDATES: [&str; 5] = ["<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<eos>"];

impl Tok {
    /// The byte-level tokenizer.
    pub fn bytes() -> Tok {
        Tok {
            tokenizer: Tokenizer::Bytes,
            info: TokenizerInfo {
                kind: "bytes".into(),
                bos_token_id: Some(BYTE_BOS),
                eos_token_id: BYTE_EOS,
                pad_token_id: BYTE_PAD,
                stop_token_ids: Vec::new(),
            },
        }
    }

    /// A `tokenizer.json`. `eos` is a token text or id from the params or the
    /// base model's config; without it a few common names are tried.
    pub fn from_file(path: &Path, eos: Option<EosSpec>, bos: Option<u32>) -> Result<Tok, String> {
        let tk = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| format!("cannot read tokenizer {}: {e}", path.display()))?;
        let eos_id = match eos {
            Some(EosSpec::Id(id)) => id,
            Some(EosSpec::Text(t)) => {
                tk.token_to_id(&t).ok_or_else(|| format!("{}: no token `{t}` (eos_token)", path.display()))?
            }
            None => EOS_CANDIDATES.iter().find_map(|t| tk.token_to_id(t)).ok_or_else(|| {
                format!(
                    "{}: no end-of-sequence token found (tried {}); set `eos_token`",
                    path.display(),
                    EOS_CANDIDATES.join(", ")
                )
            })?,
        };
        Ok(Tok {
            tokenizer: Tokenizer::Hf(Box::new(tk)),
            info: TokenizerInfo {
                kind: "tokenizer.json".into(),
                bos_token_id: bos,
                eos_token_id: eos_id,
                pad_token_id: eos_id,
                stop_token_ids: Vec::new(),
            },
        })
    }

    /// A Hugging Face model folder's `tokenizer.json` with the specials its
    /// files name: `eos` (params) first, then `tokenizer_config.json`'s
    /// `eos_token`, `generation_config.json`'s first `eos_token_id`, then
    /// `config.json`'s (`cfg_eos`). bos is `tokenizer_config.json`'s
    /// `bos_token` unless null or `add_bos_token: false` (Qwen has none);
    /// without that file, `config.json`'s `cfg_bos`. Generation stops at
    /// every eos id the files list.
    pub fn from_model_folder(
        dir: &Path,
        eos: Option<EosSpec>,
        cfg_bos: Option<u32>,
        cfg_eos: &[u32],
    ) -> Result<Tok, String> {
        let chat = ModelChat::read(dir)?;
        let path = dir.join("tokenizer.json");
        let listed = if chat.eos_token_ids.is_empty() { cfg_eos.to_vec() } else { chat.eos_token_ids.clone() };
        let eos = eos
            .or_else(|| chat.eos_token.clone().map(EosSpec::Text))
            .or_else(|| listed.first().copied().map(EosSpec::Id));
        let mut tok = Tok::from_file(&path, eos, None)?;
        let Tokenizer::Hf(tk) = &tok.tokenizer else { unreachable!("from_file reads a tokenizer.json") };
        let lookup = |t: &str, what: &str| {
            tk.token_to_id(t)
                .ok_or_else(|| format!("{}: no token `{t}` ({what} of tokenizer_config.json)", path.display()))
        };
        tok.info.bos_token_id = match (&chat.bos_token, chat.has_tokenizer_config) {
            (Some(t), _) => Some(lookup(t, "bos_token")?),
            (None, true) => None,
            (None, false) => cfg_bos,
        };
        if let Some(pad) = &chat.pad_token {
            tok.info.pad_token_id = lookup(pad, "pad_token")?;
        } else if let Some(pad) = chat.pad_token_id {
            tok.info.pad_token_id = pad;
        }
        tok.info.stop_token_ids = listed.into_iter().filter(|&i| i != tok.info.eos_token_id).collect();
        Ok(tok)
    }

    /// Load the tokenizer a model folder's config describes.
    pub fn from_info(info: &TokenizerInfo, folder: &Path) -> Result<Tok, String> {
        match info.kind.as_str() {
            "bytes" => Ok(Tok::bytes()),
            "tokenizer.json" => {
                let mut tok = Tok::from_file(
                    &folder.join("tokenizer.json"),
                    Some(EosSpec::Id(info.eos_token_id)),
                    info.bos_token_id,
                )?;
                tok.info.pad_token_id = info.pad_token_id;
                tok.info.stop_token_ids = info.stop_token_ids.clone();
                Ok(tok)
            }
            other => Err(format!("{}: unknown tokenizer kind `{other}`", folder.display())),
        }
    }

    /// Number of token ids the model must embed.
    pub fn vocab_size(&self) -> usize {
        match &self.tokenizer {
            Tokenizer::Bytes => BYTE_VOCAB,
            Tokenizer::Hf(tk) => tk.get_vocab_size(true),
        }
    }

    /// Token ids of `text`, without specials.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        match &self.tokenizer {
            Tokenizer::Bytes => Ok(text.bytes().map(u32::from).collect()),
            Tokenizer::Hf(tk) => {
                tk.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| format!("cannot tokenize: {e}"))
            }
        }
    }

    /// Token ids of `text` and each one's byte range in it. Special tokens
    /// written in the text are read as those tokens; nothing is added.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>), String> {
        match &self.tokenizer {
            Tokenizer::Bytes => {
                Ok((text.bytes().map(u32::from).collect(), (0..text.len()).map(|i| (i, i + 1)).collect()))
            }
            Tokenizer::Hf(tk) => {
                let e = tk.encode(text, false).map_err(|e| format!("cannot tokenize: {e}"))?;
                Ok((e.get_ids().to_vec(), e.get_offsets().to_vec()))
            }
        }
    }

    /// Whether `id` is one of the tokenizer's special tokens.
    pub fn is_special(&self, id: u32) -> bool {
        match &self.tokenizer {
            Tokenizer::Bytes => id >= 256,
            Tokenizer::Hf(tk) => tk.get_added_tokens_decoder().get(&id).is_some_and(|t| t.special),
        }
    }

    /// Ids and per-token "trained" flags of a rendered conversation: the
    /// text is tokenized whole between the eos ids a preset inserts, and a
    /// token is trained when its bytes overlap a trained range (or it is the
    /// special token closing one, for a model's own template).
    pub fn encode_rendered(&self, r: &Rendered) -> Result<(Vec<u32>, Vec<bool>), String> {
        let mut ids = Vec::new();
        let mut train = Vec::new();
        if let (true, Some(bos)) = (r.bos, self.info.bos_token_id) {
            ids.push(bos);
            train.push(false);
        }
        let overlaps = |a: usize, b: usize| r.train.iter().any(|s| a < s.end && b > s.start && a < b);
        let mut start = 0;
        for cut in r.eos_at.iter().copied().map(Some).chain([None]) {
            let end = cut.unwrap_or(r.text.len());
            let (run, offsets) = self.encode_with_offsets(&r.text[start..end])?;
            // Whether the previous token's bytes were in a trained range.
            let mut after_trained = false;
            for (id, (a, b)) in run.into_iter().zip(offsets) {
                let inside = overlaps(a + start, b + start);
                let closing = !inside && after_trained && r.train_closing_special && self.is_special(id);
                ids.push(id);
                train.push(inside || closing);
                after_trained = inside;
            }
            if cut.is_some() {
                ids.push(self.info.eos_token_id);
                train.push(true);
            }
            start = end;
        }
        Ok((ids, train))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, String> {
        match &self.tokenizer {
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = ids.iter().filter(|&&i| i < 256).map(|&i| i as u8).collect();
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Tokenizer::Hf(tk) => tk.decode(ids, true).map_err(|e| format!("cannot decode: {e}")),
        }
    }
}

/// The end-of-sequence token, by text or id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosSpec {
    /// A token id.
    Id(u32),
    /// A token's text, looked up in the vocabulary.
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::write_word_tokenizer;

    #[test]
    fn bytes_round_trip() {
        let t = Tok::bytes();
        let ids = t.encode("hé").unwrap();
        assert_eq!(ids, vec![104, 195, 169]);
        assert_eq!(t.decode(&[256, 104, 195, 169, 257]).unwrap(), "hé");
        assert_eq!(t.vocab_size(), 259);
    }

    #[test]
    fn tokenizer_json_and_eos() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokenizer.json");
        write_word_tokenizer(&p);
        let t = Tok::from_file(&p, None, None).unwrap();
        assert_eq!(t.info.eos_token_id, 1);
        assert_eq!(t.encode("hello world").unwrap(), vec![2, 3]);
        assert_eq!(t.vocab_size(), 5);
        let err = Tok::from_file(&p, Some(EosSpec::Text("<eot>".into())), None).err().unwrap();
        assert!(err.contains("no token `<eot>`"), "{err}");
        let err = Tok::from_file(&dir.path().join("nope.json"), None, None).err().unwrap();
        assert!(err.starts_with("cannot read tokenizer"), "{err}");
    }
}
