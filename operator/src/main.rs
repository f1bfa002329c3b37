//! `hexagone-operator` binary: parses the command line, then hands over to the library.

use clap::{CommandFactory as _, FromArgMatches as _};

fn main() -> std::process::ExitCode {
    hexagone_platform::process::quiet_when_stdout_is_closed();
    let matches = hexagone_operator::Config::command()
        .long_version(hexagone_platform::geo::long_version(env!(
            "CARGO_PKG_VERSION"
        )))
        .get_matches();
    let config = hexagone_operator::Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match hexagone_operator::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hexagone-operator: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
