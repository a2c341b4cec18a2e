//! The CLI's one error boundary: what a command fails with, and the one place that prints it
//! (`error: ...` on stderr) and turns it into the process's exit code (docs/cli.md, "Exit
//! codes").
//!
//! Commands return `Result<u8, CliError>`: `Ok` carries the codes of success (0, and a run's
//! 4 INTERRUPTED and 5 WARNING); every failure is a `CliError`, and the dispatcher hands it to
//! [`exit_code`]. Warnings, notes, progress and "waiting for ..." lines are not errors: they
//! are printed where they happen.

use super::codes::{EXIT_CLOSED_PIPE, EXIT_FAILED, EXIT_INTERNAL, EXIT_USAGE};
use crate::check::load::ReadError;
use crate::engine::EngineError;
use crate::report::table::printable;
use crate::serve::ServeError;
use crate::store::StoreError;
use std::path::PathBuf;

/// Why a command failed, and so its exit code: 1 bad input or failed work, 2 a wrong command
/// line, 3 a bug in dpplan (or the system failing under it), 141 a closed pipe.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input or failed work, said in one sentence (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The command line is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// dpplan itself failed, or the system under it (exit 3).
    #[error("{0}")]
    Internal(String),
    /// The state file: missing runs, a file in use, newer, damaged or unwritable (exit 1).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine stopped: the journal failed, the run cannot be resumed (exit 1). Shown with
    /// control characters escaped: what a device or the state file said may carry them.
    #[error("{}", printable(&.0.to_string(), false))]
    Engine(#[from] EngineError),
    /// `dpplan serve` cannot start (exit 1).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A file or directory that cannot be read, written, created or removed (exit 1):
    /// `cannot read PATH: why`.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, as the message starts (`cannot read`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A plan file that cannot be read as text (exit 1).
    #[error("cannot read {}: {source}", path.display())]
    PlanFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ReadError,
    },
    /// A plan file has errors (exit 1); they are rendered before it, or `dpplan check` lists
    /// them.
    #[error("{} has errors; `dpplan check` lists them", path.display())]
    PlanErrors {
        /// The file.
        path: PathBuf,
    },
    /// No state file where a command looked for one (exit 1); a note follows when an older
    /// dpplan's state file is in the current directory.
    #[error(
        "no state file at {} (no run yet? name one with --state or DPPLAN_STATE)",
        path.display()
    )]
    NoStateFile {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The async runtime cannot start: the system refuses threads or descriptors (exit 3).
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Standard output cannot be written, for another reason than a closed pipe (exit 3).
    #[error("cannot write to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// A panic: a bug in dpplan (exit 3).
    #[error("dpplan failed internally; please report this with the input that caused it")]
    Panicked,
    /// The reader of standard output (or error) went away, as `dpplan ... | head` does: the
    /// command ends quietly (exit 141, what a death by SIGPIPE shows in a shell).
    #[error("the reader of the output has gone")]
    ClosedPipe,
    /// The failure is already on the screen (diagnostics rendered, a run's table, a diff);
    /// only its exit code is left.
    #[error("already reported (exit {0})")]
    Reported(u8),
}

impl CliError {
    /// Exit 1 with `message`.
    pub(crate) fn failed(message: impl Into<String>) -> CliError {
        CliError::Failed(message.into())
    }

    /// Exit 2 with `message`.
    pub(crate) fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    /// Exit 3 with `message`.
    pub(crate) fn internal(message: impl Into<String>) -> CliError {
        CliError::Internal(message.into())
    }

    /// `action PATH: source`, exit 1.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> CliError {
        CliError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The process's exit code for this error.
    pub fn code(&self) -> u8 {
        match self {
            CliError::Store(e) => store_code(e),
            CliError::Failed(_)
            | CliError::Engine(_)
            | CliError::Serve(_)
            | CliError::Io { .. }
            | CliError::PlanFile { .. }
            | CliError::PlanErrors { .. }
            | CliError::NoStateFile { .. } => EXIT_FAILED,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Internal(_)
            | CliError::Runtime(_)
            | CliError::Stdout(_)
            | CliError::Panicked => EXIT_INTERNAL,
            CliError::ClosedPipe => EXIT_CLOSED_PIPE,
            CliError::Reported(code) => *code,
        }
    }

    /// Whether there is anything left to print.
    fn shown(&self) -> bool {
        !matches!(self, CliError::ClosedPipe | CliError::Reported(_))
    }
}

/// The exit code of a state file's error: a locked, newer, damaged or unreadable state file is
/// bad input, not a bug in dpplan (each variant named, so a new one is classed on purpose).
fn store_code(e: &StoreError) -> u8 {
    match e {
        StoreError::Locked { .. }
        | StoreError::NoRun(_)
        | StoreError::Version { .. }
        | StoreError::Open { .. }
        | StoreError::NeedsRecovery { .. }
        | StoreError::Redb(_)
        | StoreError::Corrupt { .. }
        | StoreError::Encode { .. }
        | StoreError::Io { .. }
        | StoreError::Incomplete { .. }
        | StoreError::WriterGone
        | StoreError::Batch(_) => EXIT_FAILED,
    }
}

/// Prints `e` on stderr (`error: ...`, then the note that goes with it); nothing for a closed
/// pipe or what is already on the screen. The dispatcher calls it for the error a command
/// ends with; a command that reports an error and goes on (one file of several that cannot be
/// written) calls it too, and ends failed.
pub(crate) fn print(e: &CliError) {
    if !e.shown() {
        return;
    }
    eprintln!("error: {e}");
    if let CliError::NoStateFile { path } = e {
        super::report::legacy_note(path);
    }
}

/// The exit code of a command's outcome, its error printed.
pub(crate) fn exit_code(outcome: Result<u8, CliError>) -> u8 {
    match outcome {
        Ok(code) => code,
        Err(e) => {
            print(&e);
            e.code()
        }
    }
}
