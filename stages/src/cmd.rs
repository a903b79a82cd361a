//! `kind: cmd` — any shell command, run with `sh -c` in the pipeline's folder.

use std::process::{Command, Stdio};

use dvx_engine::{Metrics, ParamError, Stage, StageContext, StageFailure, StageShape};

/// Runs `cmd` with `sh -c`; stdout and stderr become the stage's log.
pub struct Cmd;

impl Stage for Cmd {
    fn kind(&self) -> &'static str {
        "cmd"
    }

    fn version(&self) -> u32 {
        1
    }

    fn check(&self, shape: &StageShape<'_>) -> Result<(), ParamError> {
        match shape.cmd {
            Some(c) if !c.trim().is_empty() => Ok(()),
            _ => Err(ParamError::whole("a `cmd` stage needs a non-empty `cmd`")),
        }
    }

    fn execute(&self, ctx: &mut StageContext<'_>) -> Result<Metrics, StageFailure> {
        let cmd = ctx.cmd.ok_or_else(|| StageFailure::new("no `cmd` given"))?;
        let output = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(ctx.cwd)
            .envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("DVX_STAGE", ctx.name)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| StageFailure::new(format!("cannot start `sh`: {e}")))?;
        ctx.log.write_all(&output.stdout)?;
        ctx.log.write_all(&output.stderr)?;
        if !output.status.success() {
            let code =
                output.status.code().map(|c| format!("exit code {c}")).unwrap_or_else(|| "killed by a signal".into());
            return Err(StageFailure::new(format!("command failed ({code})")));
        }
        Ok(Metrics::new())
    }
}
