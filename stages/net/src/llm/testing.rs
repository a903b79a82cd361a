//! The test kit's runners with the HTTP client a run gives the LLM kinds.

use std::time::Duration;

use dvx_stage_api::{Cancel, Memo, MemoryMemo, TypedStage};
use serde_json::Value;

use crate::http::{Client, Retry};
use crate::testkit::{run_with, Run, Services};

/// A shared client that never retries by itself: the LLM client's own
/// retries are what the tests count.
pub fn http() -> Client {
    Client::new(Duration::from_secs(60), Retry { max_retries: 0, ..Retry::default() })
}

/// [`crate::testkit::run`] with an HTTP client.
pub fn run<T: TypedStage>(kind: T, inputs: &[&str], outs: &[&str], params: Value, threads: usize) -> Result<Run, String> {
    run_with_memo(kind, inputs, outs, params, threads, &MemoryMemo::default())
}

/// [`crate::testkit::run_with_memo`] with an HTTP client.
pub fn run_with_memo<T: TypedStage>(
    kind: T,
    inputs: &[&str],
    outs: &[&str],
    params: Value,
    threads: usize,
    memo: &dyn Memo,
) -> Result<Run, String> {
    let http = http();
    run_with(kind, inputs, outs, params, threads, Services { memo, cancel: Cancel::new(), http: Some(&http) })
}
