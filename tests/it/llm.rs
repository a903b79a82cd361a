//! `dvx serve` on a model a test trains, and `generate` against it through
//! a fault-injecting proxy (429 + Retry-After, 500, a dropped connection,
//! a stall): the requests that reach the server prove what the memo saves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::Project;

const KEY: &str = "sk-dvx-test-0123456789";

/// Train a tiny model into `model/` of `p`.
fn train(p: &Project) {
    let mut train = String::new();
    for i in 0..16 {
        train.push_str(&format!(
            "{{\"messages\": [{{\"role\": \"user\", \"content\": \"q{i}\"}}, {{\"role\": \"assistant\", \"content\": \"a{i}\"}}]}}\n"
        ));
    }
    p.write("train.jsonl", &train);
    p.write("valid.jsonl", &train);
    p.write(
        "dvx.yaml",
        "name: tiny\nstages:\n  lm:\n    kind: train\n    deps: [train.jsonl, valid.jsonl]\n    outs: [model, metrics.json]\n    params:\n      model: {layers: 1, width: 16, heads: 2, context: 64}\n      steps: 2\n      batch_size: 2\n      eval_every: 2\n",
    );
    p.dvx(&["run"]).ok();
}

/// `dvx serve` running on a free port; killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(model: &Path, key: Option<&str>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dvx"));
        cmd.args(["serve", model.to_str().unwrap(), "--port", "0", "--max-tokens", "8"]);
        if let Some(k) = key {
            cmd.args(["--api-key-env", "DVX_TEST_SERVE_KEY"]).env("DVX_TEST_SERVE_KEY", k);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect(&line).to_string();
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = key.map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The JSON in a (possibly chunked) body.
fn json_of(body: &str) -> Value {
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    serde_json::from_str(&body[start..=end]).unwrap()
}

#[test]
fn serve_speaks_openai() {
    let p = Project::new();
    train(&p);
    let server = Server::start(&p.path("model"), Some(KEY));
    let a = server.addr.as_str();
    let (status, _) = http(a, "GET", "/v1/models", None, "");
    assert_eq!(status, 401, "the key is required");
    let (status, body) = http(a, "GET", "/v1/models", Some(KEY), "");
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["data"][0]["id"], "model");

    let chat = json!({"model": "model", "messages": [{"role": "user", "content": "q1"}], "max_tokens": 4, "temperature": 0.7, "top_p": 0.9, "seed": 1});
    let (status, body) = http(a, "POST", "/v1/chat/completions", Some(KEY), &chat.to_string());
    assert_eq!(status, 200, "{body}");
    let v = json_of(&body);
    assert_eq!(v["object"], "chat.completion");
    assert!(v["choices"][0]["message"]["content"].is_string());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 4);
    assert!(["stop", "length"].contains(&v["choices"][0]["finish_reason"].as_str().unwrap()));

    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (status, body) = http(a, "POST", "/v1/chat/completions", Some(KEY), &streamed.to_string());
    assert_eq!(status, 200);
    assert!(body.contains("data: {") && body.contains("chat.completion.chunk") && body.contains("data: [DONE]"), "{body}");

    let text = json!({"prompt": "q2", "max_tokens": 3, "stop": ["\n"]});
    let (status, body) = http(a, "POST", "/v1/completions", Some(KEY), &text.to_string());
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["object"], "text_completion");

    // Sampling is seeded: the same request twice gives the same answer.
    let sampled = json!({"model": "model", "messages": [{"role": "user", "content": "q3"}], "max_tokens": 12, "temperature": 1.5, "top_p": 0.95, "seed": 7});
    let once = http(a, "POST", "/v1/chat/completions", Some(KEY), &sampled.to_string());
    let twice = http(a, "POST", "/v1/chat/completions", Some(KEY), &sampled.to_string());
    assert_eq!(once.0, 200, "{}", once.1);
    assert_eq!(
        json_of(&once.1)["choices"][0]["message"]["content"],
        json_of(&twice.1)["choices"][0]["message"]["content"]
    );
    let bad = json!({"messages": [{"role": "user", "content": "q"}], "temperature": -1});
    let (status, body) = http(a, "POST", "/v1/chat/completions", Some(KEY), &bad.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("temperature must be"), "{body}");

    // Tools reach the model's template; this model's has no tool support,
    // so the request is refused rather than answered without its tools.
    let tools = json!({"messages": [{"role": "user", "content": "q"}], "tools": [{"type": "function", "function": {"name": "grep", "parameters": {"type": "object"}}}]});
    let (status, body) = http(a, "POST", "/v1/chat/completions", Some(KEY), &tools.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tool"), "{body}");

    let (status, body) = http(a, "POST", "/v1/chat/completions", Some(KEY), "{not json");
    assert_eq!(status, 400);
    assert!(body.contains("bad request body"));

    // Several at once.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let a = server.addr.clone();
            let body = json!({"messages": [{"role": "user", "content": format!("q{i}")}], "max_tokens": 3}).to_string();
            std::thread::spawn(move || http(&a, "POST", "/v1/chat/completions", Some(KEY), &body).0)
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap() == 200));
}

