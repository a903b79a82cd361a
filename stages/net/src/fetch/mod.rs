//! `kind: fetch` — download files (or copy local ones) into a folder.
//!
//! - params: `files: [{url, path, sha256?, blake3?}]`; `cache_dir` (default
//!   `.dvx/downloads`, relative to the stage folder) where downloads are kept
//!   between runs; `timeout_s` (default 60).
//! - outs[0]: a folder; each file lands at `outs[0]/<path>`.
//! - fingerprint: an expected hash, when given, is the content's identity (no
//!   network needed). Otherwise http(s) URLs get a HEAD request and its ETag,
//!   Last-Modified and Content-Length; when the server sends neither ETag nor
//!   Last-Modified the file is downloaded and hashed. Local files are hashed.
//!   So a changed remote file changes the key.
//! - external inputs: every local file (path or `file://` URL) that exists,
//!   so a version carries it as a source.
//! - A downloaded file whose hash differs from the expected one fails the
//!   stage, naming both hashes.
//! - metrics: `files.<path>.{bytes, sha256, blake3}`, `bytes`.
//!
//! Downloads go through the run's shared HTTP client (its retries and
//! connection pool; see `crate::http`) and stop between chunks when the run
//! is cancelled. The fingerprint's HEAD requests run before the stage has a
//! context, on a client of their own, on a thread of its own:
//! `reqwest::blocking` must not run on an async runtime's thread, and the
//! engine's scheduler may call us from one.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use dvx_stage_api::{
    Cancel, Count, FingerprintContext, Http, HttpRequest, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext,
    StageFailure, TypedStage,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

/// One file to fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// http(s) URL, `file://` URL or local path.
    pub url: String,
    /// Where it goes, relative to outs[0].
    pub path: String,
    /// Expected SHA-256 (hex).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Expected BLAKE3 (hex).
    #[serde(default)]
    pub blake3: Option<String>,
}

fn default_cache() -> String {
    ".dvx/downloads".into()
}

fn default_timeout() -> u64 {
    60
}

/// Params of `fetch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The files.
    pub files: Vec<FileSpec>,
    /// Download cache, relative to the stage folder.
    #[serde(default = "default_cache")]
    pub cache_dir: String,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("files", "list", "required", "The files: `{url, path, sha256?, blake3?}`."),
            ParamDoc::new("files.N.url", "URL or path", "required", "http(s) URL, `file://` URL or local path."),
            ParamDoc::new("files.N.path", "relative path", "required", "Where it goes, under outs[0]."),
            ParamDoc::new("files.N.sha256", "hex", "-", "Expected SHA-256; also the file's identity in the key."),
            ParamDoc::new("files.N.blake3", "hex", "-", "Expected BLAKE3; also the file's identity in the key."),
            ParamDoc::new("cache_dir", "path", ".dvx/downloads", "Download cache, relative to the stage folder."),
            ParamDoc::new("timeout_s", "integer", "60", "Per-request timeout in seconds."),
        ]
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn local_path(url: &str, cwd: &Path) -> PathBuf {
    cwd.join(url.strip_prefix("file://").unwrap_or(url))
}

/// Run `f` on a fresh thread (see the module doc) and wait for it.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("fetch worker panicked"))
}

/// Hex digests of a file's content.
struct Digests {
    sha256: String,
    blake3: String,
    bytes: u64,
}

fn digest_file(path: &Path) -> Result<Digests, StageFailure> {
    let mut f =
        std::fs::File::open(path).map_err(|e| StageFailure::new(format!("cannot open {}: {e}", path.display())))?;
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        b3.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(Digests { sha256: hex(&sha.finalize()), blake3: b3.finalize().to_hex().to_string(), bytes })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn client(timeout: u64) -> Result<reqwest::blocking::Client, StageFailure> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(timeout))
        .build()
        .map_err(|e| StageFailure::new(format!("cannot build an HTTP client: {e}")))
}

