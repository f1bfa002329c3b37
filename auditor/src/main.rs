//! `hexagone-auditor` binary: parses the command line, then hands over to the library.

use clap::{CommandFactory as _, FromArgMatches as _};

/// jemalloc instead of the system's allocator: the service allocates and frees many small
/// objects on several threads (requests parsed and judged on some, committed and dropped on
/// another), where it measured 67,600–73,300 observations/s over HTTP against 43,000–44,000
/// with glibc's (`cargo bench -p hexagone-auditor --bench ingest`, `docs/auditor-service.md`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    quiet_when_stdout_is_closed();
    // The service's and the collector's log: structured events on standard error, level from
    // RUST_LOG (default info). Command output (reports, verdicts, keys) stays on stdout.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let matches = hexagone_auditor::cli::Cli::command()
        .long_version(hexagone_platform::geo::long_version(env!(
            "CARGO_PKG_VERSION"
        )))
        .get_matches();
    let cli = hexagone_auditor::cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match hexagone_auditor::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("hexagone-auditor: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `hexagone-auditor verify … | head`: once the reader of the output has gone, the program
/// stops quietly with the status a shell gives a program ended by SIGPIPE (141), as other
/// command-line tools do, instead of reporting a panic. Nothing is lost: output is printed
/// after the work it reports is done, and an acknowledgement is given only once durable.
fn quiet_when_stdout_is_closed() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload_as_str().unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
