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
pub mod failpoint;
/// The backup store's layout, re-exported where the engine's modules name it.
pub(crate) use crate::backups as output;
pub mod fsinfo;
mod gate;
pub mod scripts;
mod task;
pub mod window;

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

/// Makes an [`Appliance`] for a device of the inventory.
pub trait Connector: Send + Sync {
    /// A client for `device`; the error says why none can be made (missing secret...).
    fn connect(&self, device: &Device) -> Result<Arc<dyn Appliance>, String>;
}

/// The real connector: the SOMA client, with the secret read from the environment or a file.
#[derive(Debug, Default, Clone, Copy)]
pub struct SomaConnector;

/// The user of a device whose inventory entry names none.
pub const DEFAULT_USER: &str = "admin";

/// Reads a secret.
pub fn read_secret(secret: &Secret) -> Result<String, String> {
    match secret {
        Secret::Env(v) => {
            std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
        }
        Secret::File(p) => std::fs::read_to_string(p)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read password file {}: {e}", p.display())),
    }
}

impl Connector for SomaConnector {
    fn connect(&self, d: &Device) -> Result<Arc<dyn Appliance>, String> {
        let password = match &d.password {
            Some(s) => read_secret(s)?,
            None => String::new(),
        };
        let mut c = ConnectionConfig::new(
            d.name.clone(),
            d.host.clone(),
            d.port,
            d.user.clone().unwrap_or_else(|| DEFAULT_USER.to_string()),
            password,
        );
        c.tls = d.tls;
        c.tls_ca = d.tls_ca.clone();
        c.insecure = d.insecure;
        c.request_timeout = Duration::from_millis(d.timeout_ms);
        // During a download, each wait for more data is held to the same `timeout`.
        c.read_timeout = Duration::from_millis(d.timeout_ms);
        c.download_timeout = Duration::from_millis(d.download_timeout_ms);
        c.max_download_bytes = d.max_export_bytes;
        let client = SomaClient::new(c).map_err(|e| e.to_string())?;
        Ok(Arc::new(client))
    }
}

/// The most requests an availability probe makes: three firmware status classes, newest
/// first, then DomainStatus.
const PROBE_REQUESTS: u32 = 4;

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run outside the plan's window (manual runs).
    pub ignore_window: bool,
    /// The least time the availability probe of each device may take; it is given four
    /// times the device's `timeout` when that is longer.
    pub probe_timeout: Duration,
    /// How often quiesce state and secure-backup completion are polled.
    pub poll_interval: Duration,
    /// Timeout of scripts that set none.
    pub script_timeout: Duration,
    /// How long a secure backup may take to appear on the appliance.
    pub backup_timeout: Duration,
    /// Only the tasks of devices matching one of these patterns (`run --devices`); every
    /// device when empty.
    pub devices: Vec<String>,
    /// Only the tasks a retry chose (`dpplan retry`).
    pub retry: Option<Retry>,
    /// Who started the run and how (user, host, command, plan file and its SHA-256): the
    /// first line of its activity log.
    pub origin: Option<String>,
    /// Warnings about the run's safety (certificate checks off, plain HTTP), recorded in its
    /// log after the origin.
    pub warnings: Vec<String>,
}

/// The tasks of an earlier run that `dpplan retry` runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Retry {
    /// The run retried.
    pub of: RunId,
    /// Its tasks to run again, by activity, device and target. A task that was SKIPPED
    /// names no target: whatever its device's domains expand to now is retried.
    pub tasks: Vec<(u32, String, Option<compile::Target>)>,
}

impl Retry {
    /// Whether task `t` of the new expansion is one the retry chose.
    fn wants(&self, t: &Task) -> bool {
        self.tasks.iter().any(|(a, d, target)| {
            *a == t.activity && *d == t.device && target.as_ref().is_none_or(|x| *x == t.target)
        })
    }
}

/// The options stored with a run, which `resume` continues under (docs/checkpoint-format.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredOptions {
    /// Started with `--ignore-window`: resuming never cancels its tasks for the window.
    #[serde(default)]
    pub ignore_window: bool,
    /// `--devices` patterns it was narrowed to.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The run it retries.
    #[serde(default)]
    pub retry_of: Option<RunId>,
    /// Who started it and how.
    #[serde(default)]
    pub origin: Option<String>,
}

impl RunOptions {
    fn stored(&self) -> StoredOptions {
        StoredOptions {
            ignore_window: self.ignore_window,
            devices: self.devices.clone(),
            retry_of: self.retry.as_ref().map(|r| r.of),
            origin: self.origin.clone(),
        }
    }

    /// Whether device `name` is in the run's scope (`--devices`, `retry`).
    fn includes(&self, name: &str) -> bool {
        (self.devices.is_empty()
            || self
                .devices
                .iter()
                .any(|p| crate::check::patterns::matches(p, name)))
            && self
                .retry
                .as_ref()
                .is_none_or(|r| r.tasks.iter().any(|(_, d, _)| d == name))
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            warnings: Vec::new(),
            devices: Vec::new(),
            retry: None,
            origin: None,
            ignore_window: false,
            probe_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            script_timeout: Duration::from_secs(3600),
            backup_timeout: Duration::from_secs(3600),
        }
    }
}

