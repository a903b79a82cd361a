//! The retry policy against a local server that plays a script of answers.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A server answering each request with the next scripted `(status,
/// extra headers, body)`; the last one repeats.
struct Script {
    url: String,
    hits: Arc<AtomicUsize>,
}

fn serve(script: Vec<(u16, &'static str, &'static str)>) -> Script {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/file", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let queue = Arc::new(Mutex::new(VecDeque::from(script)));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            h.fetch_add(1, Ordering::SeqCst);
            let (status, headers, text) = {
                let mut q = queue.lock().unwrap();
                if q.len() > 1 { q.pop_front().unwrap() } else { *q.front().unwrap() }
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{text}",
                text.len()
            );
        }
    });
    Script { url, hits }
}

fn quick(max_retries: u32) -> Client {
    Client::new(
        Duration::from_secs(5),
        Retry { max_retries, base: Duration::from_millis(10), max_wait: Duration::from_secs(5) },
    )
}

#[test]
fn a_503_twice_then_200_is_retried_and_succeeds() {
    let s = serve(vec![(503, "", "busy"), (503, "", "busy"), (200, "etag: \"v1\"\r\n", "hello")]);
    let resp = quick(4).send(&HttpRequest::get(&s.url)).unwrap();
    assert_eq!((resp.status, resp.retries), (200, 2));
    assert_eq!(resp.header("ETag"), Some("\"v1\""));
    assert_eq!(resp.bytes().unwrap(), b"hello");
    assert_eq!(s.hits.load(Ordering::SeqCst), 3);
}

#[test]
fn a_404_is_not_retried() {
    let s = serve(vec![(404, "", "no such file"), (200, "", "never asked")]);
    let resp = quick(4).send(&HttpRequest::get(&s.url)).unwrap();
    assert_eq!((resp.status, resp.retries), (404, 0));
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn retries_run_out_on_the_last_answer() {
    let s = serve(vec![(500, "", "down")]);
    let resp = quick(2).send(&HttpRequest::get(&s.url).max_retries(1)).unwrap();
    assert_eq!((resp.status, resp.retries), (500, 1), "the request's own count wins");
    assert_eq!(s.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn retry_after_is_honoured() {
    // Backoff alone would wait ~10 ms; the server asks for a second.
    let s = serve(vec![(429, "retry-after: 1\r\n", "slow down"), (200, "", "ok")]);
    let started = Instant::now();
    let resp = quick(3).send(&HttpRequest::get(&s.url)).unwrap();
    assert_eq!(resp.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(950), "waited only {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn a_refused_connection_is_transient_and_retried() {
    // A port nothing listens on: bind, note it, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = quick(2).send(&HttpRequest::get(format!("http://127.0.0.1:{port}/x"))).unwrap_err();
    assert!(err.transient && !err.cancelled, "{err:?}");
    assert_eq!(err.retries, 2);
    assert!(err.message.contains("gave up after 3 attempts"), "{}", err.message);
}

#[test]
fn cancel_ends_the_waits_between_attempts() {
    let s = serve(vec![(503, "retry-after: 30\r\n", "busy")]);
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c2.cancel("stop");
    });
    let started = Instant::now();
    let err = quick(5).send(&HttpRequest::get(&s.url).cancel(cancel)).unwrap_err();
    assert!(err.cancelled, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(dvx_stage_api::StageFailure::from(err).kind, dvx_stage_api::FailureKind::Cancelled);
}

#[test]
fn bodies_and_headers_go_out() {
    let s = serve(vec![(200, "", "{}")]);
    let req = HttpRequest::new("POST", &s.url).header("content-type", "application/json").body(b"{\"a\":1}".to_vec());
    assert!(quick(0).send(&req).unwrap().is_success());
}
