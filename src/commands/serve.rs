//! `dvx serve MODEL`: load the model, bind, print the address, serve.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use dvx_serve::{Model, ServeOptions};
use miette::{miette, IntoDiagnostic, Result};

pub struct Args {
    pub model: PathBuf,
    pub base: Option<PathBuf>,
    pub host: String,
    pub port: u16,
    pub api_key_env: Option<String>,
    pub name: Option<String>,
    pub max_tokens: usize,
}

pub fn serve(a: Args) -> Result<ExitCode> {
    let api_key = match &a.api_key_env {
        None => None,
        Some(var) => Some(std::env::var(var).map_err(|_| miette!("--api-key-env: `{var}` is not set"))?),
    };
    let model = Model::load(&a.model, a.base.as_deref()).map_err(|e| miette!("cannot load the model: {e}"))?;
    let model_name = a.name.unwrap_or_else(|| {
        a.model.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_else(|| "model".into())
    });
    let opts = ServeOptions { model_name, api_key, default_max_tokens: a.max_tokens };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().into_diagnostic()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .map_err(|e| miette!("cannot listen on {}:{}: {e}", a.host, a.port))?;
        let addr = listener.local_addr().into_diagnostic()?;
        // Scripts and tests read the address from this line (with --port 0).
        println!("dvx serve: {} on http://{addr}/v1", opts.model_name);
        std::io::stdout().flush().into_diagnostic()?;
        dvx_serve::serve(listener, Arc::new(model), opts).await.into_diagnostic()
    })?;
    Ok(ExitCode::SUCCESS)
}