/// What a run is doing right now, for the process that drives it: the interrupt flag, the
/// run's id, and what it holds quiesced (for the message of a forced exit).
#[derive(Debug, Default)]
pub struct Live {
    /// Once set, no new step starts (a graceful interrupt).
    pub interrupted: Arc<AtomicBool>,
    run: std::sync::atomic::AtomicU64,
    /// What the run holds quiesced: a device, or a device's domain.
    quiesced: std::sync::Mutex<std::collections::BTreeSet<(String, Option<String>)>>,
    /// The process groups of the scripts running now.
    pub(crate) scripts: std::sync::Mutex<std::collections::BTreeSet<u32>>,
}

impl Live {
    /// The run's id, once it exists.
    pub fn run(&self) -> Option<RunId> {
        match self.run.load(Ordering::SeqCst) {
            0 => None,
            r => Some(r),
        }
    }

    /// What the run has quiesced (or asked to quiesce) and not yet seen released, as
    /// `DEVICE` or `DEVICE/DOMAIN`.
    pub fn quiesced(&self) -> Vec<String> {
        self.held()
            .into_iter()
            .map(|(d, dom)| match dom {
                Some(dom) => format!("{d}/{dom}"),
                None => d,
            })
            .collect()
    }

    /// What the run holds quiesced, as (device, domain).
    pub(crate) fn held(&self) -> Vec<(String, Option<String>)> {
        self.quiesced
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Kills the scripts running now, with everything they started (a forced exit: they
    /// must not run on as orphans). Returns how many there were.
    pub fn kill_scripts(&self) -> usize {
        let n = self.scripts.lock().map(|s| s.len()).unwrap_or(0);
        scripts::kill_all(&self.scripts);
        n
    }

    pub(crate) fn hold(&self, what: (String, Option<String>), held: bool) {
        if let Ok(mut q) = self.quiesced.lock() {
            if held {
                q.insert(what);
            } else {
                q.remove(&what);
            }
        }
    }
}

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

/// Everything `resume` needs, stored with the run: the checked program, the plan, the tasks
/// exactly as compiled, and the step graph. Resume never reads the plan file again.
/// docs/checkpoint-format.md describes it; `version` 2 stores the graph as an object with
/// edges by node index, version 1 stored it as a JSON string with edges by node id.
/// Version 2 also stores each distinct list of steps once (`step_sets`; tasks of one activity
/// share theirs): a task is stored without its steps, and `task_steps[i]` names its set.
#[derive(Debug, Serialize)]
struct StoredRunOut<'a> {
    version: u32,
    program: &'a Program,
    plan: &'a str,
    tasks: Vec<Task>,
    step_sets: Vec<&'a Arc<[TaskStep]>>,
    task_steps: Vec<u32>,
    graph: compile::GraphData<'a>,
    options: StoredOptions,
}

impl<'a> StoredRunOut<'a> {
    fn new(
        program: &'a Program,
        plan: &'a str,
        tasks: &'a [Task],
        graph: &'a PlanGraph,
        options: StoredOptions,
    ) -> Self {
        let mut step_sets: Vec<&'a Arc<[TaskStep]>> = Vec::new();
        let mut task_steps = Vec::with_capacity(tasks.len());
        let mut stripped = Vec::with_capacity(tasks.len());
        for t in tasks {
            let steps = &t.steps;
            // Tasks come activity by activity, sharing their activity's list.
            let found = match task_steps.last() {
                Some(&last) if Arc::ptr_eq(step_sets[last as usize], steps) => Some(last as usize),
                _ => step_sets.iter().position(|s| *s == steps),
            };
            let index = found.unwrap_or_else(|| {
                step_sets.push(steps);
                step_sets.len() - 1
            });
            task_steps.push(u32::try_from(index).unwrap_or(u32::MAX));
            stripped.push(Task {
                steps: Arc::from([]),
                ..t.clone()
            });
        }
        StoredRunOut {
            version: STORED_RUN_VERSION,
            program,
            plan,
            tasks: stripped,
            step_sets,
            task_steps,
            graph: graph.data(),
            options,
        }
    }
}

/// [`StoredRunOut`] as read back, of either version.
#[derive(Debug, serde::Deserialize)]
struct StoredRunIn {
    version: u32,
    program: Program,
    plan: String,
    tasks: Vec<Task>,
    #[serde(default)]
    step_sets: Vec<Arc<[TaskStep]>>,
    #[serde(default)]
    task_steps: Vec<u32>,
    graph: Box<serde_json::value::RawValue>,
    /// Absent in runs stored before options were kept: run as default options.
    #[serde(default)]
    options: StoredOptions,
}

/// The stored run's format written now.
const STORED_RUN_VERSION: u32 = 2;

/// Reads a stored run (version 1 or 2) and rebuilds its graph.
fn read_stored_run(text: &str) -> Result<(StoredRunIn, PlanGraph), String> {
    let mut stored: StoredRunIn = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if stored.version > STORED_RUN_VERSION {
        return Err(format!(
            "stored run format {} is newer than this dpplan reads",
            stored.version
        ));
    }
    if stored.version >= 2 {
        if stored.task_steps.len() != stored.tasks.len() {
            return Err("the tasks and their step lists differ in number".into());
        }
        for (t, &set) in stored.tasks.iter_mut().zip(&stored.task_steps) {
            t.steps = stored.step_sets.get(set as usize).cloned().ok_or_else(|| {
                format!("task {} names step list {set}, which is not stored", t.id)
            })?;
        }
    }
    let graph = match stored.version {
        1 => {
            let inner: String =
                serde_json::from_str(stored.graph.get()).map_err(|e| format!("graph: {e}"))?;
            PlanGraph::from_json(&inner)?
        }
        2 => PlanGraph::from_data(
            serde_json::from_str(stored.graph.get()).map_err(|e| format!("graph: {e}"))?,
        )?,
        v => return Err(format!("stored run format {v} is not one dpplan writes")),
    };
    Ok((stored, graph))
}

/// The store root of a stored run's program (absolute, as the run resolved it), if the run
/// stored one.
pub fn stored_store_root(stored_run: &str) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Only {
        program: Program,
    }
    let only: Only = serde_json::from_str(stored_run).ok()?;
    only.program.store.map(|s| s.path)
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
        history: &dyn crate::store::History,
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

