//! The command line: clap commands; the only layer that prints.

mod sim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// dpplan: durable, declarative backups of IBM DataPower appliance fleets.
#[derive(Debug, Parser)]
#[command(name = "dpplan", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lint plan files.
    Check {
        /// Plan files to check.
        files: Vec<std::path::PathBuf>,
    },
    /// Run a simulated fleet of appliances (SOMA over HTTP or HTTPS) until interrupted.
    Sim(sim::SimArgs),
    /// Download one appliance file through the client (benchmark helper).
    #[command(hide = true)]
    Fetch(sim::FetchArgs),
}

/// Parse argv, run the command, and return the process exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Check { files } => {
            let _ = files;
            ExitCode::SUCCESS
        }
        Command::Sim(args) => sim::run_sim(args),
        Command::Fetch(args) => sim::run_fetch(args),
    }
}