/// An HTTP error as a failure: transient when trying again may help (a
/// timeout, a refused or dropped connection, a 5xx or 429 answer).
fn http_failure(message: String, e: &reqwest::Error) -> StageFailure {
    let busy = e.status().is_some_and(|s| s.is_server_error() || s.as_u16() == 429);
    if e.is_timeout() || e.is_connect() || busy {
        StageFailure::transient(message)
    } else {
        StageFailure::new(message)
    }
}

/// What identifies the current version of a remote file.
fn remote_identity(url: &str, timeout: u64) -> Result<Value, StageFailure> {
    off_runtime(|| {
        let c = client(timeout)?;
        let resp = c
            .head(url)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_failure(format!("HEAD {url}: {e}"), &e))?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let etag = header(reqwest::header::ETAG);
        let modified = header(reqwest::header::LAST_MODIFIED);
        let length = header(reqwest::header::CONTENT_LENGTH);
        if etag.is_some() || modified.is_some() {
            return Ok(json!({"etag": etag, "last_modified": modified, "content_length": length}));
        }
        // No validators: only the bytes themselves tell versions apart.
        let mut body = c
            .get(url)
            .send()
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_failure(format!("GET {url}: {e}"), &e))?;
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).map_err(|e| StageFailure::new(format!("GET {url}: {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(json!({"content_blake3": h.finalize().to_hex().to_string()}))
    })
}

fn identity(spec: &FileSpec, cwd: &Path, timeout: u64) -> Result<Value, StageFailure> {
    if let Some(h) = &spec.sha256 {
        return Ok(json!({"sha256": h.to_ascii_lowercase()}));
    }
    if let Some(h) = &spec.blake3 {
        return Ok(json!({"blake3": h.to_ascii_lowercase()}));
    }
    if is_http(&spec.url) {
        remote_identity(&spec.url, timeout)
    } else {
        let p = local_path(&spec.url, cwd);
        Ok(json!({"blake3": digest_file(&p)?.blake3}))
    }
}

fn check_params(p: &Params) -> Result<(), ParamError> {
    if p.files.is_empty() {
        return Err(ParamError::field("files", "give at least one file"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in p.files.iter().enumerate() {
        let path = Path::new(&f.path);
        let plain = !f.path.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(ParamError::field(
                format!("files.{i}.path"),
                format!("`{}` must be a relative path without `..`", f.path),
            ));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(ParamError::field(format!("files.{i}.path"), format!("`{}` is used twice", f.path)));
        }
        if f.url.trim().is_empty() {
            return Err(ParamError::field(format!("files.{i}.url"), "empty url"));
        }
        for (name, h, len) in [("sha256", &f.sha256, 64), ("blake3", &f.blake3, 64)] {
            if let Some(h) = h {
                if h.len() != len || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ParamError::field(format!("files.{i}.{name}"), format!("expected {len} hex digits")));
                }
            }
        }
    }
    Ok(())
}

/// Where a download of `url` with identity `ident` is kept: a folder named
/// after the identity, so a changed file never comes back stale from the
/// download cache, and a file named after the URL.
fn cached_download(cache: &Path, url: &str, ident: &Value) -> PathBuf {
    let sub = blake3::hash(ident.to_string().as_bytes()).to_hex()[..16].to_string();
    let name = blake3::hash(url.as_bytes()).to_hex()[..16].to_string();
    cache.join(sub).join(name)
}

