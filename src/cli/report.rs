//! `dpplan runs`, `dpplan show`, `dpplan log` and `dpplan completions`: the result pages, as
//! tables (a terminal's width, whole values in a pipe; times in the local zone or `--utc`) or
//! as `--json` (docs/cli.md names the fields).

use super::codes::EXIT_OK;
use super::output::out;
use super::screen::{Stream, UtcArg};
use super::CliError;
use crate::report::{self, ActivityPage, RunPage, RunView, TaskPage};
use crate::store::owner::Owner;
use crate::store::{History, ReadOnlyStore, RedbStore, RunId, StoreError};
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The state file option every report command takes.
#[derive(Debug, Args)]
pub struct StateArg {
    /// The state file (default: $DPPLAN_STATE, else $XDG_STATE_HOME/dpplan/state.redb, else
    /// ~/.local/state/dpplan/state.redb).
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

/// `dpplan runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this plan.
    #[arg(long, value_name = "P")]
    pub plan: Option<String>,
    /// At most this many runs, newest first.
    #[arg(long, value_name = "N", default_value_t = 40)]
    pub limit: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub utc: UtcArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// `dpplan show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's number (`dpplan runs` lists them).
    pub run: RunId,
    /// Show this activity's tasks.
    #[arg(long, value_name = "N", conflicts_with = "task")]
    pub activity: Option<u32>,
    /// Show this task: firmware, steps, files with sizes and checksums.
    #[arg(long, value_name = "N")]
    pub task: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub utc: UtcArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// `dpplan log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The run's number.
    pub run: RunId,
    /// Only this task's lines.
    #[arg(long, value_name = "N")]
    pub task: Option<u32>,
    /// Print a JSON array instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub utc: UtcArg,
    #[command(flatten)]
    pub state: StateArg,
}

/// Opens an existing state file read-only (while a run may write it).
pub(crate) fn open_state(arg: &StateArg) -> Result<ReadOnlyStore, CliError> {
    let path = super::run::state_path(arg.state.as_deref());
    if !path.is_file() {
        return Err(CliError::NoStateFile { path });
    }
    let store = ReadOnlyStore::open(&path)?;
    if store.recovered() {
        eprintln!(
            "note: recovered {} (its last writer was killed before it closed it)",
            path.display()
        );
    }
    Ok(store)
}

/// How often a command that waits for the state file's writer tries again.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens the state file at `path` for writing (`run`, `resume`, `prune`). While another
/// process writes it: waits, saying whom for (again when that changes), or with `no_wait`
/// fails at once.
pub(crate) fn open_writer(path: &Path, no_wait: bool) -> Result<RedbStore, CliError> {
    if !path.exists() {
        legacy_note(path);
    }
    let shown = path.display();
    if let Some(url) = crate::store::owner::holder(path)
        .owner()
        .and_then(|o| o.serve.clone().map(|u| (u, o.pid)))
    {
        // serve never lets go of the file: waiting would be for ever.
        let (url, pid) = url;
        return Err(CliError::failed(format!(
            "dpplan serve (pid {pid}) holds the state file {shown}; start runs through it: \
             curl -X POST -H \"Authorization: Bearer $DPPLAN_TOKEN\" {url}/api/plans/PLAN/runs"
        )));
    }
    let opened = if no_wait {
        RedbStore::open(path)
    } else {
        let mut said = String::new();
        RedbStore::open_waiting(path, WAIT_POLL, |owner| {
            let now = who(owner);
            if now != said {
                eprintln!(
                    "waiting for the state file {shown}: {now} is using it; --no-wait fails at once"
                );
                said = now;
            }
        })
    };
    opened.map_err(|e| match e {
        StoreError::Locked { owner, .. } => CliError::failed(format!(
            "the state file {shown} is in use: {} is writing it (without --no-wait, dpplan waits for it)",
            who(owner.as_deref())
        )),
        e => e.into(),
    })
}

