//! Asking many requests of the teachers: answers kept in the memo are
//! served from it; the rest go out on `max_concurrent` worker threads under
//! the rate limits, and each answer is put in the memo the moment it
//! arrives, so a killed run loses only the requests in flight.
//!
//! A memo key is blake3 over the canonical JSON of `{base_url, body}`
//! (the body holds the model, the messages and the sampling params); never
//! the API key.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use dvx_stage_api::{Cancel, Memo, MemoKey, StageFailure};
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{self, Answer, Policy};
use super::ratelimit::RateLimit;
use super::teachers::{api_key, route, Teacher};
use crate::records::{Record, RecordReader};
use crate::support::{round4, summary};

/// How requests go out: params shared by `generate` and `judge`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sending {
    /// Requests in flight at once.
    #[serde(default = "eight")]
    pub max_concurrent: usize,
    /// Requests a minute, all teachers together.
    #[serde(default)]
    pub rpm: Option<u32>,
    /// Tokens a minute (prompt estimate plus `max_tokens`).
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Retries of a request after its first attempt.
    #[serde(default = "five")]
    pub max_retries: u32,
    /// First retry delay in seconds; doubles each retry.
    #[serde(default = "one_s")]
    pub backoff_s: f64,
    /// Seconds one attempt may take.
    #[serde(default = "sixty")]
    pub timeout_s: f64,
}

fn eight() -> usize {
    8
}
fn five() -> u32 {
    5
}
fn one_s() -> f64 {
    1.0
}
fn sixty() -> f64 {
    60.0
}

impl Sending {
    /// The param error, if any, naming the field as it sits in every kind
    /// that sends requests: under `limits:`.
    pub fn check(&self) -> Result<(), dvx_stage_api::ParamError> {
        use dvx_stage_api::ParamError;
        if self.max_concurrent == 0 {
            return Err(ParamError::field("limits.max_concurrent", "must be at least 1"));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(ParamError::field("limits.timeout_s", "must be a positive number of seconds"));
        }
        if !(self.backoff_s.is_finite() && self.backoff_s >= 0.0) {
            return Err(ParamError::field("limits.backoff_s", "must be zero or more seconds"));
        }
        Ok(())
    }
}

/// One request: which teacher, and the body to send it.
pub struct Request {
    /// Index into the teachers.
    pub teacher: usize,
    /// The chat-completions body.
    pub body: Value,
}

/// Every record of the stage's deps, in order, with its request: `chat`
/// makes a record's messages (told its `file:line`, for errors), and the
/// record's content picks its teacher (`route`). What generate and judge
/// both do before asking.
pub fn requests_for(
    deps: &[std::path::PathBuf],
    cwd: &std::path::Path,
    teachers: &[Teacher],
    seed: u64,
    chat: impl Fn(&Record, &str) -> Result<Vec<Value>, StageFailure>,
) -> Result<(Vec<Record>, Vec<Request>), StageFailure> {
    let mut records = Vec::new();
    let mut requests = Vec::new();
    for dep in deps {
        let label = dep.strip_prefix(cwd).unwrap_or(dep).display().to_string();
        for item in RecordReader::open(dep)? {
            let (line, rec) = item?;
            let messages = chat(&rec, &format!("{label}:{line}"))?;
            let teacher = route(teachers, &rec, seed);
            requests.push(Request { teacher, body: teachers[teacher].body(Value::Array(messages)) });
            records.push(rec);
        }
    }
    Ok((records, requests))
}

/// How one request ended.
pub struct Done {
    /// The answer, or why there is none.
    pub answer: Result<Answer, String>,
    /// Whether the memo had it.
    pub from_memo: bool,
}

/// Per-teacher counts, for metrics.
#[derive(Default)]
struct Tally {
    requests: usize,
    sent: usize,
    from_memo: usize,
    failed: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Tokens of this run's calls: what was paid for now.
    paid_prompt: u64,
    paid_completion: u64,
}