/// Counts and faults between `generate` and the server.
struct Proxy {
    url: String,
    /// Requests passed on to the server.
    forwarded: Arc<AtomicUsize>,
    /// Answers handed back whole.
    answered: Arc<AtomicUsize>,
    /// Requests seen (faulted ones too).
    seen: Arc<AtomicUsize>,
}

/// A proxy to `upstream`: the first four requests get 429 with
/// Retry-After, 500, a dropped connection and a stall; the rest go
/// through, each answer delayed by `delay`.
fn proxy(upstream: String, faults: bool, delay: Duration) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (forwarded, answered, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (forwarded.clone(), answered.clone(), seen.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (f, a, s, up) = (counters.0.clone(), counters.1.clone(), counters.2.clone(), upstream.clone());
            std::thread::spawn(move || {
                let _ = relay(client, &up, faults, delay, &f, &a, &s);
            });
        }
    });
    Proxy { url, forwarded, answered, seen }
}

/// Read one HTTP message (head, then content-length bytes) from `r`.
fn read_message(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    head.extend(body);
    Ok(Some(head))
}

fn relay(
    client: TcpStream,
    upstream: &str,
    faults: bool,
    delay: Duration,
    forwarded: &AtomicUsize,
    answered: &AtomicUsize,
    seen: &AtomicUsize,
) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let mut to_client = client;
    let server = TcpStream::connect(upstream)?;
    let mut from_server = BufReader::new(server.try_clone()?);
    let mut to_server = server;
    while let Some(req) = read_message(&mut from_client)? {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let reply = |to: &mut TcpStream, status: &str, extra: &str| {
            to.write_all(format!("HTTP/1.1 {status}\r\n{extra}content-length: 2\r\n\r\n{{}}").as_bytes())
        };
        match (faults, n) {
            (true, 0) => reply(&mut to_client, "429 Too Many Requests", "retry-after: 1\r\n")?,
            (true, 1) => reply(&mut to_client, "500 Internal Server Error", "")?,
            (true, 2) => return Ok(()),
            (true, 3) => {
                std::thread::sleep(Duration::from_secs(3));
                return Ok(());
            }
            _ => {
                forwarded.fetch_add(1, Ordering::SeqCst);
                to_server.write_all(&req)?;
                let answer = read_message(&mut from_server)?.expect("the server answers");
                std::thread::sleep(delay);
                to_client.write_all(&answer)?;
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    Ok(())
}

fn prompts(p: &Project, n: usize) {
    let text: String = (0..n).map(|i| format!("{{\"id\": {i}, \"q\": \"question {i}\"}}\n")).collect();
    p.write("prompts.jsonl", &text);
}

fn pipeline(p: &Project, url: &str, temperature: f64) {
    p.write(
        "dvx.yaml",
        &format!(
            "name: gen\nstages:\n  gen:\n    kind: generate\n    deps: [prompts.jsonl]\n    outs: [responses.jsonl]\n    params:\n      teachers:\n        - {{name: a, base_url: \"{url}\", model: tiny, api_key_env: DVX_TEST_LLM_KEY, share: 0.5, params: {{temperature: {temperature}, max_tokens: 4}}}}\n        - {{name: b, base_url: \"{url}\", model: tiny, api_key_env: DVX_TEST_LLM_KEY, share: 0.5, params: {{max_tokens: 4}}}}\n      prompt: \"Answer {{q}}\"\n      limits: {{max_concurrent: 2, backoff_s: 0.05, timeout_s: 1}}\n"
        ),
    );
}

fn run_gen(p: &Project) -> crate::support::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .arg("run")
        .current_dir(p.path(""))
        .env("DVX_TEST_LLM_KEY", KEY)
        .env_remove("DVX_CACHE_DIR")
        .output()
        .unwrap();
    crate::support::Run { out }
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    walkdir(dir).into_iter().filter(|f| std::fs::read(f).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))).map(|f| f.display().to_string()).collect()
}