    /// Connects to and probes every device the plan names, in parallel.
    async fn probe(
        &self,
        plan: &Plan,
    ) -> (
        HashMap<String, DeviceFacts>,
        HashMap<String, Arc<dyn Appliance>>,
    ) {
        let mut wanted = compile::devices_to_probe(&self.program, plan);
        wanted.retain(|(name, _)| self.base.options.includes(name));
        let mut set = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        for (name, needs_domains) in wanted {
            let Some(device) = self.program.device(name).cloned() else {
                continue;
            };
            let connector = self.base.connector.clone();
            // The probe may take up to four requests (three firmware classes, then the
            // domains), each held to the device's own `timeout`: an old appliance that needs
            // all of them is slow, not down.
            let per_request = Duration::from_millis(device.timeout_ms);
            let timeout = self
                .base
                .options
                .probe_timeout
                .max(per_request * PROBE_REQUESTS);
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let app = match connector.connect(&device) {
                    Ok(a) => a,
                    Err(e) => {
                        let why = format!("{e} (inventory entry {})", device.at);
                        return (device.name, DeviceFacts::Unavailable(why), None);
                    }
                };
                let facts = tokio::time::timeout(timeout, async {
                    app.probe().await?;
                    let domains = if needs_domains {
                        app.domains().await?.into_iter().map(|d| d.name).collect()
                    } else {
                        Vec::new()
                    };
                    Ok::<_, crate::appliance::ApplianceError>(domains)
                })
                .await;
                let user = device.user.as_deref().unwrap_or(DEFAULT_USER);
                match facts {
                    Ok(Ok(domains)) => (device.name, DeviceFacts::Available { domains }, Some(app)),
                    Ok(Err(crate::appliance::ApplianceError::Auth { .. })) => {
                        let why = format!(
                            "authentication failed for user {user} on {} (inventory entry {})",
                            device.name, device.at
                        );
                        (device.name, DeviceFacts::Refused(why), None)
                    }
                    Ok(Err(e)) => {
                        let why = format!("{e} (inventory entry {})", device.at);
                        (device.name, DeviceFacts::Unavailable(why), None)
                    }
                    Err(_) => {
                        let why = format!(
                            "{}: the availability probe (firmware, then domains) did not finish within {}s: {PROBE_REQUESTS} requests of at most {}s each, the device's `timeout` (inventory entry {})",
                            device.name,
                            timeout.as_secs(),
                            per_request.as_secs(),
                            device.at
                        );
                        (device.name, DeviceFacts::Unavailable(why), None)
                    }
                }
            });
        }
        let mut facts = HashMap::new();
        let mut apps = HashMap::new();
        while let Some(r) = set.join_next().await {
            if let Ok((name, f, app)) = r {
                if let Some(a) = app {
                    apps.insert(name.clone(), a);
                }
                facts.insert(name, f);
            }
        }
        (facts, apps)
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

    /// The first lines of a run's log: who started it and how, and what it retries.
    fn origin_log(&self) -> Vec<Record> {
        let mut lines = Vec::new();
        if let Some(o) = &self.base.options.origin {
            lines.push(format!("started by {o}"));
        }
        lines.extend(self.base.options.warnings.iter().cloned());
        if self.base.options.ignore_window {
            lines.push("the maintenance window is ignored (--ignore-window)".to_string());
        }
        if !self.base.options.devices.is_empty() {
            lines.push(format!(
                "narrowed to devices {}",
                self.base.options.devices.join(", ")
            ));
        }
        if let Some(r) = &self.base.options.retry {
            lines.push(format!("retries {} task(s) of run {}", r.tasks.len(), r.of));
        }
        let at = self.base.clock.now();
        lines
            .into_iter()
            .map(|message| Record::Log {
                task: None,
                step: None,
                at,
                message,
            })
            .collect()
    }

    /// The tasks in the run's scope (`--devices`, `retry`), renumbered from 1 in creation
    /// order; all of them when the run is not narrowed.
    fn narrow(&self, tasks: Vec<Task>) -> Vec<Task> {
        if self.base.options.devices.is_empty() && self.base.options.retry.is_none() {
            return tasks;
        }
        let mut kept: Vec<Task> = tasks
            .into_iter()
            .filter(|t| {
                self.program.device(&t.device).is_some()
                    && self.base.options.includes(&t.device)
                    && self.base.options.retry.as_ref().is_none_or(|r| r.wants(t))
            })
            .collect();
        for (i, t) in kept.iter_mut().enumerate() {
            t.id = i as u32 + 1;
        }
        kept
    }

    /// The plan checks before any task (docs/architecture.md); `Some` ends the run before any task.
    fn prevalidate(&self, plan: &Plan, now: DateTime<Utc>) -> Option<(RunStatus, String)> {
        if !self.program.settings.backups_enabled {
            return Some((
                RunStatus::BackupsDisabled,
                "backups are disabled (settings.backups_enabled = false)".into(),
            ));
        }
        if !self.base.options.ignore_window {
            if let Some(w) = &plan.window {
                if !window::is_open(w, now) {
                    return Some((RunStatus::OutsideWindow, window::closed_message(w, now)));
                }
            }
        }
        let store = self.program.store.as_ref()?;
        if !store.path.is_dir() {
            return Some((
                RunStatus::StoreNotMounted,
                format!("the store {} does not exist", store.path.display()),
            ));
        }
        if store.require_remote {
            match fsinfo::mount_of(&store.path) {
                Ok(m) if m.is_remote() => {}
                Ok(m) => {
                    return Some((
                        RunStatus::StoreNotMounted,
                        format!(
                            "the store {} is on a local filesystem ({}, mounted at {}), not a mounted remote one (require_remote = true): mount the share first",
                            store.path.display(),
                            m.fstype,
                            m.mount_point.display()
                        ),
                    ))
                }
                Err(e) => {
                    return Some((
                        RunStatus::StoreNotMounted,
                        format!("cannot inspect the store {}: {e}", store.path.display()),
                    ))
                }
            }
        }
        if let Err(e) = fsinfo::check_space(&store.path, store.min_free) {
            return Some((RunStatus::StoreOutOfSpace, e));
        }
        None
    }
}

