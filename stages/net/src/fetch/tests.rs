use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use dvx_stage_api::{Stage, StageShape, Typed};

/// Check then execute `kind` in `cwd` with a shared HTTP client, as a run
/// would; the log too.
fn run<T: dvx_stage_api::TypedStage>(
    kind: T,
    cwd: &Path,
    deps: &[PathBuf],
    outs: &[PathBuf],
    params: Value,
) -> (Result<Metrics, StageFailure>, String) {
    let http = crate::http::Client::new(
        Duration::from_secs(10),
        crate::http::Retry { max_retries: 2, base: Duration::from_millis(10), max_wait: Duration::from_secs(1) },
    );
    run_with(kind, cwd, deps, outs, params, Some(&http), &dvx_stage_api::Cancel::new())
}

fn run_with<T: dvx_stage_api::TypedStage>(
    kind: T,
    cwd: &Path,
    deps: &[PathBuf],
    outs: &[PathBuf],
    params: Value,
    http: Option<&dyn Http>,
    cancel: &dvx_stage_api::Cancel,
) -> (Result<Metrics, StageFailure>, String) {
    let stage = Typed::new(kind);
    let shape = StageShape { params: &params, deps: deps.len(), outs: outs.len(), cmd: None };
    if let Err(e) = stage.check(&shape) {
        return (Err(StageFailure::new(format!("check: {:?}: {}", e.field, e.message))), String::new());
    }
    for o in outs {
        std::fs::create_dir_all(o.parent().unwrap()).unwrap();
    }
    let mut log = Vec::new();
    let mut ctx = StageContext::new("test", cwd, deps, outs, &params, &mut log).with_http(http).with_cancel(cancel.clone());
    let r = stage.execute(&mut ctx);
    (r, String::from_utf8_lossy(&log).into_owned())
}

/// Which validators the test server sends.
#[derive(Clone, Copy)]
enum Validators {
    ETag,
    None,
}

/// A one-file HTTP server on 127.0.0.1 for the length of a test.
struct Server {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
    gets: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(body: &[u8], mode: Validators) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body.to_vec()));
        let gets = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, g, s) = (body.clone(), gets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: a test never needs more than a few dozen requests.
            for conn in listener.incoming().take(200) {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &b, mode, &g);
                }
            }
        });
        Server { url: format!("http://{addr}/data.txt"), body, gets, stop, addr, thread: Some(thread) }
    }

    fn set(&self, body: &[u8]) {
        *self.body.lock().unwrap() = body.to_vec();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: TcpStream, body: &Mutex<Vec<u8>>, mode: Validators, gets: &AtomicUsize) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    if path != "/data.txt" {
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let data = body.lock().unwrap().clone();
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n", data.len());
    if let Validators::ETag = mode {
        head.push_str(&format!("ETag: \"{}\"\r\n", &blake3::hash(&data).to_hex()[..16]));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    if method == "GET" {
        gets.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_all(&data);
    }
}

fn fp(params: &Value, cwd: &Path) -> Result<Value, StageFailure> {
    Typed::new(Fetch).fingerprint(&FingerprintContext { cwd, deps: &[], params }).map(Option::unwrap)
}

#[test]
fn caches_and_notices_a_changed_remote_file() {
    let server = Server::start(b"version one\n", Validators::ETag);
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"files": [{"url": server.url, "path": "raw/data.txt"}], "cache_dir": "cache"});
    let out = dir.path().join("out");

    let first = fp(&params, dir.path()).unwrap();
    assert!(first["files"][0]["id"]["etag"].is_string(), "{first}");
    let (m, _) = run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params.clone());
    let m = m.unwrap();
    assert_eq!(std::fs::read(out.join("raw/data.txt")).unwrap(), b"version one\n");
    assert_eq!(m["files"]["raw/data.txt"]["bytes"], json!(12));
    assert_eq!(m["files"]["raw/data.txt"]["sha256"], json!(hex(&sha2::Sha256::digest(b"version one\n"))));
    assert_eq!(server.gets.load(Ordering::SeqCst), 1);

    // Unchanged: same key, and a re-run is served from the download cache.
    assert_eq!(fp(&params, dir.path()).unwrap(), first);
    std::fs::remove_dir_all(&out).unwrap();
    run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params.clone()).0.unwrap();
    assert_eq!(server.gets.load(Ordering::SeqCst), 1, "served from cache");

    server.set(b"version two\n");
    let second = fp(&params, dir.path()).unwrap();
    assert_ne!(second, first);
    std::fs::remove_dir_all(&out).unwrap();
    run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params).0.unwrap();
    assert_eq!(std::fs::read(out.join("raw/data.txt")).unwrap(), b"version two\n");
}

#[test]
fn a_server_without_validators_is_hashed() {
    let server = Server::start(b"aaaa", Validators::None);
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"files": [{"url": server.url, "path": "d.txt"}], "cache_dir": "cache"});
    let first = fp(&params, dir.path()).unwrap();
    assert_eq!(first["files"][0]["id"], json!({"content_blake3": blake3::hash(b"aaaa").to_hex().to_string()}));
    let out = dir.path().join("out");
    run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params.clone()).0.unwrap();
    // Same length, new bytes: still noticed, and not served stale.
    server.set(b"bbbb");
    assert_ne!(fp(&params, dir.path()).unwrap(), first);
    std::fs::remove_dir_all(&out).unwrap();
    run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params).0.unwrap();
    assert_eq!(std::fs::read(out.join("d.txt")).unwrap(), b"bbbb");
}

