//! `clientele`: the nightly customer-warehouse job, the demo, queries over what it published, and its
//! run history. This file parses arguments, sets up logging and maps errors to exit codes:
//! 0 success, 1 the run failed, 2 bad usage or spec.

/// `println!` for command output: a reader that stops early (`clientele runs | head`) ends the
/// program quietly with success instead of a panic on the closed pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod args;
mod commands;
mod export;
mod fit;
mod progress;
mod score;

use std::process::ExitCode;

/// mimalloc, as datafusion-cli uses: with the system allocator the process kept memory freed by
/// one step (glibc's per-thread arenas) into the next, and allocated more slowly. Built without
/// transparent huge pages (the `no_thp` feature): each 2 MiB page mimalloc asked for was zeroed
/// whole by the kernel on first touch and again after every purge, 17% of the consolidate step's
/// CPU at 1,000,000 persons; without them that step ran 6% faster at the same peak memory
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// Exit code for a failed run.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or a bad spec.
const EXIT_USAGE: u8 = 2;
/// Exit code for a run that succeeded and published, with segment alarms a scheduler should raise.
const EXIT_ALARMS: u8 = 3;

fn init_logging(args: &args::Cli, interactive: bool) {
    use tracing_subscriber::EnvFilter;
    // On a terminal the progress display and the report tell the story; logs are for warnings.
    // Under a scheduler (no terminal) the steps are logged as they run.
    let default = match (args.verbose, args.quiet, interactive) {
        (_, true, _) => "warn",
        (0, false, true) => "warn",
        (0, false, false) | (1, false, true) => {
            "warn,clientele=info,clientele_jobs=info,clientele_ingest=info,clientele_segments=info"
        }
        _ => {
            "info,clientele=debug,clientele_jobs=debug,clientele_ingest=debug,clientele_sql=debug,clientele_segments=debug"
        }
    };
    let filter =
        EnvFilter::try_from_env("CLIENTELE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(interactive);
    match args.log_format {
        args::LogFormat::Json => builder.json().with_current_span(false).init(),
        args::LogFormat::Human => builder.with_target(false).init(),
    }
}

/// A panic (a bug, in clientele or a library) ends the program with exit 1 and one line naming
/// where it happened, like any failed run, instead of exit 101 and a Rust backtrace; the
/// backtrace follows only with `RUST_BACKTRACE=1`. Nothing is published by a run that panics: the
/// runner publishes only after every step succeeded.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let line = message.lines().next().unwrap_or_default();
        eprintln!("error: internal error (a bug; please report it with this line): {line}{place}");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let args = args::Cli::parse();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    init_logging(&args, interactive);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(commands::dispatch(args, interactive))
    }));
    match outcome {
        // The hook has said what happened.
        Err(_) => ExitCode::from(EXIT_FAILED),
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            let code = if is_usage_error(&err) {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
            eprintln!("error: {}", commands::error_chain(&err));
            ExitCode::from(code)
        }
    }
}

/// Errors that are the user's spec or arguments rather than a failed run.
fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<clientele_jobs::Error>(),
            Some(clientele_jobs::Error::Spec { .. } | clientele_jobs::Error::NotPublished(_))
        ) || e.downcast_ref::<commands::UsageError>().is_some()
    })
}
