//! The run's one HTTP client: [`Client`] implements the stage API's
//! [`Http`] over one `reqwest::blocking::Client`, so every stage of a run
//! shares its connection pool, and the retry policy lives here once:
//! connect errors, timeouts, 429 and 5xx are retried with exponential
//! backoff and full jitter, a server's `Retry-After` is honoured, each retry
//! is logged through `tracing`. A 404 (any other status) is the caller's to
//! read, never retried.
//!
//! reqwest's blocking client must not run on an async runtime's thread (the
//! engine's scheduler may call a stage from one), so each attempt runs on a
//! short-lived thread of its own.

use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dvx_stage_api::{Cancel, Http, HttpError, HttpRequest, HttpResponse};

use crate::llm::ratelimit::retry_after;
use crate::seeded::SplitMix64;

/// How hard the client tries.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Retries after the first attempt (a request may ask for its own count).
    pub max_retries: u32,
    /// The first backoff; it doubles each retry.
    pub base: Duration,
    /// No wait is longer, whether backoff or `Retry-After`.
    pub max_wait: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { max_retries: 4, base: Duration::from_millis(500), max_wait: Duration::from_secs(60) }
    }
}

/// The reqwest [`Http`]: one pool, one retry policy. The reqwest client
/// is built on first use, so a run that sends nothing pays nothing for it.
#[derive(Debug)]
pub struct Client {
    inner: OnceLock<Result<reqwest::blocking::Client, String>>,
    retry: Retry,
    timeout: Duration,
}

impl Client {
    /// A client whose attempts time out after `timeout` unless a request says otherwise.
    pub fn new(timeout: Duration, retry: Retry) -> Client {
        Client { inner: OnceLock::new(), retry, timeout }
    }

    /// The client dvx runs with: 60 s per attempt, [`Retry::default`].
    pub fn standard() -> Client {
        Client::new(Duration::from_secs(60), Retry::default())
    }

    fn inner(&self) -> Result<&reqwest::blocking::Client, HttpError> {
        let built = self.inner.get_or_init(|| {
            // On a thread of its own, as this may run on a runtime's thread.
            std::thread::scope(|s| {
                s.spawn(|| reqwest::blocking::Client::builder().timeout(None).build())
                    .join()
                    .expect("client builder panicked")
            })
            .map_err(|e| format!("cannot build an HTTP client: {e}"))
        });
        built.as_ref().map_err(|e| HttpError { message: e.clone(), transient: false, cancelled: false, retries: 0 })
    }

    fn attempt(&self, inner: &reqwest::blocking::Client, r: &HttpRequest) -> Result<HttpResponse, reqwest::Error> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap_or(reqwest::Method::GET);
                let mut b = inner.request(method, &r.url).timeout(r.timeout.unwrap_or(self.timeout));
                for (k, v) in &r.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                if !r.body.is_empty() {
                    b = b.body(r.body.clone());
                }
                let resp = b.send()?;
                let headers = resp
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string())))
                    .collect();
                Ok(HttpResponse { status: resp.status().as_u16(), headers, body: Box::new(Body(resp)), retries: 0 })
            })
            .join()
            .expect("HTTP attempt panicked")
        })
    }

    /// The wait before retry number `retry + 1`: `base · 2^retry`, capped,
    /// drawn uniformly from its upper half so clients that failed together
    /// do not come back together.
    fn backoff(&self, retry: u32, rng: &mut SplitMix64) -> Duration {
        let exp = self.retry.base.saturating_mul(1 << retry.min(16)).min(self.retry.max_wait);
        exp.mul_f64(0.5 + 0.5 * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// A response body read through reqwest (its errors as I/O errors).
struct Body(reqwest::blocking::Response);

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

/// Whether a status is worth asking again.
fn busy(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// Sleep `d`, waking early when `cancel` trips; whether it tripped.
fn sleep_unless_cancelled(d: Duration, cancel: Option<&Cancel>) -> bool {
    let until = Instant::now() + d;
    loop {
        if cancel.is_some_and(Cancel::is_cancelled) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut s = format!("{what}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(&format!(": {t}"));
        }
        src = inner.source();
    }
    s
}

impl Http for Client {
    fn send(&self, r: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let inner = self.inner()?;
        let max = r.max_retries.unwrap_or(self.retry.max_retries);
        let mut rng = SplitMix64::new(Instant::now().elapsed().as_nanos() as u64 ^ jitter_seed());
        let cancelled = |retries| HttpError {
            message: format!("{} {}: cancelled", r.method, r.url),
            transient: false,
            cancelled: true,
            retries,
        };
        let mut retries = 0;
        loop {
            if r.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
                return Err(cancelled(retries));
            }
            let (why, wait) = match self.attempt(inner, r) {
                Ok(mut resp) if !busy(resp.status) || retries >= max => {
                    resp.retries = retries;
                    return Ok(resp);
                }
                Ok(resp) => {
                    let wait = resp.header("retry-after").and_then(retry_after).map(|w| w.min(self.retry.max_wait));
                    (format!("HTTP {}", resp.status), wait)
                }
                Err(e) if e.is_timeout() || e.is_connect() || e.is_request() && e.status().is_none() => {
                    let why = describe(&e);
                    if retries >= max {
                        let message = if retries == 0 {
                            format!("{} {}: {why}", r.method, r.url)
                        } else {
                            format!("{} {}: {why} (gave up after {} attempts)", r.method, r.url, retries + 1)
                        };
                        return Err(HttpError { message, transient: true, cancelled: false, retries });
                    }
                    (why, None)
                }
                Err(e) => {
                    let message = format!("{} {}: {}", r.method, r.url, describe(&e));
                    return Err(HttpError { message, transient: false, cancelled: false, retries });
                }
            };
            let wait = wait.unwrap_or_else(|| self.backoff(retries, &mut rng));
            retries += 1;
            tracing::warn!(url = %r.url, retry = retries, of = max, wait_ms = wait.as_millis() as u64, "{why}; retrying");
            if sleep_unless_cancelled(wait, r.cancel.as_ref()) {
                return Err(cancelled(retries));
            }
        }
    }
}

fn jitter_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::thread::current().id())
}

#[cfg(test)]
mod tests;