/// What a run of `plan` needs and cannot find: unset `env()` variables, unreadable
/// `file()` secrets, missing `tls_ca` files and scripts, each named with where the plan
/// uses it. Empty when everything is there.
pub fn unresolved_config(
    program: &Program,
    plan: &Plan,
    wanted: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut missing = Vec::new();
    for (name, _) in compile::devices_to_probe(program, plan) {
        if !wanted(name) {
            continue;
        }
        let Some(d) = program.device(name) else {
            continue;
        };
        if let Some(secret) = &d.password {
            if let Err(e) = read_secret(secret) {
                missing.push(format!(
                    "{e} (the password of device {}, inventory entry {})",
                    d.name, d.at
                ));
            }
        }
        if let Some(ca) = &d.tls_ca {
            if let Err(e) = std::fs::metadata(ca) {
                missing.push(format!(
                    "cannot read the CA file {}: {e} (tls_ca of device {}, inventory entry {})",
                    ca.display(),
                    d.name,
                    d.at
                ));
            }
        }
    }
    let mut scripts: Vec<(&crate::check::Script, String)> = Vec::new();
    if let Some(s) = &plan.pre_plan {
        scripts.push((s, format!("pre_plan of plan {}", plan.name)));
    }
    if let Some(s) = &plan.post_plan {
        scripts.push((s, format!("post_plan of plan {}", plan.name)));
    }
    for (i, a) in plan.activities.iter().enumerate() {
        for (param, v) in &a.params {
            if let crate::check::Value::Script(s) = v {
                scripts.push((s, format!("`{param}` of activity {}", i + 1)));
            }
        }
    }
    for (s, what) in scripts {
        if let Err(e) = std::fs::metadata(&s.path) {
            missing.push(format!("script {}: {e} ({what})", s.path.display()));
        }
    }
    // Several devices usually share one secret: say each problem once.
    let mut seen = std::collections::HashSet::new();
    missing.retain(|m| seen.insert(m.split(" (").next().unwrap_or(m).to_string()));
    missing
}

/// What `dpplan retry` runs: the stored program of an earlier run, its plan and text, and
/// the tasks to run again.
#[derive(Debug)]
pub struct RetryPlan {
    /// The program as the earlier run stored it (the plan file is not read again).
    pub program: Program,
    /// The plan's name.
    pub plan: String,
    /// The plan text stored with the earlier run.
    pub plan_text: String,
    /// The tasks to run again.
    pub retry: Retry,
}

/// Reads run `run` for `dpplan retry`: the tasks named in `chosen`, or when it is empty
/// every task that did not succeed (FAILED, ROLLED_BACK, CANCELLED, SKIPPED, WARNING).
pub fn retry_plan(
    history: &dyn crate::store::History,
    run: RunId,
    chosen: &[u32],
) -> Result<RetryPlan, EngineError> {
    let detail = history.run(run)?;
    if !detail.summary.status.is_final() {
        return Err(EngineError::NotResumable {
            run,
            why: format!(
                "it is {}, not finished: `dpplan resume {run}` continues it",
                detail.summary.status.as_str()
            ),
        });
    }
    let text = history.stored_run(run)?;
    if text.is_empty() {
        return Err(EngineError::NotResumable {
            run,
            why: format!(
                "it ended {} before it had tasks; start a new run with `dpplan run`",
                detail.summary.status.as_str()
            ),
        });
    }
    let (stored, _) = read_stored_run(&text).map_err(|e| EngineError::NotResumable {
        run,
        why: format!("its stored graph cannot be read: {e}"),
    })?;
    let status: HashMap<u32, TaskStatus> =
        detail.tasks.iter().map(|t| (t.task.id, t.status)).collect();
    for id in chosen {
        if !stored.tasks.iter().any(|t| t.id == *id) {
            return Err(EngineError::NotResumable {
                run,
                why: format!("it has no task {id}"),
            });
        }
    }
    let picked: Vec<&Task> = stored
        .tasks
        .iter()
        .filter(|t| {
            if chosen.is_empty() {
                status
                    .get(&t.id)
                    .is_some_and(|s| !matches!(s, TaskStatus::Succeeded))
            } else {
                chosen.contains(&t.id)
            }
        })
        .collect();
    if picked.is_empty() {
        return Err(EngineError::NotResumable {
            run,
            why: "every task of it succeeded: there is nothing to retry".into(),
        });
    }
    let tasks = picked
        .into_iter()
        .map(|t| {
            // A skipped task's target may be a pattern (or unknown): take whatever its
            // device expands to now.
            let target = t.runs().then(|| t.target.clone());
            (t.activity, t.device.clone(), target)
        })
        .collect();
    Ok(RetryPlan {
        program: stored.program,
        plan: stored.plan,
        plan_text: detail.plan_text,
        retry: Retry { of: run, tasks },
    })
}

