//! `dvx run`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use dvx_engine::{Event, ExecutorKind, Observer, RunOptions, Status};
use miette::Result;

use super::{print_json, Loaded};

#[allow(clippy::too_many_arguments)]
pub fn run(
    l: Loaded,
    stages: Vec<String>,
    force: Vec<String>,
    force_all: bool,
    dry_run: bool,
    jobs: Option<usize>,
    json: bool,
    executor: Option<ExecutorKind>,
) -> Result<ExitCode> {
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let opts = RunOptions { targets: stages, force, force_all, dry_run, jobs, executor };
    let cache = l.ws.cache.clone();
    let progress = Arc::new(Progress {
        bar: (!json && !dry_run && std::io::stderr().is_terminal()).then(OnceLock::new),
        running: Mutex::new(BTreeMap::new()),
        chatty: !dry_run,
    });
    // On SIGINT/SIGTERM the Slurm executor cancels its jobs and reports it;
    // the library returns, and a command-line dvx stops there and then
    // (local stages too) with the conventional status.
    let _ = std::thread::Builder::new().name("dvx-interrupt".into()).spawn(|| {
        let which = dvx_engine::executor::wait_for_interrupt();
        std::process::exit(which.exit_code().into());
    });
    let report = dvx_engine::run(l.pipeline.clone(), l.registry, l.ws, opts, progress.clone());
    progress.clear();
    if let Some(which) = dvx_engine::executor::interrupted() {
        return Ok(ExitCode::from(which.exit_code()));
    }
    let report = report?;
    if dry_run {
        super::status::print_plan(&report.stages, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        print_json(&serde_json::to_value(&report).expect("report serialises"))?;
    } else {
        println!("{:<28} {:<8} {:>9}  key", "stage", "status", "seconds");
        for s in &report.stages {
            let status = match s.status {
                Status::Ran => "ran",
                Status::Cached => "cached",
                Status::Cutoff => "cut off",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let key = s.key.as_ref().map_or("-", |k| k.short());
            println!("{:<28} {:<8} {:>9.2}  {}", s.name, status, s.seconds, key);
        }
        // Built-in kinds write a short report (pass-rate tables, distributions) to their log.
        for s in report.stages.iter().filter(|s| s.status == Status::Ran && s.kind != "cmd") {
            if let Some(text) = s.log.as_ref().and_then(|h| cache.read_object(h).ok()) {
                let text = String::from_utf8_lossy(&text);
                if !text.trim().is_empty() {
                    println!("\n── {} ({}) ──\n{}", s.name, s.kind, text.trim_end());
                }
            }
        }
        for s in report.stages.iter().filter(|s| s.status == Status::Failed) {
            let kind = s.error_kind.and_then(|k| k.label()).map(|l| format!(" ({l})")).unwrap_or_default();
            eprintln!("\nstage `{}` failed{kind}: {}", s.name, s.error.as_deref().unwrap_or("unknown error"));
            if let Some(tail) = &s.log_tail {
                eprintln!("--- last lines of its log ---\n{tail}");
            }
        }
        match &report.version {
            Some(v) => println!("version: {v}"),
            None => eprintln!("no version written: a stage failed (stages that succeeded stay cached)"),
        }
    }
    Ok(if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Renders a run's progress on stderr: a bar (when stderr is a terminal)
/// naming the stages in flight, and the engine's one-line notices.
struct Progress {
    /// The bar, made when the run says how many stages it has; none when not shown.
    bar: Option<OnceLock<indicatif::ProgressBar>>,
    /// Stages in flight, each with a note (its Slurm job and state).
    running: Mutex<BTreeMap<String, String>>,
    /// Print notices (jobs submitted) even without a bar.
    chatty: bool,
}

impl Progress {
    fn bar(&self) -> Option<&indicatif::ProgressBar> {
        self.bar.as_ref().and_then(OnceLock::get)
    }

    fn set_note(&self, stage: &str, note: Option<&str>) {
        let mut r = self.running.lock().expect("running lock");
        match note {
            Some(n) => r.insert(stage.to_string(), n.to_string()),
            None => r.remove(stage),
        };
        if let Some(b) = self.bar() {
            b.set_message(running_message(&r));
        }
    }

    fn clear(&self) {
        if let Some(b) = self.bar() {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { stages } => {
                if let Some(cell) = &self.bar {
                    cell.get_or_init(|| {
                        let bar = indicatif::ProgressBar::new(stages as u64);
                        bar.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {wide_msg}",
                            )
                            .expect("valid template"),
                        );
                        bar.enable_steady_tick(std::time::Duration::from_millis(120));
                        bar
                    });
                }
            }
            Event::StageStarted { stage } => self.set_note(stage, Some("")),
            Event::Note { stage, note } => self.set_note(stage, Some(note)),
            Event::Message { line } => match self.bar() {
                Some(b) => b.println(line),
                None if self.chatty => eprintln!("{line}"),
                None => {}
            },
            Event::StageFinished { result } => {
                self.set_note(&result.name, None);
                if let Some(b) = self.bar() {
                    b.inc(1);
                }
            }
            Event::StagesDone => self.clear(),
        }
    }
}

fn running_message(r: &BTreeMap<String, String>) -> String {
    if r.is_empty() {
        return String::new();
    }
    let each: Vec<String> =
        r.iter().map(|(name, note)| if note.is_empty() { name.clone() } else { format!("{name} ({note})") }).collect();
    format!("running: {}", each.join(", "))
}
