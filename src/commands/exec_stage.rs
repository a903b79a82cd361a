//! `dvx exec-stage` (hidden): what a Slurm job runs. Executes one stage from
//! a job spec against the shared cache and workspace, exactly as a local run
//! would, and reports clearly when the cache is not visible from this node.

use std::path::Path;
use std::process::ExitCode;

use dvx_engine::JobError;

pub fn exec_stage(spec: &Path) -> ExitCode {
    let registry = dvx_stages::builtin_registry();
    // `scancel` sends SIGTERM: the stage is asked to stop (a `cmd` child's
    // process group with it), as in a local run.
    let cancel = dvx_engine::Cancel::new();
    let _heard = dvx_engine::executor::listen(cancel.clone(), |which| std::process::exit(which.exit_code().into()));
    let http = dvx_stages_net::http::Client::standard();
    match dvx_engine::exec_job(spec, &registry, &cancel, Some(&http)) {
        Ok(entry) => {
            eprintln!("dvx exec-stage: stage `{}` stored as key {}", entry.stage, entry.key);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dvx exec-stage: error: {e}");
            if let JobError::Stage { log_tail, .. } = &e {
                if !log_tail.is_empty() {
                    eprintln!("--- last lines of the stage's log ---\n{log_tail}");
                }
            }
            match e {
                JobError::Stage { .. } => ExitCode::from(1),
                _ => ExitCode::from(2),
            }
        }
    }
}
