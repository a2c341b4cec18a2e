//! Runs a plan: pre-validation, task expansion against the live fleet, the step DAG, and its
//! execution with recovery policies, scripts, windows and the store (docs/architecture.md).
//!
//! The engine reaches appliances through [`Connector`] and [`crate::appliance::Appliance`],
//! the journal through [`crate::store::Journal`], and time through [`clock::Clock`]: tests
//! swap in doubles for all three. Every step transition is written to the journal before and
//! after its side effect. It never prints: progress goes to the journal's activity log and an
//! optional [`Observer`].

mod actions;
pub mod clock;
mod connect;
mod execute;
pub mod failpoint;
mod options;
mod start;
mod stored;
/// The backup store's layout, re-exported where the engine's modules name it.
pub(crate) use crate::backups as output;
pub mod fsinfo;
mod gate;
pub use gate::DeviceLocks;
pub mod scripts;
mod task;
pub mod window;

use connect::*;
pub use connect::{read_secret, unresolved_config, Connector, SomaConnector, DEFAULT_USER};
pub use execute::run_status;
use execute::*;
pub use options::{Live, Retry, RunOptions, StoredOptions};
use stored::*;
pub use stored::{retry_plan, stored_store_root, RetryPlan};

use crate::appliance::{Appliance, ConnectionConfig, SomaClient};
use crate::check::{Device, Plan, Program, Secret};
use crate::compile::{self, DeviceFacts, PlanGraph, Task, TaskStep};
use crate::store::{
    ActivityRecord, Journal, NewRun, Record, RunId, RunStatus, StoreError, TaskRecord, TaskStatus,
};
use chrono::{DateTime, Utc};
use clock::Clock;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The most requests an availability probe makes: three firmware status classes, newest
/// first, and DomainStatus (asked beside them).
const PROBE_REQUESTS: u32 = 4;

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

/// What one task came to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TaskReport {
    /// Task id.
    pub id: u32,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The device.
    pub device: String,
    /// The domain, or `all-domains`.
    pub domain: String,
    /// Final status.
    pub status: TaskStatus,
    /// The error or skip reason.
    pub error: Option<String>,
    /// Files written, relative to the store.
    pub files: Vec<String>,
}

/// What a run came to.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunReport {
    /// The run's id.
    pub run: RunId,
    /// Its final status.
    pub status: RunStatus,
    /// The run's error, if any.
    pub error: Option<String>,
    /// Every task.
    pub tasks: Vec<TaskReport>,
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

fn journal_failed_text(
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
    journal: Arc<dyn Journal>,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    options: RunOptions,
    observer: Option<Arc<dyn Observer>>,
    live: Arc<Live>,
    device_locks: Option<Arc<DeviceLocks>>,
}

/// One engine: a program, a plan in it, and the outside world.
pub struct Engine {
    base: EngineBuilder,
    program: Arc<Program>,
    plan: String,
}

/// What a run's context is made of once its tasks exist (created, or read back).
struct Prepared {
    run: RunId,
    program: Arc<Program>,
    plan: Plan,
    tasks: Vec<Task>,
    graph: PlanGraph,
    started: DateTime<Utc>,
    appliances: HashMap<String, Arc<dyn Appliance>>,
    prior: HashMap<u32, crate::store::TaskState>,
    resumed: bool,
}

impl EngineBuilder {
    /// The options of the run (for a resume: merged with those stored with the run).
    pub fn options(mut self, options: RunOptions) -> EngineBuilder {
        self.options = options;
        self
    }

    /// Sends progress to `observer`.
    pub fn observe(mut self, observer: Arc<dyn Observer>) -> EngineBuilder {
        self.observer = Some(observer);
        self
    }

    /// Shares `live` (the interrupt flag, what is held) with the driving process.
    pub fn live(mut self, live: Arc<Live>) -> EngineBuilder {
        self.live = live;
        self
    }

