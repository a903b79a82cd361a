//! `kind: cmd` — any shell command, run with `sh -c` in the pipeline's folder.
//!
//! The command runs in a process group of its own, so that when the run is
//! cancelled (another stage failed, or dvx got SIGINT/SIGTERM) the whole
//! group is stopped — `sh` and whatever it started — not only `sh`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use dvx_stage_api::{
    Cancel, Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage,
};
use serde::{Deserialize, Serialize};

/// Params of `cmd`: any values, read only through `${params.NAME}` in `cmd`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Params(#[allow(dead_code)] serde_json::Value);

impl ParamsDoc for Params {
    fn doc() -> Vec<ParamDoc> {
        Vec::new()
    }
}

/// Runs `cmd` with `sh -c`; stdout and stderr become the stage's log.
pub struct Cmd;

/// How often a running command looks at the cancel token, at most. The
/// first looks come sooner (from 1 ms, doubling), so a command that ends in
/// a few milliseconds is not held for a whole interval: a pipeline of many
/// small stages would pay it on each.
const POLL: Duration = Duration::from_millis(50);
/// How long a cancelled command has to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

impl TypedStage for Cmd {
    const KIND: &'static str = "cmd";
    const VERSION: u32 = 1;
    const DEPS: Count = Count::AtLeast(0);
    const OUTS: Count = Count::AtLeast(0);
    const NEEDS_CMD: bool = true;
    type Params = Params;
    type Prepared = ();

    fn prepare(&self, _params: Params, _shape: Shape) -> Result<(), ParamError> {
        Ok(())
    }

    fn execute(&self, _: &(), ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let cmd = ctx.cmd.ok_or_else(|| StageFailure::new("no `cmd` given"))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(ctx.cwd)
            .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DVX_STAGE", ctx.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| StageFailure::new(format!("cannot start `sh`: {e}")))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        // Both pipes drain while we wait, or a chatty command would block on a full pipe.
        let (status, out, err) = std::thread::scope(|s| {
            let out = s.spawn(move || read_all(stdout));
            let err = s.spawn(move || read_all(stderr));
            let status = wait_or_stop(&mut child, &ctx.cancel);
            (status, out.join().unwrap_or_default(), err.join().unwrap_or_default())
        });
        ctx.log.write_all(&out)?;
        ctx.log.write_all(&err)?;
        let (status, stopped) = status.map_err(|e| StageFailure::new(format!("cannot wait for `sh`: {e}")))?;
        if stopped {
            ctx.cancel.check()?;
        }
        if !status.success() {
            let code = status.code().map(|c| format!("exit code {c}")).unwrap_or_else(|| "killed by a signal".into());
            return Err(StageFailure::new(format!("command failed ({code})")));
        }
        Ok(Metrics::new())
    }
}

fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf);
    }
    buf
}

/// Wait for the command; if `cancel` trips first, SIGTERM its process
/// group, then SIGKILL what is left after [`GRACE`]. Also whether it was stopped.
fn wait_or_stop(child: &mut Child, cancel: &Cancel) -> std::io::Result<(ExitStatus, bool)> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        if cancel.is_cancelled() {
            break;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(POLL);
    }
    let group = child.id() as libc::pid_t;
    tracing::info!(pid = group, "run cancelled: stopping the command's process group");
    // SAFETY: killpg only sends a signal; the group is the child's own (process_group(0)).
    unsafe { libc::killpg(group, libc::SIGTERM) };
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            // sh is gone; anything it left in the group goes too.
            unsafe { libc::killpg(group, libc::SIGKILL) };
            return Ok((status, true));
        }
        std::thread::sleep(POLL);
    }
    unsafe { libc::killpg(group, libc::SIGKILL) };
    child.wait().map(|s| (s, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_command_is_stopped_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("done");
        let cmd = format!("sleep 30 && touch {}", marker.display());
        let params = serde_json::json!({});
        let mut log = Vec::new();
        let cancel = Cancel::new();
        let tripper = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            tripper.cancel("stage `boom` failed");
        });
        let started = Instant::now();
        let mut ctx = StageContext::new("slow", dir.path(), &[], &[], &params, &mut log)
            .with_cmd(Some(&cmd))
            .with_cancel(cancel);
        let f = Cmd.execute(&(), &mut ctx).unwrap_err();
        t.join().unwrap();
        assert_eq!(f.kind, dvx_stage_api::FailureKind::Cancelled);
        assert_eq!(f.message, "cancelled: stage `boom` failed");
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists());
    }

    #[test]
    fn output_of_both_streams_goes_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let params = serde_json::json!({});
        let mut log = Vec::new();
        let mut ctx = StageContext::new("s", dir.path(), &[], &[], &params, &mut log)
            .with_cmd(Some("echo out; echo err >&2; exit 3"));
        let f = Cmd.execute(&(), &mut ctx).unwrap_err();
        assert_eq!(f.message, "command failed (exit code 3)");
        assert_eq!(String::from_utf8(log).unwrap(), "out\nerr\n");
    }
}