/// Download `url` through the run's shared HTTP client (its retries and
/// connection pool) into the download cache, unless it is there already;
/// the cached file. The body streams to a temporary file, checking
/// `cancel` between chunks, and is renamed into place only when whole.
fn download(
    http: &dyn Http,
    url: &str,
    cache: &Path,
    ident: &Value,
    timeout: u64,
    cancel: &Cancel,
    progress: &dyn dvx_stage_api::Progress,
) -> Result<PathBuf, StageFailure> {
    let dest = cached_download(cache, url, ident);
    if dest.is_file() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("a cache file has a folder");
    std::fs::create_dir_all(dir)
        .map_err(|e| StageFailure::new(format!("cannot create the download cache {}: {e}", dir.display())))?;
    let req = HttpRequest::get(url).timeout(Duration::from_secs(timeout)).cancel(cancel.clone());
    let resp = http.send(&req)?;
    if !resp.is_success() {
        let message = format!("download {url}: HTTP {}", resp.status);
        return Err(if resp.status == 429 || resp.status >= 500 {
            StageFailure::transient(message)
        } else {
            StageFailure::new(message)
        });
    }
    if let Some(total) = resp.header("content-length").and_then(|v| v.parse::<u64>().ok()) {
        progress.set_total(total, "bytes");
    }
    let tmp = dir.join(format!(".{}.part-{}", dest.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let written = (|| -> Result<(), StageFailure> {
        let mut file = std::fs::File::create(&tmp)?;
        let mut body = resp.body;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            cancel.check()?;
            let n = body.read(&mut buf).map_err(|e| {
                let f = StageFailure::from(e);
                StageFailure::of_kind(f.kind, format!("download {url}: {}", f.message))
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
            progress.inc(n as u64);
        }
        file.sync_all()?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// The `fetch` kind.
pub struct Fetch;

impl TypedStage for Fetch {
    const KIND: &'static str = "fetch";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(0);
    const OUTS: Count = Count::Exactly(1);
    const OUTS_ARE: &'static str = "the folder to download into";
    type Params = Params;
    type Prepared = Params;

    fn prepare(&self, p: Params, _shape: Shape) -> Result<Params, ParamError> {
        check_params(&p)?;
        Ok(p)
    }

    fn fingerprint(&self, p: &Params, ctx: &FingerprintContext<'_>) -> Result<Option<Value>, StageFailure> {
        let ids = p
            .files
            .iter()
            .map(|f| identity(f, ctx.cwd, p.timeout_s).map(|id| json!({"path": f.path, "id": id})))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(json!({ "files": ids })))
    }

    fn external_inputs(&self, p: &Params, ctx: &FingerprintContext<'_>) -> Result<Vec<PathBuf>, StageFailure> {
        Ok(p.files
            .iter()
            .filter(|f| !is_http(&f.url))
            .map(|f| local_path(&f.url, ctx.cwd))
            .filter(|p| p.exists())
            .collect())
    }

    fn execute(&self, p: &Params, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let cache = ctx.cwd.join(&p.cache_dir);
        let mut files = serde_json::Map::new();
        let mut total = 0;
        for f in &p.files {
            ctx.cancel.check()?;
            let src = if is_http(&f.url) {
                let ident = identity(f, ctx.cwd, p.timeout_s)?;
                let http = ctx.need_http()?;
                download(http, &f.url, &cache, &ident, p.timeout_s, &ctx.cancel, ctx.progress)?
            } else {
                local_path(&f.url, ctx.cwd)
            };
            let d = digest_file(&src)?;
            for (name, want, got) in [("sha256", &f.sha256, &d.sha256), ("blake3", &f.blake3, &d.blake3)] {
                if let Some(want) = want {
                    if !want.eq_ignore_ascii_case(got) {
                        return Err(StageFailure::new(format!(
                            "`{}` from {}: {name} mismatch: expected {}, got {got}",
                            f.path,
                            f.url,
                            want.to_ascii_lowercase()
                        )));
                    }
                }
            }
            let dest = ctx.outs[0].join(&f.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&src, &dest)
                .map_err(|e| StageFailure::new(format!("cannot copy {} to {}: {e}", src.display(), dest.display())))?;
            writeln!(ctx.log, "fetch {} <- {} ({} bytes)", f.path, f.url, d.bytes)?;
            total += d.bytes;
            files.insert(f.path.clone(), json!({"bytes": d.bytes, "sha256": d.sha256, "blake3": d.blake3}));
        }
        std::fs::create_dir_all(&ctx.outs[0])?;
        let mut m = Metrics::new();
        m.insert("files".into(), Value::Object(files));
        m.insert("bytes".into(), json!(total));
        Ok(m)
    }
}

#[cfg(test)]
mod tests;
