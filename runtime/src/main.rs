//! The `sluice` binary: parses the command line and hands off to the runtime.

use clap::Parser;
use sluice_runtime::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(_) | Command::Localrun(_) | Command::Validate(_) | Command::Check(_) => {
            anyhow::bail!(
                "this build of sluice has its command line only; the engine is not built yet"
            )
        }
    }
}