/// The process that writes a state file, for people: `run 12 of plan "nightly" (pid 4711,
/// alice@backup1, started 18:02:11)`.
fn who(owner: Option<&Owner>) -> String {
    let Some(o) = owner else {
        return "another dpplan process".into();
    };
    let what = match o.runs.last() {
        Some(r) => format!("run {} of plan \"{}\"", r.id, r.plan),
        None => format!("`{}`", o.command),
    };
    let started = o.started.with_timezone(&chrono::Local);
    let today = chrono::Local::now().date_naive() == started.date_naive();
    format!(
        "{what} (pid {}, {}@{}, started {})",
        o.pid,
        o.user,
        o.host,
        started.format(if today {
            "%H:%M:%S"
        } else {
            "%Y-%m-%d %H:%M:%S"
        })
    )
}

/// The default state file moved out of the current directory (`.dpplan/state.redb`): when
/// one is here and `path` is not it, say where the history is now and how to read the old.
pub(super) fn legacy_note(path: &Path) {
    let old = Path::new(".dpplan").join("state.redb");
    if path != old && old.is_file() {
        eprintln!(
            "note: {} here is the state file of an older dpplan (the default is now {}); \
             --state {} uses it",
            old.display(),
            path.display(),
            old.display()
        );
    }
}

/// Pretty JSON and a newline on stdout.
pub(crate) fn json_out<T: Serialize>(value: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(value).map_err(|e| CliError::internal(e.to_string()))?;
    out(&format!("{s}\n"))
}

/// `dpplan runs`.
pub fn runs(args: RunsArgs) -> Result<u8, CliError> {
    let store = open_state(&args.state)?;
    let runs = store.runs(args.plan.as_deref(), args.limit)?;
    if args.json {
        let views: Vec<RunView> = runs.iter().map(RunView::new).collect();
        json_out(&views)?;
    } else if runs.is_empty() {
        eprintln!("no runs");
    } else {
        out(&report::runs_table(
            &runs,
            Stream::Stdout.look(args.utc.zone()),
        ))?;
    }
    Ok(EXIT_OK)
}

/// `dpplan show`.
pub fn show(args: ShowArgs) -> Result<u8, CliError> {
    let store = open_state(&args.state)?;
    let detail = store.run(args.run)?;
    let look = Stream::Stdout.look(args.utc.zone());
    if let Some(n) = args.task {
        let page = TaskPage::new(&detail, n)
            .ok_or_else(|| CliError::usage(format!("run {} has no task {n}", args.run)))?;
        if args.json {
            json_out(&page)?;
        } else {
            out(&page.render(&detail, look))?;
        }
    } else if let Some(n) = args.activity {
        let page = ActivityPage::new(&detail, n)
            .ok_or_else(|| CliError::usage(format!("run {} has no activity {n}", args.run)))?;
        if args.json {
            json_out(&page)?;
        } else {
            out(&page.render(look))?;
        }
    } else if args.json {
        json_out(&RunPage::new(&detail))?;
    } else {
        out(&report::run_page(&detail, look))?;
    }
    Ok(EXIT_OK)
}

/// `dpplan log`.
pub fn log(args: LogArgs) -> Result<u8, CliError> {
    let store = open_state(&args.state)?;
    let detail = store.run(args.run)?;
    let (lines, views) = report::run_log(&store, &detail, args.task).map_err(|e| match e {
        report::LogError::NoTask(n) => CliError::usage(format!("run {} has no task {n}", args.run)),
        report::LogError::Store(e) => e.into(),
    })?;
    if args.json {
        json_out(&views)?;
    } else if lines.is_empty() {
        eprintln!("no log lines");
    } else {
        out(&report::log_text(&lines, &views, args.utc.zone()))?;
    }
    Ok(EXIT_OK)
}

/// `dpplan completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Result<u8, CliError> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "dpplan", &mut buf);
    out(&String::from_utf8_lossy(&buf))?;
    Ok(EXIT_OK)
}
