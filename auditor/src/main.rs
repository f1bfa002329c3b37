//! `hexagone-auditor` binary: parses the command line, then hands over to the library.

use clap::{CommandFactory as _, FromArgMatches as _};

fn main() -> std::process::ExitCode {
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
