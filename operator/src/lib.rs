//! The Hexagone operator library: typed configuration and the entry point the binary calls.
//!
//! The reconciler (Workplace and LocalityPolicy controllers) is not built yet; this crate
//! currently holds only the configuration surface so the workspace layout is in place.

use clap::Parser;

/// Command-line configuration of `hexagone-operator`.
#[derive(Debug, Parser)]
#[command(name = "hexagone-operator", version, about)]
pub struct Config {}

/// Runs the operator with a parsed configuration.
///
/// # Errors
/// Always, for now: the controllers are not implemented yet, and saying so is better than
/// pretending to reconcile.
pub fn run(_config: Config) -> anyhow::Result<()> {
    anyhow::bail!("the Workplace controller is not implemented yet; see docs/ARCHITECTURE.md")
}
