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
pub enum Command {
    /// Where an address or a node is, on what evidence, and what a locality policy says about it.
    Locate(crate::locate::LocateArgs),
}

/// Runs one parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Locate(args) => crate::locate::run(args),
    }
}
