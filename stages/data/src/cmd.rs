//! `kind: cmd` — any shell command, run with `sh -c` in the pipeline's folder.

use std::process::{Command, Stdio};

use dvx_stage_api::{Count, Metrics, ParamDoc, ParamError, ParamsDoc, Shape, StageContext, StageFailure, TypedStage};
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
