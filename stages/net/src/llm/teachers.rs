//! Teachers: the endpoints a `generate` or `judge` stage asks, each with a
//! share of the records, its sampling params and its prices; and routing a
//! record to one by a seeded hash of its content, so a record keeps its
//! teacher when others are appended.

use serde::Deserialize;
use serde_json::{json, Value};

use dvx_stage_api::{ParamDoc, ParamError};

use crate::records::Record;
use crate::support::content_hash;

/// One OpenAI-compatible endpoint and how to ask it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Teacher {
    /// Name written as `_teacher` and used in metrics.
    pub name: String,
    /// Base URL up to `/v1` (`http://127.0.0.1:8080/v1`).
    pub base_url: String,
    /// The `model` of each request.
    pub model: String,
    /// Environment variable holding the API key (sent as a bearer token;
    /// never in a key, a log, a record or an error).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Relative share of the records (normalised over all teachers).
    #[serde(default = "one")]
    pub share: f64,
    /// Sampling params sent with each request.
    #[serde(default)]
    pub params: Sampling,
    /// Prices, for the cost metric.
    #[serde(default)]
    pub price: Option<Price>,
}

fn one() -> f64 {
    1.0
}

/// Sampling params of a request; those not given are not sent.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `max_tokens`.
    pub max_tokens: Option<u64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `stop`: strings that end the answer.
    pub stop: Option<Vec<String>>,
}

/// Dollars per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub prompt_per_mtok: f64,
    /// Per million completion tokens.
    pub completion_per_mtok: f64,
}

impl Teacher {
    /// The request body for `messages`: model, messages, then the sampling
    /// params that were given.
    pub fn body(&self, messages: Value) -> Value {
        let mut body = json!({"model": self.model, "messages": messages});
        let p = &self.params;
        let obj = body.as_object_mut().expect("object");
        if let Some(t) = p.temperature {
            obj.insert("temperature".into(), json!(t));
        }
        if let Some(t) = p.top_p {
            obj.insert("top_p".into(), json!(t));
        }
        if let Some(t) = p.max_tokens {
            obj.insert("max_tokens".into(), json!(t));
        }
        if let Some(t) = p.seed {
            obj.insert("seed".into(), json!(t));
        }
        if let Some(t) = &p.stop {
            obj.insert("stop".into(), json!(t));
        }
        body
    }

    /// The chat-completions URL.
    pub fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim_end_matches('/'))
    }

    /// Cost in dollars of some usage, when prices are given.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        self.price.map(|p| {
            (prompt_tokens as f64 * p.prompt_per_mtok + completion_tokens as f64 * p.completion_per_mtok) / 1e6
        })
    }
}

/// Check a teacher list: at least one, unique names, http(s) URLs,
/// shares positive, sampling params in range.
pub fn check(teachers: &[Teacher]) -> Result<(), ParamError> {
    if teachers.is_empty() {
        return Err(ParamError::field("teachers", "give at least one teacher"));
    }
    for (i, t) in teachers.iter().enumerate() {
        let at = |f: &str| format!("teachers.{i}.{f}");
        if teachers[..i].iter().any(|o| o.name == t.name) {
            return Err(ParamError::field(at("name"), format!("two teachers are named `{}`", t.name)));
        }
        if !(t.base_url.starts_with("http://") || t.base_url.starts_with("https://")) {
            return Err(ParamError::field(at("base_url"), "must start with http:// or https://"));
        }
        if !(t.share.is_finite() && t.share > 0.0) {
            return Err(ParamError::field(at("share"), "must be a positive number"));
        }
        if t.params.temperature.is_some_and(|x| !(0.0..=2.0).contains(&x)) {
            return Err(ParamError::field(at("params.temperature"), "must be between 0 and 2"));
        }
        if t.params.top_p.is_some_and(|x| !(x > 0.0 && x <= 1.0)) {
            return Err(ParamError::field(at("params.top_p"), "must be in (0, 1]"));
        }
        if t.api_key_env.as_deref().is_some_and(str::is_empty) {
            return Err(ParamError::field(at("api_key_env"), "names no variable"));
        }
    }
    Ok(())
}

/// Which teacher answers `record`: a seeded hash of its content, mapped
/// onto the cumulative shares. Independent of the record's position.
pub fn route(teachers: &[Teacher], record: &Record, seed: u64) -> usize {
    let total: f64 = teachers.iter().map(|t| t.share).sum();
    let u = (content_hash(record, seed, &[]) >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for (i, t) in teachers.iter().enumerate() {
        acc += t.share;
        if u < acc {
            return i;
        }
    }
    teachers.len() - 1
}

/// The API key of a teacher, read from its variable now.
pub fn api_key(t: &Teacher) -> Result<Option<String>, String> {
    match &t.api_key_env {
        None => Ok(None),
        Some(var) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("teacher `{}`: environment variable `{var}` is not set", t.name)),
    }
}

/// The docs rows shared by `generate` and `judge`.
pub fn docs() -> Vec<ParamDoc> {
    vec![
        ParamDoc::new(
            "teachers",
            "list",
            "required",
            "Endpoints: `{name, base_url, model, api_key_env, share, params: {temperature, top_p, max_tokens, seed, stop}, price: {prompt_per_mtok, completion_per_mtok}}`.",
        ),
        ParamDoc::new("seed", "integer", "0", "Seeds the routing of records to teachers by share."),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teacher(name: &str, share: f64) -> Teacher {
        serde_json::from_value(json!({"name": name, "base_url": "http://127.0.0.1:1/v1", "model": "m", "share": share}))
            .unwrap()
    }

    #[test]
    fn routing_follows_shares_and_ignores_position() {
        let ts = [teacher("a", 0.4), teacher("b", 0.35), teacher("c", 0.25)];
        let recs: Vec<Record> =
            (0..4000).map(|i| json!({"q": i}).as_object().unwrap().clone()).collect();
        let mut counts = [0usize; 3];
        for r in &recs {
            counts[route(&ts, r, 7)] += 1;
        }
        for (c, share) in counts.iter().zip([0.4, 0.35, 0.25]) {
            let frac = *c as f64 / 4000.0;
            assert!((frac - share).abs() < 0.03, "{counts:?}");
        }
        assert_eq!(route(&ts, &recs[5], 7), route(&ts, &recs[5].clone(), 7));
        let other_seed = recs.iter().filter(|r| route(&ts, r, 7) != route(&ts, r, 8)).count();
        assert!(other_seed > 1000, "the seed changes the routing");
    }

    #[test]
    fn checks_name_the_field() {
        let mut t = teacher("a", 1.0);
        t.params.temperature = Some(3.0);
        assert_eq!(check(&[t]).unwrap_err().field.as_deref(), Some("teachers.0.params.temperature"));
        let e = check(&[teacher("a", 1.0), teacher("a", 1.0)]).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("teachers.1.name"));
        assert!(check(&[]).is_err());
    }

    #[test]
    fn body_sends_only_given_params() {
        let mut t = teacher("a", 1.0);
        t.params.temperature = Some(0.7);
        t.params.stop = Some(vec!["###".into()]);
        let b = t.body(json!([{"role": "user", "content": "hi"}]));
        assert_eq!(b["temperature"], json!(0.7));
        assert_eq!(b["stop"], json!(["###"]));
        assert!(b.get("top_p").is_none());
    }
}
