//! Command-line surface of `hexagone-auditor`: one clap type per subcommand, dispatched by `run`.

use clap::{Parser, Subcommand};

/// `hexagone-auditor` command line.
#[derive(Debug, Parser)]
#[command(name = "hexagone-auditor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {}
}
