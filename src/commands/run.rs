//! `dvx run`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use dvx_engine::{Event, Observer, RunOptions, StageResult, Status};
use miette::Result;

use super::{print_json, Loaded};

pub fn run(l: Loaded, opts: RunOptions, json: bool) -> Result<ExitCode> {
    let dry_run = opts.dry_run;
    let cache = l.ws.cache.clone();
    let bar = !json && !dry_run && super::fancy_stderr();
    // Stage lines as they happen wherever no bar shows them live: on stderr
    // in a log file or CI console; on stdout too when only stdout is piped
    // (`dvx run | tee run.log`), as stdout is then the record kept. With
    // --json stdout is the report's alone.
    let lines = match () {
        _ if dry_run => None,
        _ if !bar => Some(Stream::Stderr),
        _ if !json && !std::io::stdout().is_terminal() => Some(Stream::Stdout),
        _ => None,
    };
    let progress = Arc::new(Renderer {
        bar: bar.then(OnceLock::new),
        running: Mutex::new(BTreeMap::new()),
        chatty: !dry_run,
        lines,
        last_progress: Mutex::new(HashMap::new()),
    });
    // The first SIGINT/SIGTERM trips the run's token: stages stop where they
    // can, Slurm jobs are cancelled, the run returns (leases released) and
    // dvx exits with the conventional status. A second one exits at once.
    let heard = dvx_engine::executor::listen(opts.cancel.clone(), |which| {
        eprintln!("dvx: {}: quitting at once", which.name());
        std::process::exit(which.exit_code().into())
    });
    let mut opts = opts;
    if !dry_run {
        // One HTTP client for every stage of the run.
        opts.http = Some(Arc::new(dvx_stages_net::http::Client::standard()));
    }
    let report = dvx_engine::run(l.pipeline.clone(), l.registry, l.ws, opts, progress.clone());
    progress.clear();
    let report = report?;
    if let Some(which) = heard.received() {
        report_cancelled(&report);
        eprintln!("dvx: interrupted by {}; no version written (what finished stays cached)", which.name());
        return Ok(ExitCode::from(which.exit_code()));
    }
    if dry_run {
        super::status::print_plan(&report.stages, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        print_json(&serde_json::to_value(&report).expect("report serialises"))?;
    } else {
        // The table in one write, not one per stage.
        let mut table = format!("{:<28} {:<8} {:>9}  key\n", "stage", "status", "seconds");
        for s in &report.stages {
            let status = status_word(s.status);
            let key = s.key.as_ref().map_or("-", |k| k.short());
            let _ = writeln!(table, "{:<28} {:<8} {:>9.2}  {}", s.name, status, s.seconds, key);
        }
        print!("{table}");
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
            // A cancelled stage is listed below, not as a failure.
            let kind = s.error_kind.and_then(|k| k.label()).map(|l| format!(" ({l})")).unwrap_or_default();
            eprintln!("\nstage `{}` failed{kind}: {}", s.name, s.error.as_deref().unwrap_or("unknown error"));
            if let Some(tail) = &s.log_tail {
                eprintln!("--- last lines of its log ---\n{tail}");
            }
        }
        report_cancelled(&report);
        match &report.version {
            Some(v) => println!("version: {v}"),
            None => eprintln!("no version written: a stage failed (stages that succeeded stay cached)"),
        }
    }
    Ok(if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Name the stages the run stopped part way, and why it stopped.
fn report_cancelled(report: &dvx_engine::RunReport) {
    let names: Vec<String> = report.cancelled().map(|s| format!("`{}`", s.name)).collect();
    let why = report.stopped.as_deref().unwrap_or("the run was cancelled");
    if !names.is_empty() {
        eprintln!("\ncancelled ({why}): {} (not cached; the next run executes them)", names.join(", "));
    }
}

/// Where stage lines go.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// How often a stage's progress is written as a line when no bar shows it.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(10);

/// Renders a run as it happens: on a terminal, a bar on stderr naming the
/// stages in flight and how far each is; elsewhere, a timestamped line per
/// stage started and finished and, every few seconds, per long stage's
/// progress. Plain text only: no colours, no cursor movement in files.
struct Renderer {
    /// The bar, made when the run says how many stages it has; none when not shown.
    bar: Option<OnceLock<indicatif::ProgressBar>>,
    /// Stages in flight, each with a note (its Slurm job and state, its progress).
    running: Mutex<BTreeMap<String, String>>,
    /// Print notices (jobs submitted) even without a bar.
    chatty: bool,
    /// Where stage lines go, if anywhere.
    lines: Option<Stream>,
    /// When each stage's last progress line was written.
    last_progress: Mutex<HashMap<String, Instant>>,
}

impl Renderer {
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

    /// A timestamped line, when lines are wanted.
    fn line(&self, what: &str, stage: &str, rest: &str) {
        let Some(stream) = self.lines else { return };
        let mut text = String::new();
        push_line(&mut text, &now(), what, stage, rest);
        // One write per line (`eprintln!` makes two on unbuffered stderr).
        stream.write(&text);
    }

    /// A stage done: its note and progress forgotten, the bar moved on.
    fn finished(&self, result: &StageResult) {
        if self.running.lock().expect("running lock").contains_key(&result.name) {
            self.set_note(&result.name, None);
        }
        self.last_progress.lock().expect("progress lock").remove(&result.name);
        if let Some(b) = self.bar() {
            b.inc(1);
        }
    }

    fn progress(&self, stage: &str, p: ProgressText) {
        let text = p.to_string();
        if self.bar().is_some() {
            self.set_note(stage, Some(&text));
        }
        if self.lines.is_none() {
            return;
        }
        let mut last = self.last_progress.lock().expect("progress lock");
        let due = last.get(stage).is_none_or(|t| t.elapsed() >= PROGRESS_LINE_EVERY);
        if due || p.finished() {
            last.insert(stage.to_string(), Instant::now());
            drop(last);
            self.line("progress", stage, &text);
        }
    }
}

impl Observer for Renderer {
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
            Event::StageStarted { stage } => {
                self.set_note(stage, Some(""));
                self.line("start", stage, "");
            }
            Event::Note { stage, note } => self.set_note(stage, Some(note)),
            Event::Progress { stage, done, total, unit, message, elapsed } => {
                self.progress(stage, ProgressText { done, total, unit, message, elapsed })
            }
            Event::Message { line } => match self.bar() {
                Some(b) => b.println(line),
                None if self.chatty => eprintln!("{line}"),
                None => {}
            },
            Event::StageFinished { result } => {
                self.finished(result);
                self.line(status_word(result.status), &result.name, &end_rest(result));
            }
            Event::StagesPlanned { results } => {
                for r in results {
                    self.finished(r);
                }
                // Each stage's `start` and end, all in one write: a no-op
                // run of a big pipeline writes thousands of these.
                if let Some(stream) = self.lines {
                    let now = now();
                    let mut text = String::new();
                    for r in results {
                        push_line(&mut text, &now, "start", &r.name, "");
                        push_line(&mut text, &now, status_word(r.status), &r.name, &end_rest(r));
                    }
                    stream.write(&text);
                }
            }
            Event::StagesDone => self.clear(),
        }
    }
}