/// One "finished" flag per node of the graph.
fn done_flags(graph: &PlanGraph) -> HashMap<String, tokio::sync::watch::Sender<bool>> {
    graph
        .dag
        .node_weights()
        .map(|n| (n.id.clone(), tokio::sync::watch::channel(false).0))
        .collect()
}

/// The environment variables the inventory reads passwords from: kept from scripts.
fn secret_vars(program: &Program) -> Vec<String> {
    program
        .devices
        .iter()
        .filter_map(|d| match &d.password {
            Some(Secret::Env(v)) => Some(v.clone()),
            _ => None,
        })
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

/// A created run: the pre-plan script, the tasks, the post-plan script (docs/architecture.md).
async fn execute(ctx: Arc<RunCtx>) -> Result<RunReport, EngineError> {
    let now = ctx.clock.now();
    if let Some(o) = &ctx.observer {
        let root = store_root(&ctx.program);
        o.run(&RunStart {
            run: ctx.run,
            started: ctx.started,
            store: root.as_deref(),
            tasks: &ctx.tasks,
            resumed: ctx.resumed,
        });
    }
    let mut outcome: HashMap<u32, (TaskStatus, Option<String>, Vec<String>)> = HashMap::new();
    for t in &ctx.tasks {
        if let Some(r) = &t.skipped {
            outcome.insert(t.id, (TaskStatus::Skipped, Some(r.clone()), Vec::new()));
        } else if let Some(r) = &t.failed {
            outcome.insert(t.id, (TaskStatus::Failed, Some(r.clone()), Vec::new()));
        } else if let Some(p) = ctx.prior.get(&t.id).filter(|p| p.status.is_final()) {
            // Finished before the resume: nothing of it runs again.
            let files = p.files.iter().map(|f| f.path.clone()).collect();
            outcome.insert(t.id, (p.status, p.error.clone(), files));
            for s in t.steps.iter() {
                ctx.finish(&t.step_id(&s.name));
            }
        }
    }
    let started_before = ctx.tasks.iter().filter(|t| t.runs()).any(|t| {
        ctx.prior
            .get(&t.id)
            .is_some_and(|p| p.status != TaskStatus::Pending)
    });
    // 6: no task can run: the run stops, no pre-plan script. Every task SKIPPED is STOPPED;
    // tasks whose device refused the credentials make it FAILED.
    if !ctx.tasks.iter().any(Task::runs) {
        let (status, why) = if ctx.tasks.iter().any(|t| t.failed.is_some()) {
            (RunStatus::Failed, "no task could start")
        } else {
            (RunStatus::Stopped, "every task was skipped")
        };
        return finish(&ctx, outcome, status, Some(why.into())).await;
    }
    ctx.record(vec![Record::Run {
        status: RunStatus::Running,
        error: None,
        at: now,
    }])
    .await?;
    ctx.finish("plan.validate");
    // 7: the pre-plan script (once: not again when a resumed run had started its tasks).
    if let Some(script) = ctx.plan.pre_plan.as_ref().filter(|_| !started_before) {
        let env = plan_env(&ctx, "pre_plan", None, None);
        let r = task::run_script(&ctx, script, env, None, None).await;
        if let Err(e) = r {
            for t in ctx.tasks.iter().filter(|t| t.runs()) {
                ctx.record(vec![Record::Task {
                    task: t.id,
                    status: TaskStatus::Cancelled,
                    error: Some("the pre-plan script failed".into()),
                    at: ctx.clock.now(),
                }])
                .await?;
                outcome.insert(
                    t.id,
                    (
                        TaskStatus::Cancelled,
                        Some("the pre-plan script failed".into()),
                        Vec::new(),
                    ),
                );
            }
            // The post-plan script is the plan's `finally`: it runs after a failed pre-plan too.
            post_plan(&ctx, RunStatus::Failed, &outcome).await?;
            return finish(
                &ctx,
                outcome,
                RunStatus::Failed,
                Some(format!("pre-plan script: {e}")),
            )
            .await;
        }
    }
    ctx.finish("plan.pre_plan");
    // 8: tasks, then the post-plan script.
    let limit = gate::Gate::new(ctx.program.settings.max_parallel.max(1) as usize);
    // Tasks that need wait for nothing but the pre-plan script are ready now, all at once:
    // so the first permits go to the first of them, whichever runner is polled first.
    for t in &ctx.tasks {
        let first_preds_plan_only = t.steps.iter().filter(|s| s.after.is_empty()).all(|s| {
            ctx.graph
                .preds(&t.step_id(&s.name))
                .iter()
                .all(|p| p.starts_with("plan."))
        });
        if t.runs() && !outcome.contains_key(&t.id) && first_preds_plan_only {
            limit.ready(t.id);
        }
    }
    // Lockstep barriers finish when everything before them has.
    let mut barriers = tokio::task::JoinSet::new();
    for n in ctx.graph.dag.node_weights() {
        if let compile::NodeKind::Barrier(_) = n.kind {
            let ctx = ctx.clone();
            let id = n.id.clone();
            barriers.spawn(async move {
                ctx.wait_preds(&id).await;
                ctx.finish(&id);
            });
        }
    }
    let mut set = tokio::task::JoinSet::new();
    for i in 0..ctx.tasks.len() {
        if !ctx.tasks[i].runs() || outcome.contains_key(&ctx.tasks[i].id) {
            continue;
        }
        let ctx = ctx.clone();
        let limit = limit.clone();
        set.spawn(async move { task::run_task(ctx, i, limit).await });
    }
    let mut store_error = None;
    let mut bug = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok((id, status, error, files))) => {
                outcome.insert(id, (status, error, files));
            }
            Ok(Err(e)) => {
                if store_error.is_none() && bug.is_none() {
                    journal_failed(&ctx);
                }
                store_error.get_or_insert(e);
            }
            // A runner that panicked: a bug, not the journal. The others stop as at an
            // interrupt; the run is recorded INTERRUPTED, for `resume`.
            Err(e) => {
                if store_error.is_none() && bug.is_none() {
                    journal_failed(&ctx);
                }
                bug.get_or_insert(format!(
                    "a task runner failed (a bug in dpplan; please report it): {e}"
                ));
            }
        }
    }
    barriers.abort_all();
    if let (Some(why), None) = (&bug, &store_error) {
        let (_, still_held) = actions::release_held(&ctx).await;
        let mut why = why.clone();
        if !still_held.is_empty() {
            why.push_str(&format!(
                "; still quiesced (or quiescing): {}",
                still_held.join(", ")
            ));
        }
        ctx.log(None, None, why.clone()).await?;
        return finish(&ctx, outcome, RunStatus::Interrupted, Some(why)).await;
    }
    if let Some(error) = store_error {
        // Nothing more can be recorded; what the run holds is released all the same.
        let (released, still_held) = actions::release_held(&ctx).await;
        return Err(EngineError::JournalFailed {
            run: ctx.run,
            error,
            released,
            still_held,
        });
    }
    sweep_temporaries(&ctx);
    if ctx.interrupted.load(Ordering::SeqCst) || outcome.values().any(|(s, _, _)| !s.is_final()) {
        return finish(
            &ctx,
            outcome,
            RunStatus::Interrupted,
            Some(format!(
                "interrupted; `dpplan resume {}` continues it",
                ctx.run
            )),
        )
        .await;
    }
    let status = run_status(outcome.values().map(|(s, _, _)| *s));
    post_plan(&ctx, status, &outcome).await?;
    finish(&ctx, outcome, status, None).await
}

