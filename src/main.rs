//! The `dvx` binary: parse the command line, call the library, map the
//! outcome to an exit code (0 ok, 1 a stage failed, 2 a dvx error).

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;

mod cli;
mod commands;

fn main() -> ExitCode {
    // Process-wide settings are the binary's to make, not the libraries'.
    // They come first, while this is the only thread: nothing can read the
    // environment or allocate concurrently.
    //
    // `dvx log | head` should end quietly, as other Unix tools do, not panic on EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // candle sizes its CPU worker pool once per process from CANDLE_NUM_THREADS
    // (else all physical cores, spinning); pin it so training stages do not
    // oversubscribe the machine when several run at once. candle 0.11 has no
    // API for that pool's size, so the variable it is; set before any thread
    // exists, so no other thread can be reading the environment.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
    keep_freed_memory();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => not_a_dvx_command(e).exit(),
    };
    init_tracing(args.verbose);
    miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().terminal_links(false).unicode(true).context_lines(1).build())
    }))
    .ok();
    match commands::dispatch(args) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(2)
        }
    }
}

/// `dvx repro`: a DVC user's `dvc repro` is `dvx run`, not `dvx reproduce`
/// (which clap would suggest, sending them to a scratch rebuild of a past
/// version). Say so instead; every other parse error as clap has it.
fn not_a_dvx_command(e: clap::Error) -> clap::Error {
    let is_repro = e.kind() == ErrorKind::InvalidSubcommand
        && matches!(e.get(ContextKind::InvalidSubcommand), Some(ContextValue::String(s)) if s == "repro");
    if !is_repro {
        return e;
    }
    clap::Error::raw(
        ErrorKind::InvalidSubcommand,
        "unrecognized subcommand 'repro'\n\n  \
         `dvc repro` ≈ `dvx run`: run the pipeline, executing stale stages and restoring cached ones\n  \
         `dvx reproduce HASH` re-executes a past version in a scratch folder and compares\n\n\
         For more information, try '--help'.\n",
    )
}

/// A training step allocates and frees the same few-MB activation buffers
/// hundreds of times; glibc's defaults hand them back to the kernel
/// (munmap/trim) and fault them in again, a fifth of the step's time on a
/// small model. Keep freed memory in the process instead: allocations up to
/// 32 MiB come from the heap, and heaps are never trimmed. Only the retained
/// memory changes, never results; a short-lived command gives it all back on exit.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "dvx=info,dvx_engine=info,dvx_stages=info,dvx_cache=info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal that takes them, and never with NO_COLOR: a log file gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(commands::colour_stderr())
        .with_target(false)
        .init();
}
