//! `hexagone-auditor` binary: parses the command line, then hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = hexagone_auditor::cli::Cli::parse();
    match hexagone_auditor::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("hexagone-auditor: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