/// What a batch did, for metrics and the log.
pub struct Report {
    /// One per request, in order.
    pub done: Vec<Done>,
    /// The metrics: totals, per teacher, latency.
    pub metrics: serde_json::Map<String, Value>,
}

/// The memo key of a request: never the API key.
pub fn memo_key(t: &Teacher, body: &Value) -> MemoKey {
    let canonical = dvx_cache::canonical_json(&json!({"base_url": t.base_url, "body": body}));
    *blake3::hash(&canonical).as_bytes()
}

/// Ask every request. `accept` says whether an answer is usable (a judge's
/// must parse): one that is not is asked again up to `reasks` times, and
/// only usable answers are memoised. Requests go out through `http`, the
/// run's shared client. Fails on setup problems (a missing
/// API key variable) and when `cancel` trips before every request was
/// asked: the workers take no new request, the answers already in are in
/// the memo, so a re-run asks only the rest. Failed requests come back as
/// `Err` answers.
#[allow(clippy::too_many_arguments)]
pub fn ask_all(
    teachers: &[Teacher],
    requests: &[Request],
    sending: &Sending,
    memo: &dyn Memo,
    accept: &(dyn Fn(&Answer) -> bool + Sync),
    reasks: u32,
    cancel: &Cancel,
    http: &dyn dvx_stage_api::Http,
) -> Result<Report, StageFailure> {
    let keys: Vec<Option<String>> =
        teachers.iter().map(api_key).collect::<Result<_, _>>().map_err(StageFailure::bad_input)?;
    let mut done: Vec<Option<Done>> = Vec::with_capacity(requests.len());
    let mut misses = Vec::new();
    let mut memo_keys = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let key = memo_key(&teachers[r.teacher], &r.body);
        let kept = memo.get(&key).and_then(|b| serde_json::from_slice::<Answer>(&b).ok()).filter(|a| accept(a));
        match kept {
            Some(a) => done.push(Some(Done { answer: Ok(a), from_memo: true })),
            None => {
                done.push(None);
                misses.push(i);
            }
        }
        memo_keys.push(key);
    }
    tracing::info!("{} requests: {} from the memo, {} to send", requests.len(), requests.len() - misses.len(), misses.len());

    let limit = RateLimit::new(sending.rpm, sending.tpm);
    let policy = Policy {
        max_retries: sending.max_retries,
        backoff: Duration::from_secs_f64(sending.backoff_s),
        timeout: Duration::from_secs_f64(sending.timeout_s),
    };
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Done, u32, Duration)>> = Mutex::new(Vec::new());
    let memo_errors = AtomicUsize::new(0);
    let worker = || loop {
        if cancel.is_cancelled() {
            break;
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        let Some(&i) = misses.get(n) else { break };
        let r = &requests[i];
        let t = &teachers[r.teacher];
        let key = keys[r.teacher].as_deref();
        let bytes = serde_json::to_vec(&r.body).expect("body serialises");
        let tokens = bytes.len() as u64 / 4 + t.params.max_tokens.unwrap_or(256);
        let mut retries = 0;
        let mut latency = Duration::ZERO;
        let mut answer = Err(String::new());
        for _ in 0..=reasks {
            let called = client::call(http, &t.url(), key, &bytes, tokens, policy, &limit, cancel);
            retries += called.retries;
            latency = called.latency;
            answer = called.result;
            match &answer {
                Ok(a) if accept(a) => {
                    let value = serde_json::to_vec(a).expect("answer serialises");
                    if let Err(e) = memo.put(&memo_keys[i], &value) {
                        memo_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("cannot keep an answer in the memo: {e}");
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if answer.is_err() && cancel.is_cancelled() {
            // Stopped part way, not failed: left unasked, for the re-run.
            break;
        }
        let k = finished.fetch_add(1, Ordering::Relaxed) + 1;
        if k.is_multiple_of(100) || k == misses.len() {
            tracing::info!("{k}/{} requests answered", misses.len());
        }
        results.lock().expect("results lock").push((i, Done { answer, from_memo: false }, retries, latency));
    };
    if !misses.is_empty() {
        let workers = sending.max_concurrent.min(misses.len());
        let worker = &worker;
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(worker);
            }
        });
    }

    let mut tallies: Vec<Tally> = teachers.iter().map(|_| Tally::default()).collect();
    let mut latencies = Vec::new();
    let mut retried = 0u64;
    for (i, d, retries, latency) in results.into_inner().expect("results lock") {
        retried += u64::from(retries);
        let tally = &mut tallies[requests[i].teacher];
        tally.sent += 1;
        if let Ok(a) = &d.answer {
            tally.paid_prompt += a.prompt_tokens;
            tally.paid_completion += a.completion_tokens;
            latencies.push(latency.as_secs_f64());
        }
        done[i] = Some(d);
    }
    let unasked = done.iter().filter(|d| d.is_none()).count();
    if unasked > 0 {
        let asked = misses.len() - unasked;
        let f = cancel.check().expect_err("requests go unasked only when cancelled");
        return Err(StageFailure::cancelled(format!(
            "{} ({asked} of {} requests to send were answered and are kept in the memo; a re-run sends the other {unasked})",
            f.message,
            misses.len()
        )));
    }
    let done: Vec<Done> = done.into_iter().map(|d| d.expect("every request answered or failed")).collect();
    for (r, d) in requests.iter().zip(&done) {
        let tally = &mut tallies[r.teacher];
        tally.requests += 1;
        tally.from_memo += usize::from(d.from_memo);
        match &d.answer {
            Ok(a) => {
                tally.prompt_tokens += a.prompt_tokens;
                tally.completion_tokens += a.completion_tokens;
            }
            Err(_) => tally.failed += 1,
        }
    }
    let metrics = metrics(teachers, &tallies, retried, &mut latencies, memo_errors.into_inner());
    Ok(Report { done, metrics })
}

fn metrics(
    teachers: &[Teacher],
    tallies: &[Tally],
    retried: u64,
    latencies: &mut [f64],
    memo_errors: usize,
) -> serde_json::Map<String, Value> {
    let sum = |f: fn(&Tally) -> usize| tallies.iter().map(f).sum::<usize>();
    let mut per = serde_json::Map::new();
    let mut cost_total = None::<f64>;
    for (t, n) in teachers.iter().zip(tallies) {
        let mut m = json!({
            "requests": n.requests,
            "sent": n.sent,
            "from_memo": n.from_memo,
            "failed": n.failed,
            "prompt_tokens": n.prompt_tokens,
            "completion_tokens": n.completion_tokens,
        });
        if let Some(c) = t.cost(n.paid_prompt, n.paid_completion) {
            m["cost"] = json!(round4(c));
            *cost_total.get_or_insert(0.0) += c;
        }
        per.insert(t.name.clone(), m);
    }
    let mut m = serde_json::Map::new();
    m.insert("requests".into(), json!(sum(|t| t.requests)));
    m.insert("requests_sent".into(), json!(sum(|t| t.sent)));
    m.insert("from_memo".into(), json!(sum(|t| t.from_memo)));
    m.insert("retried".into(), json!(retried));
    m.insert("failed".into(), json!(sum(|t| t.failed)));
    if memo_errors > 0 {
        m.insert("memo_write_errors".into(), json!(memo_errors));
    }
    if let Some(c) = cost_total {
        m.insert("cost".into(), json!(round4(c)));
    }
    m.insert("latency_s".into(), summary(latencies));
    m.insert("teachers".into(), Value::Object(per));
    m
}

/// Failed requests per teacher, for the log: `name: n`.
pub fn failures_by_teacher(teachers: &[Teacher], requests: &[Request], done: &[Done]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (r, d) in requests.iter().zip(done) {
        if d.answer.is_err() {
            *m.entry(teachers[r.teacher].name.clone()).or_default() += 1;
        }
    }
    m
}