    /// Shares device locks with the other runs of the process: no device is worked on by two
    /// runs at once.
    pub fn device_locks(mut self, locks: Arc<DeviceLocks>) -> EngineBuilder {
        self.device_locks = Some(locks);
        self
    }

    /// An engine for plan `plan` of `program`: a new run.
    pub fn plan(self, program: Arc<Program>, plan: impl Into<String>) -> Engine {
        Engine {
            base: self,
            program,
            plan: plan.into(),
        }
    }

    /// Continues run `run` from its journal: finished steps are not run again, a step with an
    /// intent and no result is redone idempotently, owed `always` steps run (docs/checkpoint-format.md).
    pub async fn resume(
        mut self,
        history: &(dyn crate::store::History + Sync),
        run: RunId,
    ) -> Result<RunReport, EngineError> {
        // The stored run is parsed on a second thread while the journal is folded on this one.
        let text = history.stored_run(run)?;
        let (detail, parsed) = std::thread::scope(|scope| {
            let parsing = scope.spawn(|| read_stored_run(&text));
            let detail = history.run(run);
            let parsed = parsing
                .join()
                .unwrap_or_else(|_| Err("reading the stored run failed".into()));
            (detail, parsed)
        });
        let detail = detail?;
        self.live.run.store(run, Ordering::SeqCst);
        if detail.summary.status.is_final() {
            return Err(EngineError::NotResumable {
                run,
                why: format!("it ended {}", detail.summary.status.as_str()),
            });
        }
        let (stored, graph) = parsed.map_err(|e| EngineError::NotResumable {
            run,
            why: format!("its stored graph cannot be read: {e}"),
        })?;
        // The run continues under the options it was started with (a manual
        // `--ignore-window` run is never cancelled for the window on resume).
        self.options.ignore_window |= stored.options.ignore_window;
        let resumed_by = match self.options.origin.take() {
            Some(o) => format!("resumed by {o}"),
            None => "resumed".to_string(),
        };
        let window_note = (self.options.ignore_window && stored.options.ignore_window)
            .then(|| "the maintenance window is ignored, as when the run started".to_string());
        let program = Arc::new(stored.program);
        let plan = program
            .plan(&stored.plan)
            .ok_or_else(|| EngineError::NoPlan(stored.plan.clone()))?
            .clone();
        // Secrets and files first: a resume that cannot reach the appliances leaves the run
        // as it is (its tasks would otherwise fail for want of a connection).
        // Only the devices with work left (their secrets may be needed again).
        let unfinished: std::collections::HashSet<&str> = stored
            .tasks
            .iter()
            .filter(|t| t.runs())
            .filter(|t| {
                !detail
                    .tasks
                    .iter()
                    .any(|p| p.task.id == t.id && p.status.is_final())
            })
            .map(|t| t.device.as_str())
            .collect();
        let missing = unresolved_config(&program, &plan, |d| unfinished.contains(d));
        if !missing.is_empty() {
            return Err(EngineError::NotResumable {
                run,
                why: format!("{} (the run is left as it is)", missing.join("; ")),
            });
        }
        let mut prior = HashMap::new();
        for t in &detail.tasks {
            prior.insert(t.task.id, t.clone());
        }
        // Connect to the devices of tasks that still have work.
        let mut appliances = HashMap::new();
        for t in &stored.tasks {
            let finished = prior.get(&t.id).is_some_and(|p| p.status.is_final());
            if finished || !t.runs() || appliances.contains_key(&t.device) {
                continue;
            }
            if let Some(d) = program.device(&t.device) {
                if let Ok(a) = self.connector.connect(d) {
                    appliances.insert(t.device.clone(), a);
                }
            }
        }
        let ctx = self.context(Prepared {
            run,
            program,
            plan,
            tasks: stored.tasks,
            graph,
            started: detail.summary.started,
            appliances,
            prior,
            resumed: true,
        });
        ctx.log(None, None, resumed_by).await?;
        if let Some(note) = window_note {
            ctx.log(None, None, note).await?;
        }
        failpoint::hit("resume");
        execute(ctx).await
    }

