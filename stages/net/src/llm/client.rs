//! One chat-completions call with retries: exponential backoff with jitter
//! on 429, 5xx, timeouts, dropped connections and unreadable bodies; the
//! server's `Retry-After` and `x-ratelimit-*` headers pause every worker.
//! The API key goes in the `Authorization` header only and is scrubbed
//! from any error text.
//!
//! Requests go out through the run's shared HTTP client (one connection
//! pool for the run), one attempt per send: the retries stay here because
//! they follow the stage's own `limits` (`max_retries`, `backoff_s`), also
//! re-ask when an answer's body is garbled, and a `Retry-After` pauses
//! every worker of the stage through its rate limiter, not one request.

use std::time::{Duration, Instant};

use dvx_stage_api::{Http, HttpRequest};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ratelimit::{reset_duration, retry_after, RateLimit};
use crate::seeded::SplitMix64;

/// What a teacher answered: what the memo keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The assistant message's text.
    pub content: String,
    /// `stop`, `length`, … when the server says.
    pub finish_reason: Option<String>,
    /// Usage the server reported (0 when it did not).
    pub prompt_tokens: u64,
    /// Usage the server reported (0 when it did not).
    pub completion_tokens: u64,
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts after the first.
    pub max_retries: u32,
    /// First backoff; doubles each retry, capped at a minute.
    pub backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

/// A call's result and how many retries it took.
pub struct Called {
    /// The answer, or why there is none (key scrubbed).
    pub result: Result<Answer, String>,
    /// Attempts after the first.
    pub retries: u32,
    /// Time from the first attempt to the answer.
    pub latency: Duration,
}

enum Attempt {
    Done(Answer),
    /// Try again, after at least this long when the server said.
    Again(String, Option<Duration>),
    Fatal(String),
}

/// POST `body` to `url` until it answers, the retries run out or `cancel`
/// trips (then no further attempt is made and the wait ends early).
#[allow(clippy::too_many_arguments)]
pub fn call(
    http: &dyn Http,
    url: &str,
    key: Option<&str>,
    body: &[u8],
    tokens: u64,
    policy: Policy,
    limit: &RateLimit,
    cancel: &dvx_stage_api::Cancel,
) -> Called {
    let started = Instant::now();
    let mut rng = SplitMix64::new(started.elapsed().as_nanos() as u64 ^ jitter_seed());
    let mut retries = 0;
    loop {
        limit.acquire(tokens);
        let result = match attempt(http, url, key, body, limit, policy.timeout) {
            Attempt::Done(a) => Ok(a),
            Attempt::Fatal(e) => Err(e),
            Attempt::Again(e, _) if retries >= policy.max_retries => {
                Err(format!("{e} (gave up after {} attempts)", retries + 1))
            }
            Attempt::Again(e, wait) => {
                let exp = policy.backoff.saturating_mul(1 << retries.min(16)).min(Duration::from_secs(60));
                // Full jitter in [exp/2, exp]: workers that failed together do not retry together.
                let jittered = exp.mul_f64(0.5 + 0.5 * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
                // A server's Retry-After already paused everyone (see `attempt`).
                let delay = if wait.is_some() { Duration::ZERO } else { jittered };
                tracing::debug!("retrying in {delay:?}: {e}");
                let until = Instant::now() + delay;
                while !cancel.is_cancelled() && Instant::now() < until {
                    std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
                }
                if cancel.is_cancelled() {
                    return Called { result: Err(scrub(&format!("cancelled: {e}"), key)), retries, latency: started.elapsed() };
                }
                retries += 1;
                continue;
            }
        };
        let result = result.map_err(|e| scrub(&e, key));
        return Called { result, retries, latency: started.elapsed() };
    }
}

fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id())
}

fn attempt(http: &dyn Http, url: &str, key: Option<&str>, body: &[u8], limit: &RateLimit, timeout: Duration) -> Attempt {
    let mut req = HttpRequest::new("POST", url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .timeout(timeout)
        .max_retries(0);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = match http.send(&req) {
        Ok(r) => r,
        Err(e) => return Attempt::Again(e.message, None),
    };
    // As `HTTP 500 Internal Server Error` in messages.
    let status = reqwest::StatusCode::from_u16(resp.status).unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR);
    let header = |name: &str| resp.header(name).map(str::to_string);
    for (remaining, reset) in [
        ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ] {
        if header(remaining).is_some_and(|v| v.trim() == "0") {
            if let Some(d) = header(reset).as_deref().and_then(reset_duration) {
                limit.pause_until(Instant::now() + d);
            }
        }
    }
    let wait = header("retry-after").as_deref().and_then(retry_after);
    if let Some(w) = wait {
        limit.pause_until(Instant::now() + w);
    }
    let text = match resp.bytes() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => return Attempt::Again(format!("reading the answer: {e}"), wait),
    };
    if status.as_u16() == 429 || status.is_server_error() {
        return Attempt::Again(format!("HTTP {status}: {}", snippet(&text)), wait);
    }
    if !status.is_success() {
        return Attempt::Fatal(format!("HTTP {status}: {}", snippet(&text)));
    }
    match parse_answer(&text) {
        Ok(a) => Attempt::Done(a),
        // A cut-off or garbled body: ask again.
        Err(e) => Attempt::Again(e, None),
    }
}

/// The answer in a chat-completions response body.
pub fn parse_answer(text: &str) -> Result<Answer, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("the answer is not JSON ({e}): {}", snippet(text)))?;
    let choice = &v["choices"][0];
    let content = choice["message"]["content"]
        .as_str()
        .or_else(|| choice["text"].as_str())
        .ok_or_else(|| format!("the answer has no choices[0].message.content: {}", snippet(text)))?;
    Ok(Answer {
        content: content.to_string(),
        finish_reason: choice["finish_reason"].as_str().map(str::to_string),
        prompt_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    })
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// `text` with every occurrence of the key replaced.
pub fn scrub(text: &str, key: Option<&str>) -> String {
    match key.filter(|k| !k.is_empty()) {
        Some(k) => text.replace(k, "[api key]"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openai_answers() {
        let a = parse_answer(
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!((a.content.as_str(), a.finish_reason.as_deref(), a.prompt_tokens), ("hi", Some("stop"), 3));
        assert!(parse_answer("{\"choices\":[]}").unwrap_err().contains("no choices"));
        assert!(parse_answer("<html>").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn scrub_hides_the_key() {
        assert_eq!(scrub("bad key sk-123 sent", Some("sk-123")), "bad key [api key] sent");
        assert_eq!(scrub("x", None), "x");
    }
}
