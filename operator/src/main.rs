//! `hexagone-operator` binary: parses the command line, then hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let config = hexagone_operator::Config::parse();
    match hexagone_operator::run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hexagone-operator: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