/// The post-plan script, with the run's outcome in its environment, when its `when` matches
/// the outcome: `succeeded` a COMPLETED run, `failed` any other.
async fn post_plan(
    ctx: &RunCtx,
    status: RunStatus,
    outcome: &HashMap<u32, (TaskStatus, Option<String>, Vec<String>)>,
) -> Result<(), EngineError> {
    let Some(script) = &ctx.plan.post_plan else {
        return Ok(());
    };
    let wanted = match script.when {
        crate::check::ScriptWhen::Always => true,
        crate::check::ScriptWhen::Succeeded => status == RunStatus::Completed,
        crate::check::ScriptWhen::Failed => status != RunStatus::Completed,
    };
    if !wanted {
        ctx.log(
            None,
            None,
            format!(
                "post_plan: not run: its `when` does not match the run's outcome ({})",
                status.as_str()
            ),
        )
        .await?;
        return Ok(());
    }
    let mut env = plan_env(ctx, "post_plan", None, None);
    env.insert("DPPLAN_STATUS".into(), status.as_str().into());
    env.insert("DPPLAN_TASKS".into(), tasks_json(ctx, outcome));
    if let Err(e) = task::run_script(ctx, script, env, None, None).await {
        ctx.log(None, None, format!("post-plan script failed: {e}"))
            .await?;
    }
    Ok(())
}

/// The journal failed under a task: no new step starts, and every step is marked finished
/// so that no task waits for another that will never finish (the runners end quickly).
fn journal_failed(ctx: &RunCtx) {
    ctx.interrupted.store(true, Ordering::SeqCst);
    for n in ctx.graph.dag.node_weights() {
        ctx.finish(&n.id);
    }
}

/// Removes temporary names left in the store folders of the run's tasks (by a crash before
/// a resume, or an attempt that failed): after a run or resume, only complete files remain.
fn sweep_temporaries(ctx: &RunCtx) {
    let Some(root) = store_root(&ctx.program) else {
        return;
    };
    let ts = output::timestamp(ctx.started);
    let mut dirs = std::collections::BTreeSet::new();
    for t in &ctx.tasks {
        match &t.target {
            compile::Target::Device => {
                if let output::Layout::SecureBackup { dir } =
                    output::Layout::secure_backup(&t.device, &ts)
                {
                    if let Some(p) = dir.parent() {
                        dirs.insert(root.join(p));
                    }
                }
            }
            other => {
                if let output::Layout::Export { dir, .. } =
                    output::Layout::export(&t.device, other.domain_label(), &ts)
                {
                    dirs.insert(root.join(dir));
                }
            }
        }
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut removed = false;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if output::is_tmp_name(&name) {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                removed = true;
            }
        }
        if removed {
            let _ = output::sync_dir(&d);
        }
    }
}

/// The run's status from its tasks' (docs/cli.md, "Result pages").
pub fn run_status(tasks: impl Iterator<Item = TaskStatus>) -> RunStatus {
    let (mut bad, mut meh) = (false, false);
    for s in tasks {
        match s {
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled => bad = true,
            TaskStatus::Skipped | TaskStatus::Warning => meh = true,
            TaskStatus::Pending | TaskStatus::Running => bad = true,
            TaskStatus::Succeeded => {}
        }
    }
    if bad {
        RunStatus::Failed
    } else if meh {
        RunStatus::Warning
    } else {
        RunStatus::Completed
    }
}