#[test]
fn expected_hash_is_the_key_and_a_mismatch_fails() {
    let server = Server::start(b"payload", Validators::ETag);
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    // With an expected hash the key needs no network at all.
    let offline = json!({"files": [{"url": "http://127.0.0.1:9/never", "path": "x", "sha256": wrong}]});
    assert_eq!(fp(&offline, dir.path()).unwrap(), json!({"files": [{"path": "x", "id": {"sha256": wrong}}]}));

    let params = json!({"files": [{"url": server.url, "path": "x", "sha256": wrong}], "cache_dir": "cache"});
    let (r, _) = run(Fetch, dir.path(), &[], &[dir.path().join("out")], params);
    let got = hex(&sha2::Sha256::digest(b"payload"));
    assert_eq!(
        r.unwrap_err().message,
        format!("`x` from {}: sha256 mismatch: expected {wrong}, got {got}", server.url)
    );
    let right = json!({"files": [{"url": server.url, "path": "x", "sha256": got}], "cache_dir": "cache"});
    run(Fetch, dir.path(), &[], &[dir.path().join("out2")], right).0.unwrap();

    let missing = json!({"files": [{"url": format!("http://{}/missing", server.addr), "path": "x"}]});
    let e = fp(&missing, dir.path()).unwrap_err();
    assert!(
        e.message.starts_with(&format!("HEAD http://{}/missing: HTTP status client error (404", server.addr)),
        "{}",
        e.message
    );
}

#[test]
fn local_files_are_hashed_and_copied() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.txt"), "one").unwrap();
    let params = json!({"files": [{"url": "src.txt", "path": "a/b.txt"}]});
    let first = fp(&params, dir.path()).unwrap();
    std::fs::write(dir.path().join("src.txt"), "two").unwrap();
    assert_ne!(fp(&params, dir.path()).unwrap(), first);
    let out = dir.path().join("out");
    run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params).0.unwrap();
    assert_eq!(std::fs::read_to_string(out.join("a/b.txt")).unwrap(), "two");
}

#[test]
fn external_inputs_are_the_local_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("src.txt"), "one").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/other.txt"), "two").unwrap();
    let other = dir.path().join("sub/other.txt");
    let params = json!({"files": [
        {"url": "src.txt", "path": "a"},
        {"url": format!("file://{}", other.display()), "path": "b"},
        {"url": "http://127.0.0.1:9/x.txt", "path": "c"},
        {"url": "missing.txt", "path": "d", "sha256": "0".repeat(64)},
    ]});
    let deps: Vec<PathBuf> = Vec::new();
    let got = Typed::new(Fetch)
        .external_inputs(&FingerprintContext { cwd: dir.path(), deps: &deps, params: &params })
        .unwrap();
    assert_eq!(got, vec![dir.path().join("src.txt"), other]);
}

#[test]
fn param_errors_name_the_field() {
    let check =
        |p: Value| Typed::new(Fetch).check(&StageShape { params: &p, deps: 0, outs: 1, cmd: None }).unwrap_err();
    assert_eq!(check(json!({"files": [{"url": "u", "path": "../x"}]})).field.as_deref(), Some("files.0.path"));
    assert_eq!(
        check(json!({"files": [{"url": "u", "path": "x", "sha256": "abc"}]})).field.as_deref(),
        Some("files.0.sha256")
    );
    assert_eq!(
        check(json!({"files": [{"url": "u", "path": "x"}, {"url": "v", "path": "x"}]})).field.as_deref(),
        Some("files.1.path")
    );
    assert_eq!(check(json!({"files": [{"path": "x"}]})).field.as_deref(), Some("files.0.url"));
}

#[test]
fn a_download_needs_the_runs_http_client() {
    let server = Server::start(b"data", Validators::ETag);
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"files": [{"url": server.url, "path": "d.txt"}], "cache_dir": "cache"});
    let out = dir.path().join("out");
    let (r, _) = run_with(Fetch, dir.path(), &[], std::slice::from_ref(&out), params, None, &dvx_stage_api::Cancel::new());
    let e = r.unwrap_err();
    assert!(e.message.contains("needs an HTTP client"), "{e}");
    assert_eq!(server.gets.load(Ordering::SeqCst), 0);
}

#[test]
fn a_cancelled_fetch_stops_and_caches_nothing() {
    let server = Server::start(b"data", Validators::ETag);
    let dir = tempfile::tempdir().unwrap();
    let params = json!({"files": [{"url": server.url, "path": "d.txt"}], "cache_dir": "cache"});
    let out = dir.path().join("out");
    let cancel = dvx_stage_api::Cancel::new();
    cancel.cancel("stage `boom` failed");
    let http = crate::http::Client::standard();
    let (r, _) = run_with(Fetch, dir.path(), &[], std::slice::from_ref(&out), params, Some(&http), &cancel);
    assert_eq!(r.unwrap_err().kind, dvx_stage_api::FailureKind::Cancelled);
    assert_eq!(server.gets.load(Ordering::SeqCst), 0);
    assert!(!dir.path().join("out/d.txt").exists());
}

#[test]
fn a_missing_remote_file_fails_naming_the_status() {
    let server = Server::start(b"data", Validators::ETag);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url.replace("/data.txt", "/missing");
    let params = json!({"files": [{"url": url, "path": "d.txt", "sha256": "0".repeat(64)}], "cache_dir": "cache"});
    let out = dir.path().join("out");
    let (r, _) = run(Fetch, dir.path(), &[], std::slice::from_ref(&out), params);
    let e = r.unwrap_err();
    assert!(e.message.contains("HTTP 404"), "{e}");
}
