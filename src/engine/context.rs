//! The engine's shared vocabulary, below every room: a run's context ([`RunCtx`]), the
//! engine and its builder (their fields; the methods live in the rooms: `mod.rs` builds and
//! runs, `start.rs` pre-validates and probes), what observers see, and the engine's errors.
//! Rooms import from here and from each other one way (execute → task → actions); nothing
//! here imports a room.

pub(super) use super::clock::Clock;
pub(super) use super::gate::DeviceLocks;
pub(super) use super::options::{Live, RunOptions};
pub(super) use super::{failpoint, window};
pub(super) use crate::appliance::{Appliance, Firmware};
pub(super) use crate::backups as output;
pub(super) use crate::check::{Device, Plan, Program, Secret};
pub(super) use crate::compile::{self, DeviceFacts, PlanGraph, Task, TaskStep};
pub(super) use crate::report::{RunReport, TaskReport};
pub(super) use crate::store::{
    ActivityRecord, FileRecord, Journal, NewRun, Record, RunId, RunStatus, StoreError, TaskRecord,
    TaskStatus,
};
pub(super) use chrono::{DateTime, Utc};
pub(super) use serde::Serialize;
pub(super) use std::collections::{BTreeMap, HashMap};
pub(super) use std::path::PathBuf;
pub(super) use std::sync::atomic::{AtomicBool, Ordering};
pub(super) use std::sync::Arc;
pub(super) use std::time::Duration;

/// Makes an [`Appliance`] for a device of the inventory (the SOMA client for real runs:
/// `crate::soma`).
pub trait Connector: Send + Sync {
    /// A client for `device`; the error says why none can be made (missing secret...).
    fn connect(&self, device: &Device) -> Result<Arc<dyn Appliance>, String>;
}

/// The most requests an availability probe makes: three firmware status classes, newest
/// first, and DomainStatus (asked beside them).
pub(super) const PROBE_REQUESTS: u32 = 4;

/// What an [`Observer`] learns when a run's tasks exist.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    /// The run's id.
    pub run: RunId,
    /// When the run started (its files' timestamp, see [`output::timestamp`]).
    pub started: DateTime<Utc>,
    /// The store root, if the program declares a store.
    pub store: Option<&'a std::path::Path>,
    /// Every task of the run, skipped ones included.
    pub tasks: &'a [Task],
    /// Whether this is a resumed run.
    pub resumed: bool,
}

/// Receives progress as it happens (the CLI draws it); every call must be quick.
pub trait Observer: Send + Sync {
    /// The run's tasks exist (created, or loaded by a resume); called once, before any
    /// task starts.
    fn run(&self, _run: &RunStart<'_>) {}
    /// A task changed status.
    fn task(&self, _task: &Task, _status: TaskStatus) {}
    /// A step of a task started.
    fn step(&self, _task: &Task, _step: &str) {}
}

/// Errors that stop the engine itself (as opposed to a task or run failing).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The plan is not in the program.
    #[error("no plan named `{0}`")]
    NoPlan(String),
    /// The journal failed: nothing more can be recorded, so nothing more is done.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The journal failed during the run (a full disk under the state file): the run
    /// stopped, after releasing what it held; `resume` finishes it once the file can be
    /// written again.
    #[error("{}", journal_failed_text(*run, error, released, still_held))]
    JournalFailed {
        /// The run.
        run: RunId,
        /// What the state file reported.
        error: StoreError,
        /// What was released after it (`DEVICE` or `DEVICE/DOMAIN`).
        released: Vec<String>,
        /// What may still be quiesced: its unquiesce failed or was not confirmed.
        still_held: Vec<String>,
    },
    /// The run cannot be resumed (already finished, or stored by an incompatible version).
    #[error("run {run} cannot be resumed: {why}")]
    NotResumable {
        /// The run.
        run: RunId,
        /// Why.
        why: String,
    },
}

pub(super) fn journal_failed_text(
    run: RunId,
    error: &StoreError,
    released: &[String],
    still_held: &[String],
) -> String {
    let released = if released.is_empty() {
        String::new()
    } else {
        format!(" after releasing {}", released.join(", "))
    };
    let still = if still_held.is_empty() {
        String::new()
    } else {
        format!(
            "; still quiesced (or quiescing): {}, which the resume releases",
            still_held.join(", ")
        )
    };
    format!(
        "{error}: run {run} cannot record anything more and stopped{released}{still}; `dpplan resume {run}` finishes it once the state file can be written again"
    )
}

