//! `dvx serve`: an OpenAI-compatible HTTP server (axum) for the models dvx
//! trains — `GET /v1/models`, `POST /v1/chat/completions` and
//! `POST /v1/completions`, each non-streaming or as server-sent events
//! (`stream: true`). Requests run at once on blocking threads; an optional
//! API key is checked as a bearer token. The model is behind
//! [`Generator`], so the decoding (greedy today) can change without the
//! HTTP layer.

mod api;
mod decode;
mod generator;

use std::net::SocketAddr;
use std::sync::Arc;

pub use generator::{Generator, Model, Sampling};

/// What the server is told.
pub struct ServeOptions {
    /// The name `/v1/models` lists (requests may name any model).
    pub model_name: String,
    /// A bearer token every request must carry, when set.
    pub api_key: Option<String>,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
}

/// The router, for tests and for [`serve`].
pub fn router(generator: Arc<dyn Generator>, opts: ServeOptions) -> axum::Router {
    api::router(Arc::new(api::Shared { generator, opts }))
}

/// Serve on `listener` until the process ends; `on_ready` hears the bound
/// address first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    generator: Arc<dyn Generator>,
    opts: ServeOptions,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!("serving {} on http://{addr}/v1", opts.model_name);
    axum::serve(listener, router(generator, opts)).await
}