pub(crate) fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn generate_pays_only_for_what_it_never_got() {
    let models = Project::new();
    train(&models);
    let server = Server::start(&models.path("model"), Some(KEY));
    let px = proxy(server.addr.clone(), true, Duration::ZERO);
    let p = Project::new();
    prompts(&p, 20);
    pipeline(&p, &px.url, 0.5);
    let r = run_gen(&p);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(p.read("responses.jsonl").lines().count(), 20);
    assert_eq!(px.forwarded.load(Ordering::SeqCst), 20, "each record once, past four faults");
    assert_eq!(px.seen.load(Ordering::SeqCst), 24);

    // Append 5: only they go out.
    prompts(&p, 25);
    assert_eq!(run_gen(&p).code(), 0);
    assert_eq!(px.forwarded.load(Ordering::SeqCst), 25, "appending 5 records sends 5");

    // A new temperature for teacher a: only a's share goes out again.
    pipeline(&p, &px.url, 0.9);
    assert_eq!(run_gen(&p).code(), 0);
    let a = p.read("responses.jsonl").lines().filter(|l| l.contains("\"_teacher\":\"a\"")).count();
    assert!(a > 0 && a < 25, "{a}");
    assert_eq!(px.forwarded.load(Ordering::SeqCst), 25 + a, "only teacher a's share is asked again");

    // The key reached the server, never the cache, the workspace or the output.
    let r = run_gen(&p);
    assert!(!r.stdout().contains(KEY) && !r.stderr().contains(KEY));
    assert_eq!(files_holding(&p.path(""), KEY), Vec::<String>::new());
}

#[test]
fn kill_9_then_rerun_sends_only_the_unanswered() {
    let models = Project::new();
    train(&models);
    let server = Server::start(&models.path("model"), Some(KEY));
    let px = proxy(server.addr.clone(), false, Duration::from_millis(150));
    let p = Project::new();
    prompts(&p, 30);
    pipeline(&p, &px.url, 0.5);
    let mut child = Command::new(env!("CARGO_BIN_EXE_dvx"))
        .arg("run")
        .current_dir(p.path(""))
        .env("DVX_TEST_LLM_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while px.answered.load(Ordering::SeqCst) < 10 {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let answered = px.answered.load(Ordering::SeqCst);
    let before = px.forwarded.load(Ordering::SeqCst);
    assert_eq!(run_gen(&p).code(), 0);
    let sent = px.forwarded.load(Ordering::SeqCst) - before;
    // An answer handed over in the instant of the kill may not have reached the memo.
    assert!(sent >= 30 - answered && sent <= 30 - answered + 2, "sent {sent}, answered before the kill {answered}");
    assert_eq!(p.read("responses.jsonl").lines().count(), 30);
}

/// Set every file under `dir` `days` old.
pub(crate) fn age_files(dir: &Path, days: u64) {
    let old = std::time::SystemTime::now() - Duration::from_secs(days * 86400);
    for f in walkdir(dir) {
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(old).unwrap();
    }
}

#[test]
fn gc_keeps_the_memo_of_kept_versions_and_evicts_the_rest_by_age() {
    let models = Project::new();
    train(&models);
    let server = Server::start(&models.path("model"), Some(KEY));
    let px = proxy(server.addr.clone(), false, Duration::ZERO);
    let p = Project::new();
    prompts(&p, 12);
    pipeline(&p, &px.url, 0.5);
    assert_eq!(run_gen(&p).code(), 0);
    // A new temperature for teacher a: a second version, whose run used a's new answers and b's old ones.
    pipeline(&p, &px.url, 0.9);
    assert_eq!(run_gen(&p).code(), 0);
    let a = p.read("responses.jsonl").lines().filter(|l| l.contains("\"_teacher\":\"a\"")).count();
    assert!(a > 0 && a < 12, "{a}");
    let memo = p.path(".dvx/cache/memo-v1");
    assert_eq!(walkdir(&memo).len(), 12 + a);
    p.age_cache();
    age_files(&memo, 40);

    // Memo gc alone: both versions are kept, so every entry is.
    let r = p.dvx(&["gc", "--memo-older-than", "30d", "-f"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains(&format!("removed 0 memo entries")), "{}", r.stdout());
    assert!(r.stdout().contains(&format!("kept {} older ones that kept versions used", 12 + a)), "{}", r.stdout());

    // Dropping the first version: a dry run already counts what only it used as going.
    let r = p.dvx(&["gc", "--keep-last", "1", "--memo-older-than", "30d", "--dry-run"]);
    assert!(r.stdout().contains(&format!("would remove {a} memo entries")), "{}", r.stdout());
    let r = p.dvx(&["gc", "--keep-last", "1", "--memo-older-than", "30d", "-f"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains(&format!("removed {a} memo entries")), "{}", r.stdout());
    assert!(r.stdout().contains("kept 12 older ones"), "{}", r.stdout());
    assert_eq!(walkdir(&memo).len(), 12);

    // The kept version's answers are all there; the dropped one's old temperature is asked again.
    let before = px.forwarded.load(Ordering::SeqCst);
    assert_eq!(run_gen(&p).code(), 0);
    assert_eq!(px.forwarded.load(Ordering::SeqCst), before);
    pipeline(&p, &px.url, 0.5);
    assert_eq!(run_gen(&p).code(), 0);
    assert_eq!(px.forwarded.load(Ordering::SeqCst), before + a);
}
