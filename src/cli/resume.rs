//! `dpplan resume` and `dpplan retry`: runs that continue or repeat a stored one.

use super::codes::EXIT_OK;
use super::progress::Progress;
use super::report::open_writer;
use super::run::{interrupts, origin, report, run_program, runtime, state_path};
use super::CliError;
use crate::engine::clock::SystemClock;
use crate::engine::{Engine, RunOptions};
use crate::soma::SomaConnector;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `dpplan resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run to resume; default: the newest unfinished run.
    pub run: Option<u64>,
    /// Continue even outside the plan's maintenance window (a run started with
    /// --ignore-window keeps ignoring it without this).
    #[arg(long)]
    pub ignore_window: bool,
    /// The state file (default: $DPPLAN_STATE, else $XDG_STATE_HOME/dpplan/state.redb, else
    /// ~/.local/state/dpplan/state.redb).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Fail at once (exit 1) when another process writes the state file, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines (for cron).
    #[arg(long)]
    pub quiet: bool,
}

/// `dpplan resume`: continues an interrupted or crashed run from its journal.
pub fn resume(args: ResumeArgs) -> Result<u8, CliError> {
    use crate::store::History;
    let path = state_path(args.state.as_deref());
    if !path.exists() {
        return Err(CliError::NoStateFile { path });
    }
    let store = Arc::new(open_writer(&path, args.no_wait)?);
    let run = match args.run {
        Some(r) => r,
        None => match store.latest_unfinished()? {
            Some(r) => r,
            None => {
                eprintln!(
                    "nothing to resume: every run in {} has finished",
                    path.display()
                );
                return Ok(EXIT_OK);
            }
        },
    };
    let rt = runtime()?;
    let live = Arc::new(crate::engine::Live::default());
    let progress = Progress::new(args.quiet);
    let observer = progress.observer();
    let say = progress.sayer();
    let journal: Arc<dyn crate::store::Journal> = store.clone();
    let (outcome, interrupts) = rt.block_on(async {
        let interrupts = tokio::spawn(interrupts(live.clone(), say));
        let mut engine = Engine::builder(journal, Arc::new(SomaConnector), Arc::new(SystemClock))
            .options(RunOptions {
                ignore_window: args.ignore_window,
                origin: Some(origin(None)),
                ..RunOptions::default()
            })
            .live(live);
        if let Some(o) = observer {
            engine = engine.observe(o);
        }
        (engine.resume(store.as_ref(), run).await, interrupts)
    });
    progress.finish();
    let r = outcome?;
    let outcome = report(&r, args.json);
    // As after `run`: what the outbox has due, for a few seconds at most.
    interrupts.abort();
    super::notify::deliver(&rt, store, args.quiet);
    outcome
}

/// `dpplan retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The finished run whose tasks to run again.
    pub run: u64,
    /// Only these tasks (repeat; default: every task that did not succeed).
    #[arg(long = "task", value_name = "N")]
    pub tasks: Vec<u32>,
    /// The state file (default: $DPPLAN_STATE, else $XDG_STATE_HOME/dpplan/state.redb, else
    /// ~/.local/state/dpplan/state.redb).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Run even outside the plan's maintenance window.
    #[arg(long)]
    pub ignore_window: bool,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines (for cron).
    #[arg(long)]
    pub quiet: bool,
    /// Fail at once (exit 1) when another process writes the state file, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
}

/// `dpplan retry`: a new run of a finished run's stored program, for the tasks that did not
/// succeed (or the chosen ones). Nothing but the stored run is read.
pub fn retry(args: RetryArgs) -> Result<u8, CliError> {
    let path = state_path(args.state.as_deref());
    // The read-only store is closed before the run opens the file for writing.
    let r = {
        let store = super::report::open_state(&super::report::StateArg {
            state: Some(path.clone()),
        })?;
        crate::engine::retry_plan(&store, args.run, &args.tasks)?
    };
    let options = RunOptions {
        ignore_window: args.ignore_window,
        origin: Some(origin(None)),
        retry: Some(r.retry),
        ..RunOptions::default()
    };
    let ended = run_program(
        r.program,
        &r.plan,
        &r.plan_text,
        &path,
        options,
        args.quiet,
        args.no_wait,
    )?;
    if !args.json {
        eprintln!("run {} retried run {}", ended.report.run, args.run);
    }
    let outcome = report(&ended.report, args.json);
    ended.deliver(args.quiet);
    outcome
}
