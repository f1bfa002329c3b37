//! `hexagone-auditor` binary: parses the command line, then hands over to the library.

use clap::{CommandFactory as _, FromArgMatches as _};

/// jemalloc instead of the system's allocator: the service allocates and frees many small
/// objects on several threads (requests parsed and judged on some, committed and dropped on
/// another), where it measured 67,600–73,300 observations/s over HTTP against 43,000–44,000
/// with glibc's (`cargo bench -p hexagone-auditor --bench ingest`, `docs/auditor-service.md`).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options for this process: freed pages go back to the system within about 100 ms
/// (`dirty_decay_ms:100`; the default, 10,000 ms: jemalloc 5.3's manual,
/// <https://jemalloc.net/jemalloc.3.html#opt.dirty_decay_ms>, and `DIRTY_DECAY_MS_DEFAULT` in
/// `jemalloc/include/jemalloc/internal/arena_types.h` of tikv-jemalloc-sys 0.6.1), purged by
/// jemalloc's own background threads (`background_thread:true`,
/// <https://jemalloc.net/jemalloc.3.html#background_thread>) rather than by the threads that
/// free, so the service's memory follows `--max-inflight-bytes` instead of reaching about twice
/// it under a stream of large requests (`cargo bench -p hexagone-auditor --bench flood`,
/// `docs/threat-model.md`) without the cost of giving every page back at once on the request
/// path (`dirty_decay_ms:0` took 15 to 30% of the HTTP ingest rate: `--bench ingest`).
/// `muzzy_decay_ms:0` is the default, written so that the string says the whole policy.
const MALLOC_CONF: &str = "background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0";
/// Subcommands that keep jemalloc's defaults: `append` holds a bounded pipeline of its own
/// input, not requests from others, so it needs no bound beyond that; giving every freed page
/// back at once (this binary's setting before the background threads) cost it half its speed
/// (page faults and `madvise` took a quarter of its processor time: `docs/ledger.md`, *End to
/// end*).
const DEFAULT_DECAY: &[&str] = &["append"];
/// The environment variable jemalloc reads its options from when it starts: `MALLOC_CONF`
/// under the `_rjem_` prefix tikv-jemalloc-sys builds it with (its README,
/// `JEMALLOC_SYS_WITH_MALLOC_CONF` and `unprefixed_malloc_on_supported_platforms`).
const MALLOC_CONF_VAR: &str = "_RJEM_MALLOC_CONF";

fn main() -> std::process::ExitCode {
    with_malloc_conf();
    hexagone_platform::process::quiet_when_stdout_is_closed();
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

/// Starts the program again with [`MALLOC_CONF`] in jemalloc's environment variable unless that
/// variable is set or the subcommand is one of [`DEFAULT_DECAY`] (an operator's own options win, `_RJEM_MALLOC_CONF=` keeps jemalloc's
/// defaults). jemalloc reads its options once, when it starts, and the other ways to give them
/// (a `malloc_conf` symbol, `mallctl`) need unsafe code, which the workspace forbids. If the
/// program cannot be started again (no `/proc/self/exe`), it goes on with jemalloc's defaults
/// and says so.
fn with_malloc_conf() {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os(MALLOC_CONF_VAR).is_some()
        || std::env::args_os()
            .nth(1)
            .is_some_and(|c| DEFAULT_DECAY.iter().any(|d| c == *d))
    {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .arg0(arg0)
            .args(args)
            .env(MALLOC_CONF_VAR, MALLOC_CONF)
            .exec(),
        Err(e) => e,
    };
    eprintln!(
        "hexagone-auditor: could not start again with {MALLOC_CONF_VAR}={MALLOC_CONF} ({error}); \
         going on with jemalloc's defaults: freed memory is given back over about 10 s"
    );
}