impl Stream {
    /// Write `text` in one call.
    fn write(self, text: &str) {
        let _ = match self {
            Stream::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

/// The time a stage line starts with.
fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// A stage line: `TIME what stage  rest`.
fn push_line(text: &mut String, now: &str, what: &str, stage: &str, rest: &str) {
    if rest.is_empty() {
        let _ = writeln!(text, "{now} {what:<8} {stage}");
    } else {
        let _ = writeln!(text, "{now} {what:<8} {stage}  {rest}");
    }
}

/// What a stage's end line says after its name: seconds, and whether it
/// was restored or why it was skipped.
fn end_rest(result: &StageResult) -> String {
    let mut rest = format!("{:.2}s", result.seconds);
    if result.action == dvx_engine::Action::Restore && result.status != Status::Failed {
        rest.push_str("  (restored from the cache)");
    }
    if let Some(e) = result.error.as_deref().filter(|_| result.status == Status::Skipped) {
        rest = format!("{rest}  ({e})");
    }
    rest
}

/// A status as the table and the stage lines print it.
fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ran => "ran",
        Status::Cached => "cached",
        Status::Cutoff => "cut off",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Cancelled => "cancelled",
    }
}

/// A stage's progress as one short text: `step 40/200 (20%) loss 3.21 ETA 1m 12s`.
struct ProgressText<'a> {
    done: u64,
    total: Option<u64>,
    unit: &'a str,
    message: &'a str,
    elapsed: Duration,
}

impl ProgressText<'_> {
    fn finished(&self) -> bool {
        self.total.is_some_and(|t| self.done >= t)
    }
}

impl std::fmt::Display for ProgressText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.total {
            Some(t) if t > 0 => {
                write!(f, "{} {}/{t} ({}%)", self.unit, self.done, self.done.min(t) * 100 / t)?;
            }
            _ => write!(f, "{} {}", self.unit, self.done)?,
        }
        if !self.message.is_empty() {
            write!(f, " {}", self.message)?;
        }
        if let Some(t) = self.total.filter(|&t| self.done > 0 && self.done < t) {
            let left = self.elapsed.as_secs_f64() / self.done as f64 * (t - self.done) as f64;
            let left = Duration::from_secs(left.round() as u64);
            write!(f, " ETA {}", humantime::format_duration(left))?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text_says_count_status_and_eta() {
        let p = ProgressText {
            done: 50,
            total: Some(200),
            unit: "step",
            message: "loss 3.2",
            elapsed: Duration::from_secs(10),
        };
        assert_eq!(p.to_string(), "step 50/200 (25%) loss 3.2 ETA 30s");
        assert!(!p.finished());
        let p = ProgressText { done: 7, total: None, unit: "records", message: "", elapsed: Duration::from_secs(1) };
        assert_eq!(p.to_string(), "records 7");
        let p = ProgressText { done: 4, total: Some(4), unit: "step", message: "", elapsed: Duration::from_secs(1) };
        assert_eq!(p.to_string(), "step 4/4 (100%)");
        assert!(p.finished());
    }
}
