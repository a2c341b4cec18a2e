//! `dpplan resume` and `dpplan retry`: runs that continue or repeat a stored one.

use super::progress::Progress;
use super::report::open_writer;
use super::run::{interrupts, origin, report, run_program, runtime, state_path};
use super::{EXIT_FAILED, EXIT_INTERNAL, EXIT_OK};
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
pub fn resume(args: ResumeArgs) -> u8 {
    use crate::store::History;
    let path = state_path(args.state.as_deref());
    if !path.exists() {
        eprintln!("error: no state file at {}", path.display());
        return EXIT_FAILED;
    }
    let store = match open_writer(&path, args.no_wait) {
        Ok(s) => Arc::new(s),
        Err(code) => return code,
    };
    let run = match args.run {
        Some(r) => r,
        None => match store.latest_unfinished() {
            Ok(Some(r)) => r,
            Ok(None) => {
                eprintln!(
                    "nothing to resume: every run in {} has finished",
                    path.display()
                );
                return EXIT_OK;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_FAILED;
            }
        },
    };
    let Some(rt) = runtime() else {
        return EXIT_INTERNAL;
    };
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
    match outcome {
        Ok(r) => {
            let code = report(&r, args.json);
            // As after `run`: what the outbox has due, for a few seconds at most.
            interrupts.abort();
            super::notify::deliver(&rt, store, args.quiet);
            code
        }
        Err(e) => {
            eprintln!(
                "error: {}",
                crate::report::table::printable(&e.to_string(), false)
            );
            EXIT_FAILED
        }
    }
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
pub fn retry(args: RetryArgs) -> u8 {
    let path = state_path(args.state.as_deref());
    let found = match super::report::open_state(&super::report::StateArg {
        state: Some(path.clone()),
    }) {
        Ok(store) => crate::engine::retry_plan(&store, args.run, &args.tasks),
        Err(code) => return code,
    };
    let r = match found {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let options = RunOptions {
        ignore_window: args.ignore_window,
        origin: Some(origin(None)),
        retry: Some(r.retry),
        ..RunOptions::default()
    };
    match run_program(
        r.program,
        &r.plan,
        &r.plan_text,
        &path,
        options,
        args.quiet,
        args.no_wait,
    ) {
        Ok(ended) => {
            if !args.json {
                eprintln!("run {} retried run {}", ended.report.run, args.run);
            }
            let code = report(&ended.report, args.json);
            ended.deliver(args.quiet);
            code
        }
        Err(code) => code,
    }
}