/// The run-wide state shared by the task runners.
pub(crate) struct RunCtx {
    pub run: RunId,
    pub program: Arc<Program>,
    pub plan: Plan,
    pub tasks: Vec<Task>,
    pub graph: PlanGraph,
    pub journal: Arc<dyn Journal>,
    pub clock: Arc<dyn Clock>,
    pub options: RunOptions,
    pub started: DateTime<Utc>,
    pub appliances: HashMap<String, Arc<dyn Appliance>>,
    pub observer: Option<Arc<dyn Observer>>,
    /// Set by `halt`: tasks not started are CANCELLED.
    pub halted: AtomicBool,
    /// Set by an interrupt: no new step starts.
    pub interrupted: Arc<AtomicBool>,
    /// The run's live state, shared with the process driving it.
    pub live: Arc<Live>,
    /// Environment variables that hold credentials, kept from scripts.
    pub secret_vars: Vec<String>,
    /// One "finished" flag per graph node, by node id.
    pub done: HashMap<String, tokio::sync::watch::Sender<bool>>,
    /// For a resumed run: what the journal says each task did before.
    pub prior: HashMap<u32, crate::store::TaskState>,
    /// Whether this is a resumed run (scripts get `DPPLAN_RESUMED=1`).
    pub resumed: bool,
    /// Locks shared with other runs of the process, if any (`dpplan serve`).
    pub device_locks: Option<Arc<DeviceLocks>>,
    /// Taken once the window closes under `on_window_close = sleep`: one task records the
    /// run SLEEPING and waits for the next opening, the others wait behind it.
    pub sleeper: tokio::sync::Mutex<()>,
}

impl RunCtx {
    /// Appends records to the run's journal (durable on return).
    pub async fn record(&self, records: Vec<Record>) -> Result<(), StoreError> {
        self.journal.append(self.run, records).await
    }

    /// A line of the activity log.
    pub async fn log(
        &self,
        task: Option<u32>,
        step: Option<&str>,
        message: String,
    ) -> Result<(), StoreError> {
        self.record(vec![Record::Log {
            task,
            step: step.map(str::to_string),
            at: self.clock.now(),
            message,
        }])
        .await
    }

    /// Marks a graph node finished.
    pub fn finish(&self, id: &str) {
        if let Some(tx) = self.done.get(id) {
            tx.send_replace(true);
        }
    }

    /// Waits until every predecessor of node `id` has finished.
    pub async fn wait_preds(&self, id: &str) {
        for p in self.graph.preds(id) {
            if let Some(tx) = self.done.get(p) {
                let mut rx = tx.subscribe();
                let _ = rx.wait_for(|d| *d).await;
            }
        }
    }

    /// Whether the window is open now (or ignored).
    pub fn window_open(&self) -> bool {
        self.options.ignore_window
            || self
                .plan
                .window
                .as_ref()
                .is_none_or(|w| window::is_open(w, self.clock.now()))
    }
}

/// What every run and resume shares: the journal, the appliances, time, the options, who
/// watches, and the live state. Built with [`Engine::builder`]; then [`EngineBuilder::plan`]
/// gives an engine for a new run, [`EngineBuilder::resume`] continues a stored one.
pub struct EngineBuilder {
    pub(super) journal: Arc<dyn Journal>,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) options: RunOptions,
    pub(super) observer: Option<Arc<dyn Observer>>,
    pub(super) live: Arc<Live>,
    pub(super) device_locks: Option<Arc<DeviceLocks>>,
}

/// One engine: a program, a plan in it, and the outside world.
pub struct Engine {
    pub(super) base: EngineBuilder,
    pub(super) program: Arc<Program>,
    pub(super) plan: String,
}

/// What a run's context is made of once its tasks exist (created, or read back).
pub(super) struct Prepared {
    pub(super) run: RunId,
    pub(super) program: Arc<Program>,
    pub(super) plan: Plan,
    pub(super) tasks: Vec<Task>,
    pub(super) graph: PlanGraph,
    pub(super) started: DateTime<Utc>,
    pub(super) appliances: HashMap<String, Arc<dyn Appliance>>,
    pub(super) prior: HashMap<u32, crate::store::TaskState>,
    pub(super) resumed: bool,
}

/// What one task has learned and done so far, in this process (the journal's view of a task
/// is [`crate::store::TaskState`]).
#[derive(Debug, Default)]
pub(crate) struct TaskProgress {
    /// Whether the domain had unsaved changes (validate of an export).
    pub save_needed: bool,
    /// This task's quiesce was accepted: an unquiesce is owed.
    pub quiesced: bool,
    /// The appliance's firmware facts.
    pub firmware: Option<Firmware>,
    /// The backup a restore reads, chosen by `validate`.
    pub source: Option<PathBuf>,
    /// Files written into the store: (absolute path, record).
    pub files: Vec<(PathBuf, FileRecord)>,
    /// Manifests written (absolute paths).
    pub manifests: Vec<PathBuf>,
    /// Some step failed (under any policy).
    pub failed_any: bool,
    /// A step failed under `continue`.
    pub warned: bool,
    /// A step failed under `stop`, `halt` or `rollback`: only `always` steps run now.
    pub stopped: bool,
    /// The task was rolled back.
    pub rolled_back: bool,
    /// The first error.
    pub error: Option<String>,
    /// Records not yet written: they go with the task's next intent (or its final status),
    /// in one commit. Results and facts may wait; an intent never does.
    pub pending: Vec<Record>,
}
