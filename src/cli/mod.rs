//! The command line: clap commands; the only layer that prints.
//!
//! Data goes to stdout; diagnostics and progress go to stderr. Colour only on a terminal,
//! and never with `NO_COLOR` set.

mod codes;
mod demo;
mod error;
mod files;
mod lint;
mod notify;
mod output;
mod progress;
mod render;
mod report;
mod restore;
mod resume;
mod run;
mod screen;
mod serve;
mod sim;

use clap::{CommandFactory, Parser, Subcommand};
pub use codes::{Format, EXIT_CLOSED_PIPE, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE};
use error::CliError;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Whether a panic is std's print macros failing because the pipe's reader has gone.
fn closed_pipe(message: Option<&str>) -> bool {
    message.is_some_and(|m| m.starts_with("failed printing to") && m.contains("Broken pipe"))
}

/// A panic's message, when it is text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// dpplan: durable, declarative backups of IBM DataPower appliance fleets.
#[derive(Debug, Parser)]
#[command(name = "dpplan", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lint plan files: every problem in one pass, with codes and source spans.
    Check {
        /// Plan files, or directories to search for *.dpplan files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// How to print diagnostics.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Format plan files canonically, in place.
    Fmt {
        /// Plan files or directories; `-` formats stdin to stdout.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Change nothing; exit 1 and print a diff when a file is not canonical.
        #[arg(long)]
        check: bool,
    },
    /// Print the explanation of a diagnostic code, or list every code.
    Explain {
        /// A code such as DP0007; without it, the list of codes.
        code: Option<String>,
    },
    /// Expand a plan against the live fleet and list its tasks, changing nothing.
    Plan(run::DryRunArgs),
    /// Print the step graph: the kinds' templates, or the run graph with --expanded.
    Graph(run::GraphArgs),
    /// Run a plan: back up what it says, durably, against the live fleet.
    Run(run::RunArgs),
    /// Continue an interrupted or crashed run from its journal.
    Resume(resume::ResumeArgs),
    /// Run again the tasks of a finished run that did not succeed (or the chosen ones).
    Retry(resume::RetryArgs),
    /// Run the example plan against an embedded simulated fleet, then show its result pages.
    Demo(demo::DemoArgs),
    /// Run a simulated fleet of appliances (SOMA over HTTP or HTTPS) until interrupted.
    Sim(sim::SimArgs),
    /// The most recent runs, newest first.
    Runs(report::RunsArgs),
    /// A run's activities; with --activity its tasks, with --task one task.
    Show(report::ShowArgs),
    /// A run's activity log, with the time each line took.
    Log(report::LogArgs),
    /// Check backup files against their manifests (size, SHA-256, archives).
    Verify(files::VerifyArgs),
    /// Remove old backups per the store block's keep_last and keep_days.
    Prune(files::PruneArgs),
    /// Restore a domain (import) or a whole device (secure restore) from a backup, durably.
    Restore(restore::RestoreArgs),
    /// The store's catalogue: every backup, with its device, domain, time, run and firmware.
    Backups(restore::BackupsArgs),
    /// Compare two domain exports: objects and files added, removed, changed (exit 1 if any).
    Diff(restore::DiffArgs),
    /// Run unattended: schedule the plans, drive their runs, serve the HTTP API.
    Serve(serve::ServeArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    // A print macro writing into a closed pipe panics: quietly, and the guard below makes it
    // the CliError::ClosedPipe that `out` returns.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !closed_pipe(panic_text(info.payload())) {
            default_hook(info);
        }
    }));
    // The command's error is printed inside the unwind guard: stderr closed under it is a
    // closed pipe too.
    let outcome = std::panic::catch_unwind(move || error::exit_code(dispatch(cli)));
    ExitCode::from(match outcome {
        Ok(code) => code,
        Err(payload) => {
            let e = if closed_pipe(panic_text(payload.as_ref())) {
                CliError::ClosedPipe
            } else {
                CliError::Panicked
            };
            // Not `error::print`: a panic here would not be caught.
            if !matches!(e, CliError::ClosedPipe) {
                let _ = writeln!(std::io::stderr(), "error: {e}");
            }
            e.code()
        }
    })
}

/// Runs the command; its error, if any, is for [`error::exit_code`] to print.
fn dispatch(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Check {
            files,
            format,
            deny_warnings,
        } => lint::check(&files, format, deny_warnings),
        Command::Fmt { files, check } => lint::fmt(&files, check),
        Command::Explain { code } => lint::explain(code.as_deref()),
        Command::Plan(args) => run::dry_run(args),
        Command::Graph(args) => run::graph(args),
        Command::Run(args) => run::run(args),
        Command::Resume(args) => resume::resume(args),
        Command::Retry(args) => resume::retry(args),
        Command::Demo(args) => demo::demo(args),
        Command::Sim(args) => sim::run_sim(args),
        Command::Fetch(args) => sim::run_fetch(args),
        Command::Runs(args) => report::runs(args),
        Command::Show(args) => report::show(args),
        Command::Log(args) => report::log(args),
        Command::Verify(args) => files::verify(args),
        Command::Prune(args) => files::prune(args),
        Command::Restore(args) => restore::restore(args),
        Command::Backups(args) => restore::backups(args),
        Command::Diff(args) => restore::diff(args),
        Command::Serve(args) => serve::serve(args),
        Command::Completions { shell } => report::completions(shell, Cli::command()),
    }
}