    /// The one way a run's context is made, for a new run and a resumed one alike.
    fn context(&self, p: Prepared) -> Arc<RunCtx> {
        let done = done_flags(&p.graph);
        let secret_vars = secret_vars(&p.program);
        self.live.run.store(p.run, Ordering::SeqCst);
        Arc::new(RunCtx {
            run: p.run,
            program: p.program,
            plan: p.plan,
            tasks: p.tasks,
            graph: p.graph,
            journal: self.journal.clone(),
            clock: self.clock.clone(),
            options: self.options.clone(),
            started: p.started,
            appliances: p.appliances,
            observer: self.observer.clone(),
            halted: AtomicBool::new(false),
            interrupted: self.live.interrupted.clone(),
            live: self.live.clone(),
            secret_vars,
            done,
            prior: p.prior,
            resumed: p.resumed,
            device_locks: self.device_locks.clone(),
            sleeper: tokio::sync::Mutex::new(()),
        })
    }
}

impl Engine {
    /// Starts building an engine on a journal, a way to reach appliances, and a clock.
    pub fn builder(
        journal: Arc<dyn Journal>,
        connector: Arc<dyn Connector>,
        clock: Arc<dyn Clock>,
    ) -> EngineBuilder {
        EngineBuilder {
            journal,
            connector,
            clock,
            options: RunOptions::default(),
            observer: None,
            live: Arc::new(Live::default()),
            device_locks: None,
        }
    }

    /// An engine for plan `plan` of `program` (shorthand for [`Engine::builder`]).
    pub fn new(
        program: Arc<Program>,
        plan: impl Into<String>,
        journal: Arc<dyn Journal>,
        connector: Arc<dyn Connector>,
        clock: Arc<dyn Clock>,
        options: RunOptions,
    ) -> Engine {
        Engine::builder(journal, connector, clock)
            .options(options)
            .plan(program, plan)
    }

    /// Sends progress to `observer`.
    pub fn observe(mut self, observer: Arc<dyn Observer>) -> Engine {
        self.base.observer = Some(observer);
        self
    }