fn tasks_json(
    ctx: &RunCtx,
    outcome: &HashMap<u32, (TaskStatus, Option<String>, Vec<String>)>,
) -> String {
    serde_json::to_string(&task_reports(ctx, outcome)).unwrap_or_default()
}

/// What every task of the run came to, in task order (PENDING for tasks with no outcome).
fn task_reports(
    ctx: &RunCtx,
    outcome: &HashMap<u32, (TaskStatus, Option<String>, Vec<String>)>,
) -> Vec<TaskReport> {
    ctx.tasks
        .iter()
        .map(|t| {
            let (status, error, files) =
                outcome
                    .get(&t.id)
                    .cloned()
                    .unwrap_or((TaskStatus::Pending, None, Vec::new()));
            TaskReport {
                id: t.id,
                action: t.action.clone(),
                device: t.device.clone(),
                domain: t.target.domain_label().to_string(),
                status,
                error,
                files,
            }
        })
        .collect()
}

/// The environment every script of the run gets.
pub(crate) fn plan_env(
    ctx: &RunCtx,
    hook: &str,
    task: Option<&Task>,
    attempt: Option<u32>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("DPPLAN_RUN_ID".into(), ctx.run.to_string());
    env.insert("DPPLAN_PLAN".into(), ctx.plan.name.clone());
    env.insert("DPPLAN_HOOK".into(), hook.into());
    if let Some(t) = task {
        env.insert("DPPLAN_TASK_ID".into(), t.id.to_string());
        env.insert("DPPLAN_ACTION".into(), t.action.clone());
        env.insert("DPPLAN_DEVICE".into(), t.device.clone());
        if let Some(d) = ctx.program.device(&t.device) {
            env.insert("DPPLAN_DEVICE_HOST".into(), d.host.clone());
        }
        env.insert("DPPLAN_DOMAIN".into(), t.target.domain_label().to_string());
    }
    if let Some(a) = attempt {
        env.insert("DPPLAN_ATTEMPT".into(), a.to_string());
    }
    if ctx.resumed {
        env.insert("DPPLAN_RESUMED".into(), "1".into());
    }
    env
}

async fn finish(
    ctx: &RunCtx,
    outcome: HashMap<u32, (TaskStatus, Option<String>, Vec<String>)>,
    status: RunStatus,
    error: Option<String>,
) -> Result<RunReport, EngineError> {
    let interrupted = status == RunStatus::Interrupted;
    let mut records = Vec::new();
    if interrupted {
        let left = ctx
            .tasks
            .iter()
            .filter(|t| outcome.get(&t.id).is_none_or(|(s, _, _)| !s.is_final()))
            .count();
        let held = ctx.live.quiesced();
        let quiesced = if held.is_empty() {
            "nothing left quiesced by this run".to_string()
        } else {
            format!("left quiesced (or quiescing): {}", held.join(", "))
        };
        records.push(Record::Log {
            task: None,
            step: None,
            at: ctx.clock.now(),
            message: format!(
                "interrupted: no new step started; {left} task(s) left for resume, {quiesced}"
            ),
        });
    }
    records.push(Record::Run {
        status,
        error: error.clone(),
        at: ctx.clock.now(),
    });
    ctx.record(records).await?;
    let mut tasks = task_reports(ctx, &outcome);
    if interrupted {
        // Not running any more: they wait for `resume`, which continues them.
        for t in tasks.iter_mut().filter(|t| !t.status.is_final()) {
            t.status = TaskStatus::Pending;
            t.error = Some("interrupted before it finished; resume continues it".into());
        }
    }
    Ok(RunReport {
        run: ctx.run,
        status,
        error,
        tasks,
    })
}

