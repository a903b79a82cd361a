//! The OpenAI wire format: routes, request parsing, answers and SSE chunks.

// A handler's early exit is a ready `Response`, as axum handlers return one.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::decode::generate;
use crate::generator::{Generator, Sampling};
use crate::ServeOptions;

pub(crate) struct Shared {
    pub(crate) generator: Arc<dyn Generator>,
    pub(crate) opts: ServeOptions,
}

type S = Arc<Shared>;

pub(crate) fn router(shared: S) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .with_state(shared)
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
    /// `tool_calls`, `tool_call_id`, `name`: given to the template as sent.
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<Message>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: String,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    #[serde(flatten)]
    sampling: Sampling,
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let Some(key) = &shared.opts.api_key else { return Ok(()) };
    let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.as_str()) {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "invalid_request_error", "missing or wrong API key"))
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn models(State(s): State<S>, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return r;
    }
    Json(json!({"object": "list", "data": [{"id": s.opts.model_name, "object": "model", "created": 0, "owned_by": "dvx"}]}))
        .into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_request_error", format!("bad request body: {e}")))
}

/// The text of a message's `content`: a string, or a list of text parts.
fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

/// Which endpoint a generation answers, for the wire format.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

async fn chat(State(s): State<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return r;
    }
    let req: ChatRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let uses_tools =
        req.tools.is_some() || req.messages.iter().any(|m| m.role == "tool" || m.rest.contains_key("tool_calls"));
    let prompt = if uses_tools {
        // Whole messages, as transformers' apply_chat_template takes them.
        let messages: Vec<Value> = req
            .messages
            .iter()
            .map(|m| {
                let mut o = m.rest.clone();
                o.insert("role".into(), json!(m.role));
                let content = if m.content.is_array() { json!(content_text(&m.content)) } else { m.content.clone() };
                o.insert("content".into(), content);
                Value::Object(o)
            })
            .collect();
        s.generator.chat_prompt_with_tools(&messages, req.tools.as_ref())
    } else {
        let messages: Vec<(String, String)> =
            req.messages.iter().map(|m| (m.role.clone(), content_text(&m.content))).collect();
        s.generator.chat_prompt(&messages)
    };
    let prompt = match prompt {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    respond(s.clone(), Kind::Chat, req.model, prompt, req.common).await
}

async fn completions(State(s): State<S>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return r;
    }
    let req: CompletionRequest = match parse(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let prompt = match s.generator.text_prompt(&req.prompt) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_request_error", e),
    };
    respond(s.clone(), Kind::Text, req.model, prompt, req.common).await
}

async fn respond(s: S, kind: Kind, model: Option<String>, prompt: Vec<u32>, c: Common) -> Response {
    let model = model.unwrap_or_else(|| s.opts.model_name.clone());
    let max_tokens = c.max_completion_tokens.or(c.max_tokens).unwrap_or(s.opts.default_max_tokens);
    let stop = match c.stop {
        None => Vec::new(),
        Some(Stop::One(x)) => vec![x],
        Some(Stop::Many(v)) => v,
    };
    let id = format!("dvx-{:x}", now() ^ (prompt.len() as u64) << 32 ^ rand_u32());
    let created = now();
    if let Err(e) = c.sampling.check() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", e);
    }
    let prompt_tokens = prompt.len();
    if !c.stream {
        let g = s.generator.clone();
        let sampling = c.sampling;
        let done = tokio::task::spawn_blocking(move || {
            generate(g.as_ref(), &prompt, &sampling, max_tokens, &stop, &mut |_| true)
        })
        .await;
        let out = match done {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e.to_string()),
        };
        let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": out.completion_tokens, "total_tokens": prompt_tokens + out.completion_tokens});
        let body = match kind {
            Kind::Chat => json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text}, "finish_reason": out.finish_reason}],
                "usage": usage,
            }),
            Kind::Text => json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": out.text, "finish_reason": out.finish_reason}],
                "usage": usage,
            }),
        };
        return Json(body).into_response();
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let chunk = move |delta: Value, finish: Option<&str>| -> Event {
        let body = match kind {
            Kind::Chat => json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }),
            Kind::Text => json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish}],
            }),
        };
        Event::default().data(body.to_string())
    };
    let g = s.generator.clone();
    tokio::task::spawn_blocking(move || {
        if matches!(kind, Kind::Chat) {
            let _ = tx.blocking_send(chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let result = generate(g.as_ref(), &prompt, &c.sampling, max_tokens, &stop, &mut |piece| {
            tx.blocking_send(chunk(json!({"content": piece}), None)).is_ok()
        });
        let last = match result {
            Ok(o) => chunk(json!({}), Some(o.finish_reason)),
            Err(e) => Event::default().data(json!({"error": {"message": e, "type": "server_error"}}).to_string()),
        };
        let _ = tx.blocking_send(last);
        let _ = tx.blocking_send(Event::default().data("[DONE]"));
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Sse::new(stream).into_response()
}

fn rand_u32() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8) & 0xffff_ffff
}