    /// A flag that, once set, stops new steps from starting (a graceful interrupt).
    pub fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.base.live.interrupted.clone()
    }

    /// The run's live state (its id, what it holds quiesced), for the driving process.
    pub fn live(&self) -> Arc<Live> {
        self.base.live.clone()
    }

    /// Probes the fleet, expands the plan into tasks and compiles the graph, changing nothing
    /// on any appliance (`dpplan plan`).
    pub async fn expand(&self) -> Result<(Vec<Task>, PlanGraph), EngineError> {
        let plan = self
            .program
            .plan(&self.plan)
            .ok_or_else(|| EngineError::NoPlan(self.plan.clone()))?;
        let (facts, _) = self.probe(plan).await;
        let tasks = compile::expand(&self.program, plan, &facts);
        let graph = compile::graph(plan, &tasks);
        Ok((tasks, graph))
    }

    /// Runs the plan (docs/architecture.md) and returns what became of it. `plan_text` is stored
    /// with the run, so the run can be resumed without the plan file.
    pub async fn run(&self, plan_text: &str) -> Result<RunReport, EngineError> {
        let plan = self
            .program
            .plan(&self.plan)
            .ok_or_else(|| EngineError::NoPlan(self.plan.clone()))?
            .clone();
        let started = self.base.clock.now();
        let plan_hash = hex::encode(Sha256::digest(plan_text.as_bytes()));
        let new_run = |tasks: Vec<TaskRecord>, graph: String| NewRun {
            plan: plan.name.clone(),
            started,
            plan_text: plan_text.to_string(),
            plan_hash: plan_hash.clone(),
            graph,
            activities: activity_records(&self.program, &plan),
            tasks,
        };
        // 1-4: pre-validation; then every secret and file the run needs, before any
        // appliance is touched.
        let early = self.prevalidate(&plan, started).or_else(|| {
            let missing =
                unresolved_config(&self.program, &plan, |d| self.base.options.includes(d));
            (!missing.is_empty()).then(|| (RunStatus::InvalidConfig, missing.join("; ")))
        });
        if let Some((status, error)) = early {
            let run = self
                .base
                .journal
                .create_run(new_run(Vec::new(), String::new()))
                .await?;
            let mut records = self.origin_log();
            records.push(Record::Run {
                status,
                error: Some(error.clone()),
                at: self.base.clock.now(),
            });
            self.base.journal.append(run, records).await?;
            return Ok(RunReport {
                run,
                status,
                error: Some(error),
                tasks: Vec::new(),
            });
        }
        // 5: tasks.
        let (facts, appliances) = self.probe(&plan).await;
        let tasks = self.narrow(compile::expand(&self.program, &plan, &facts));
        let graph = compile::graph(&plan, &tasks);
        let records = tasks.iter().map(task_record).collect();
        let stored = StoredRunOut::new(
            &self.program,
            &plan.name,
            &tasks,
            &graph,
            self.base.options.stored(),
        );
        let stored = serde_json::to_string(&stored).map_err(|e| StoreError::Db(e.to_string()))?;
        let run = self
            .base
            .journal
            .create_run(new_run(records, stored))
            .await?;
        self.base.live.run.store(run, Ordering::SeqCst);
        let mut records = self.origin_log();
        for t in &tasks {
            let why = t.skipped.as_ref().map(|r| ("skipped", r));
            if let Some((what, reason)) = why.or(t.failed.as_ref().map(|r| ("failed", r))) {
                records.push(Record::Log {
                    task: Some(t.id),
                    step: None,
                    at: self.base.clock.now(),
                    message: format!("{what}: {reason}"),
                });
            }
        }
        if !records.is_empty() {
            self.base.journal.append(run, records).await?;
        }
        let ctx = self.base.context(Prepared {
            run,
            program: self.program.clone(),
            plan,
            tasks,
            graph,
            started,
            appliances,
            prior: HashMap::new(),
            resumed: false,
        });
        execute(ctx).await
    }
}

/// One "finished" flag per node of the graph.
fn done_flags(graph: &PlanGraph) -> HashMap<String, tokio::sync::watch::Sender<bool>> {
    graph
        .dag
        .node_weights()
        .map(|n| (n.id.clone(), tokio::sync::watch::channel(false).0))
        .collect()
}

fn activity_records(program: &Program, plan: &Plan) -> Vec<ActivityRecord> {
    plan.activities
        .iter()
        .enumerate()
        .map(|(i, a)| ActivityRecord {
            id: i as u32 + 1,
            kind: a.kind.clone(),
            label: a.label.clone(),
            action: program
                .kinds
                .get(&a.kind)
                .map(|k| k.action.clone())
                .unwrap_or_default(),
            device_pattern: a.devices.join(", "),
            domain_pattern: match &a.domains {
                None => "all-domains".into(),
                Some(crate::check::DomainSel::All) => "all".into(),
                Some(crate::check::DomainSel::Patterns(p)) => p.join(", "),
            },
        })
        .collect()
}

fn task_record(t: &Task) -> TaskRecord {
    TaskRecord {
        id: t.id,
        activity: t.activity,
        action: t.action.clone(),
        device: t.device.clone(),
        domain: t.target.domain_label().to_string(),
        status: if t.skipped.is_some() {
            TaskStatus::Skipped
        } else if t.failed.is_some() {
            TaskStatus::Failed
        } else {
            TaskStatus::Pending
        },
        reason: t.skipped.clone().or_else(|| t.failed.clone()),
    }
}

#[cfg(test)]
mod tests;