/// The store root of the program, if it has one.
pub(crate) fn store_root(program: &Program) -> Option<PathBuf> {
    program.store.as_ref().map(|s| s.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Action, ActionCall, Policy};
    use crate::compile::Target;

    fn task(id: u32, steps: &Arc<[TaskStep]>) -> Task {
        Task {
            id,
            activity: 1,
            kind: "k".into(),
            action: "SECURE_BACKUP".into(),
            device: format!("D{id}"),
            target: Target::Device,
            skipped: None,
            failed: None,
            params: BTreeMap::new(),
            steps: steps.clone(),
        }
    }

    fn steps() -> Arc<[TaskStep]> {
        let step = |name: &str, action: Action, after: Vec<usize>| TaskStep {
            name: name.into(),
            call: ActionCall {
                action,
                args: BTreeMap::new(),
            },
            always: false,
            undo: None,
            policy: Policy::Stop,
            timeout_ms: None,
            after,
            phase: 0,
        };
        vec![
            step("validate", Action::Validate, vec![]),
            step("save", Action::SaveConfig, vec![0]),
        ]
        .into()
    }

    /// Version 2: step lists stored once, edges by index; read back whole.
    #[test]
    fn a_stored_run_reads_back() {
        let shared = steps();
        let other: Arc<[TaskStep]> = shared[..1].to_vec().into();
        let tasks = vec![task(1, &shared), task(2, &shared), task(3, &other)];
        let plan = Plan {
            name: "p".into(),
            window: None,
            on_failure: Policy::Stop,
            stages: crate::check::Stages::Pipelined,
            on_window_close: crate::check::OnWindowClose::Cancel,
            pre_plan: None,
            post_plan: None,
            activities: Vec::new(),
        };
        let graph = compile::graph(&plan, &tasks);
        let program = Program::default();
        let out = StoredRunOut::new(&program, "p", &tasks, &graph, StoredOptions::default());
        assert_eq!(out.step_sets.len(), 2);
        assert_eq!(out.task_steps, [0, 0, 1]);
        let text = serde_json::to_string(&out).unwrap();
        let (back, g) = read_stored_run(&text).unwrap();
        assert_eq!(back.tasks, tasks);
        assert_eq!(back.plan, "p");
        assert_eq!(g.dag.node_count(), graph.dag.node_count());
        assert_eq!(g.dag.edge_count(), graph.dag.edge_count());
        for id in ["a1/D1:save", "a1/D3:validate"] {
            assert_eq!(g.preds(id), graph.preds(id), "{id}");
        }
        // A damaged index is an error, not a panic.
        let bad = text.replace("\"task_steps\":[0,0,1]", "\"task_steps\":[0,0,7]");
        assert!(read_stored_run(&bad).unwrap_err().contains("step list 7"));
    }

    /// Version 1 (the first release) kept the graph as a JSON string, edges by node id.
    #[test]
    fn a_version_1_stored_run_reads_back() {
        let tasks = vec![task(1, &steps())];
        let graph_v1 = r#"{"nodes":[{"id":"a1/D1:validate","kind":{"Step":[1,0]}},{"id":"a1/D1:save","kind":{"Step":[1,1]}}],"edges":[["a1/D1:validate","a1/D1:save"]]}"#;
        let text = serde_json::json!({
            "version": 1,
            "program": Program::default(),
            "plan": "p",
            "tasks": tasks,
            "graph": graph_v1,
        })
        .to_string();
        let (back, g) = read_stored_run(&text).unwrap();
        assert_eq!(back.tasks, tasks);
        assert_eq!(g.preds("a1/D1:save"), ["a1/D1:validate"]);
        let newer = text.replace("\"version\":1", "\"version\":9");
        let e = read_stored_run(&newer).unwrap_err();
        assert!(e.contains("newer"), "{e}");
    }

    /// COMPLETED when every task succeeded, WARNING when nothing failed but
    /// some were skipped or warned, FAILED otherwise (an unfinished task counts as failed).
    #[test]
    fn a_runs_status_follows_its_tasks() {
        use TaskStatus::*;
        let of = |s: &[TaskStatus]| run_status(s.iter().copied());
        assert_eq!(of(&[Succeeded, Succeeded]), RunStatus::Completed);
        assert_eq!(of(&[Succeeded, Skipped]), RunStatus::Warning);
        assert_eq!(of(&[Warning]), RunStatus::Warning);
        for bad in [Failed, RolledBack, Cancelled, Pending, Running] {
            assert_eq!(of(&[Succeeded, Skipped, bad]), RunStatus::Failed, "{bad:?}");
        }
        assert_eq!(of(&[]), RunStatus::Completed);
    }

    /// A retry takes a chosen task by activity, device and target; a skipped one (no target)
    /// by activity and device, whatever its device's domains are now.
    #[test]
    fn a_retry_takes_the_chosen_tasks() {
        let steps = steps();
        let mut t = task(1, &steps);
        t.device = "QA1".into();
        let r = Retry {
            of: 1,
            tasks: vec![
                (1, "QA1".into(), Some(Target::Device)),
                (2, "TEST9".into(), None),
            ],
        };
        assert!(r.wants(&t));
        t.activity = 2;
        assert!(!r.wants(&t));
        t.device = "TEST9".into();
        t.target = Target::Domain("DOMAIN1".into());
        assert!(r.wants(&t));
        let options = RunOptions {
            devices: vec!["QA*".into()],
            retry: Some(r),
            ..RunOptions::default()
        };
        // In scope: matching a --devices pattern and chosen by the retry.
        assert!(options.includes("QA1"));
        assert!(!options.includes("TEST9"), "not matched by --devices");
        assert!(!options.includes("QA2"), "not chosen by the retry");
    }

    /// Everything a run needs that is missing, each named with where it is used; devices out
    /// of the run's scope are not looked at.
    #[test]
    fn missing_secrets_and_files_are_named() {
        let dir = std::env::temp_dir();
        let text = r#"import "std/datapower"
inventory {
  device "QA1" { host = "qa1" password = env("DPPLAN_UNIT_TEST_UNSET") }
  device "QA2" { host = "qa2" password = file("no-such-secret-file") tls_ca = "no-such-ca.pem" }
}
plan "p" {
  activity secure_backup {
    devices = "QA*"
    cert = "c"
  }
}
"#;
        let checked = crate::check::check(&crate::check::Root::Text {
            name: "unit.dpplan".into(),
            text: text.into(),
            base: dir,
        });
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
        let program = checked.program;
        let plan = program.plan("p").unwrap().clone();
        let all = unresolved_config(&program, &plan, |_| true);
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all[0].contains("DPPLAN_UNIT_TEST_UNSET") && all[0].contains("device QA1"));
        assert!(all[0].contains("unit.dpplan:3:"), "{}", all[0]);
        assert!(all[1].contains("no-such-secret-file") && all[1].contains("device QA2"));
        assert!(all[2].contains("no-such-ca.pem"));
        let qa2 = unresolved_config(&program, &plan, |d| d == "QA2");
        assert_eq!(qa2.len(), 2);
        assert!(unresolved_config(&program, &plan, |_| false).is_empty());
    }
}
