//! A tiny OpenAI-compatible server for the unit tests: answers with what
//! `reply` makes of the request body, counts requests, and plays queued
//! faults (429 with Retry-After, 500, a stall, a dropped connection).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// What to do with one request instead of answering it.
#[derive(Debug, Clone)]
pub enum Fault {
    TooMany { retry_after: u64 },
    ServerError,
    Stall(Duration),
    Drop,
}

type Reply = dyn Fn(&Value) -> String + Send + Sync;
/// Each request's `authorization` header and body.
type Bodies = Arc<Mutex<Vec<(Option<String>, Value)>>>;

pub struct Fake {
    pub base_url: String,
    pub requests: Arc<AtomicUsize>,
    pub faults: Arc<Mutex<VecDeque<Fault>>>,
    pub bodies: Bodies,
}

impl Fake {
    /// A server answering "answer to: <last message>".
    pub fn start() -> Fake {
        Fake::with(|body| format!("answer to: {}", body["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap()))
    }

    pub fn with(reply: impl Fn(&Value) -> String + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let fake = Fake {
            base_url,
            requests: Arc::default(),
            faults: Arc::default(),
            bodies: Arc::default(),
        };
        let (requests, faults, bodies) = (fake.requests.clone(), fake.faults.clone(), fake.bodies.clone());
        let reply: Arc<Reply> = Arc::new(reply);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (requests, faults, bodies, reply) = (requests.clone(), faults.clone(), bodies.clone(), reply.clone());
                std::thread::spawn(move || serve(stream, &requests, &faults, &bodies, &*reply));
            }
        });
        fake
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn push(&self, f: Fault) {
        self.faults.lock().unwrap().push_back(f);
    }
}

fn serve(
    stream: TcpStream,
    requests: &AtomicUsize,
    faults: &Mutex<VecDeque<Fault>>,
    bodies: &Mutex<Vec<(Option<String>, Value)>>,
    reply: &Reply,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut len = 0;
        let mut auth = None;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.trim().parse().unwrap(),
                "authorization" => auth = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        requests.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&body).unwrap();
        bodies.lock().unwrap().push((auth, body.clone()));
        let fault = faults.lock().unwrap().pop_front();
        let (status, extra, text) = match fault {
            Some(Fault::Drop) => return,
            Some(Fault::Stall(d)) => {
                std::thread::sleep(d);
                return;
            }
            Some(Fault::TooMany { retry_after }) => {
                ("429 Too Many Requests", format!("retry-after: {retry_after}\r\n"), "{\"error\":\"slow down\"}".to_string())
            }
            Some(Fault::ServerError) => ("500 Internal Server Error", String::new(), "oops".to_string()),
            None => {
                let content = reply(&body);
                let answer = json!({
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                });
                ("200 OK", String::new(), answer.to_string())
            }
        };
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
            text.len()
        );
        if writer.write_all(head.as_bytes()).and_then(|_| writer.write_all(text.as_bytes())).is_err() {
            return;
        }
    }
}
