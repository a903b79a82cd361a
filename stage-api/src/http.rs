//! The HTTP service a stage reaches through its context: one client per
//! run (one connection pool for every stage), with the retry policy in one
//! place. The trait names no HTTP library; `dvx-stages-net` implements it
//! with reqwest and the CLI hands that one to the engine.

use std::io::Read;
use std::time::Duration;

use crate::Cancel;

/// One request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`, `HEAD`, …
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Headers, in order (names as written).
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
    /// How long one attempt may take until the response headers are in.
    /// `None`: the client's default.
    pub timeout: Option<Duration>,
    /// Retries after the first attempt for transient failures (connect
    /// errors, timeouts, 429, 5xx). `None`: the client's default.
    pub max_retries: Option<u32>,
    /// When tripped, no further attempt is made and waits between attempts end.
    pub cancel: Option<Cancel>,
}

impl HttpRequest {
    /// A `GET` of `url` with the client's defaults.
    pub fn get(url: impl Into<String>) -> Self {
        HttpRequest::new("GET", url)
    }

    /// A request with no headers and no body, with the client's defaults.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        HttpRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_retries: None,
            cancel: None,
        }
    }

    /// With one more header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// With a body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// With a per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With a retry count of its own.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Stopping when `cancel` trips.
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

/// A response: any status the server gave (a 404 is a response, not an
/// error), after the client's retries of 429 and 5xx ran out.
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, streamed: a big download need not fit in memory.
    pub body: Box<dyn Read + Send>,
    /// How many retries it took.
    pub retries: u32,
}

impl std::fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponse").field("status", &self.status).field("headers", &self.headers).finish()
    }
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The whole body.
    pub fn bytes(mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// A request that got no response: a bad URL, a refused connection, a
/// timeout, cancellation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    /// What went wrong (the last attempt's error when it was retried).
    pub message: String,
    /// Whether trying later may work (a network problem, not a bad request).
    pub transient: bool,
    /// Whether it stopped because the request's cancel token tripped.
    pub cancelled: bool,
    /// How many retries were made.
    pub retries: u32,
}

impl From<HttpError> for crate::StageFailure {
    fn from(e: HttpError) -> Self {
        use crate::StageFailure;
        match (e.cancelled, e.transient) {
            (true, _) => StageFailure::cancelled(e.message),
            (false, true) => StageFailure::transient(e.message),
            (false, false) => StageFailure::permanent(e.message),
        }
    }
}

/// One HTTP client shared by a run's stages. Implementations retry
/// transient failures themselves; a stage sees the final outcome.
pub trait Http: Send + Sync + std::fmt::Debug {
    /// Send `request`, retrying as its `max_retries` (or the client's
    /// default) allows.
    fn send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError>;
}
