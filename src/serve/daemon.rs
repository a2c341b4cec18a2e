//! The daemon's runs: starting, resuming, interrupting, cancelling and retrying them, one run
//! of a plan at a time, each device worked on by one run at a time; and what happens as they
//! go (events for `/api/events`, figures for `/metrics`, lines for the daemon's log).

use super::catalog::Catalog;
use super::metrics::Metrics;
use super::shared::{Event, Reporter, ServeError};
use crate::compile::Task;
use crate::engine::clock::Clock;
use crate::engine::{Connector, DeviceLocks, Engine, EngineError, Live, RunOptions, RunReport};
use crate::store::{History, RedbStore, RunId, RunStatus, TaskStatus};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// A run this process drives now.
struct Driving {
    plan: String,
    live: Arc<Live>,
}

/// What a new run is asked for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// Run even outside the plan's window.
    #[serde(default)]
    pub ignore_window: bool,
    /// Only the tasks of devices matching this pattern (commas separate several).
    #[serde(default)]
    pub devices: Option<String>,
}

/// What a run is made from.
enum Job {
    New {
        program: Arc<crate::check::Program>,
        plan: String,
        text: String,
    },
    Resume(RunId),
}

/// The daemon's shared state.
pub struct Daemon {
    pub(super) store: Arc<RedbStore>,
    pub(super) catalog: RwLock<Arc<Catalog>>,
    connector: Arc<dyn Connector>,
    pub(super) clock: Arc<dyn Clock>,
    locks: Arc<DeviceLocks>,
    driving: Mutex<Vec<Driving>>,
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) metrics: Metrics,
    pub(super) reporter: Arc<dyn Reporter>,
    stopping: AtomicBool,
    /// Wakes the scheduler (a reload, a run's end).
    pub(super) wake: tokio::sync::Notify,
    /// Options every run gets (test knobs: poll intervals).
    base_options: RunOptions,
    /// The state file's outbox: notifications of run outcomes, delivered in the background.
    pub(super) outbox: Arc<crate::notify::Outbox>,
}

impl Daemon {
    /// A daemon over an open state file and a loaded catalog.
    pub fn new(
        store: Arc<RedbStore>,
        catalog: Catalog,
        connector: Arc<dyn Connector>,
        clock: Arc<dyn Clock>,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Arc<Daemon>, ServeError> {
        let metrics =
            Metrics::from_history(store.as_ref()).map_err(|e| ServeError::Start(e.to_string()))?;
        let store_for_outbox: Arc<dyn crate::store::OutboxStore> = store.clone();
        Ok(Arc::new(Daemon {
            store,
            catalog: RwLock::new(Arc::new(catalog)),
            connector,
            clock,
            locks: Arc::new(DeviceLocks::default()),
            driving: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
            events: broadcast::channel(1024).0,
            metrics,
            reporter,
            stopping: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            base_options: RunOptions::default(),
            outbox: Arc::new(crate::notify::Outbox::new(store_for_outbox)),
        }))
    }

    /// The plans in use.
    pub fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the plans (a reload); running runs keep the program they started with.
    pub fn set_catalog(&self, catalog: Catalog) {
        match self.catalog.write() {
            Ok(mut c) => *c = Arc::new(catalog),
            Err(p) => *p.into_inner() = Arc::new(catalog),
        }
        let _ = self.events.send(Event::Plans);
        self.wake.notify_one();
    }

    /// The run of plan `plan` this process drives now, if any (0 while it is being created).
    pub fn running_run_of(&self, plan: &str) -> Option<RunId> {
        self.with_driving(|d| {
            d.iter()
                .find(|x| x.plan == plan)
                .map(|x| x.live.run().unwrap_or(0))
        })
    }

    /// How many runs this process drives now.
    pub fn running(&self) -> usize {
        self.with_driving(|d| d.len())
    }

    fn with_driving<T>(&self, f: impl FnOnce(&mut Vec<Driving>) -> T) -> T {
        match self.driving.lock() {
            Ok(mut d) => f(&mut d),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn live_of(&self, run: RunId) -> Option<Arc<Live>> {
        self.with_driving(|d| {
            d.iter()
                .find(|x| x.live.run() == Some(run))
                .map(|x| x.live.clone())
        })
    }

    /// Claims plan `plan` for a new run: refused while one of its runs goes on or serve stops.
    fn claim(&self, plan: &str, live: &Arc<Live>) -> Result<(), ServeError> {
        self.with_driving(|d| {
            if self.stopping.load(Ordering::SeqCst) {
                return Err(ServeError::Conflict("dpplan serve is shutting down".into()));
            }
            if let Some(other) = d.iter().find(|x| x.plan == plan) {
                return Err(ServeError::Conflict(match other.live.run() {
                    Some(r) => format!("plan \"{plan}\" is running: run {r}"),
                    None => format!("plan \"{plan}\" is starting a run"),
                }));
            }
            d.push(Driving {
                plan: plan.to_string(),
                live: live.clone(),
            });
            Ok(())
        })
    }

    /// Starts a run of plan `plan`; returns its id once the run exists (after the fleet's
    /// probe). `origin` is the first line of its log.
    pub async fn start(
        self: &Arc<Self>,
        plan: &str,
        request: StartRequest,
        origin: String,
    ) -> Result<RunId, ServeError> {
        let catalog = self.catalog();
        let entry = catalog
            .plans
            .get(plan)
            .ok_or_else(|| ServeError::NotFound(format!("no plan named \"{plan}\"")))?;
        let devices: Vec<String> = request
            .devices
            .iter()
            .flat_map(|d| d.split(','))
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty())
            .collect();
        if let Some(p) = entry.plan() {
            let selected = crate::compile::devices_to_probe(&entry.program, p);
            for pattern in &devices {
                if !selected
                    .iter()
                    .any(|(d, _)| crate::check::patterns::matches(pattern, d))
                {
                    return Err(ServeError::BadRequest(format!(
                        "devices {pattern} matches no device of plan \"{plan}\""
                    )));
                }
            }
        }
        let options = RunOptions {
            ignore_window: request.ignore_window,
            devices,
            origin: Some(origin),
            warnings: entry.warnings.clone(),
            ..self.base_options.clone()
        };
        let job = Job::New {
            program: entry.program.clone(),
            plan: plan.to_string(),
            text: entry.text.clone(),
        };
        self.launch(plan, job, options, Arc::new(Live::default()))
            .await
    }

    /// Runs `job` in the background; returns the run's id once it exists.
    async fn launch(
        self: &Arc<Self>,
        plan: &str,
        job: Job,
        options: RunOptions,
        live: Arc<Live>,
    ) -> Result<RunId, ServeError> {
        self.claim(plan, &live)?;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let plan_name = plan.to_string();
        let live2 = live.clone();
        let handle = tokio::spawn(async move {
            let outcome = me.drive(job, options, live2.clone()).await;
            let id = outcome.as_ref().map(|r| r.run).ok().or(live2.run());
            me.with_driving(|d| d.retain(|x| !Arc::ptr_eq(&x.live, &live2)));
            me.ended(&plan_name, &outcome);
            me.retain(&plan_name).await;
            // Its outcome's notifications were queued with its status: send them now.
            me.outbox.wake();
            me.wake.notify_one();
            let _ = tx.send(id.ok_or_else(|| match outcome {
                Err(e) => e.to_string(),
                Ok(_) => "the run could not be created".to_string(),
            }));
        });
        self.remember(handle);
        loop {
            if let Some(id) = live.run() {
                return Ok(id);
            }
            tokio::select! {
                r = &mut rx => {
                    return match r {
                        Ok(Ok(id)) => Ok(id),
                        Ok(Err(why)) => Err(ServeError::Internal(why)),
                        Err(_) => Err(ServeError::Internal("the run's driver stopped".into())),
                    };
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    fn remember(&self, handle: tokio::task::JoinHandle<()>) {
        if let Ok(mut h) = self.handles.lock() {
            h.retain(|x| !x.is_finished());
            h.push(handle);
        }
    }

    async fn drive(
        self: &Arc<Self>,
        job: Job,
        options: RunOptions,
        live: Arc<Live>,
    ) -> Result<RunReport, EngineError> {
        let observer = Arc::new(Watcher {
            daemon: Arc::downgrade(self),
            run: AtomicU64::new(0),
            started: Mutex::new(HashMap::new()),
        });
        let journal: Arc<dyn crate::store::Journal> = self.store.clone();
        let builder = Engine::builder(journal, self.connector.clone(), self.clock.clone())
            .options(options)
            .observe(observer)
            .live(live)
            .device_locks(self.locks.clone());
        match job {
            Job::New {
                program,
                plan,
                text,
            } => builder.plan(program, plan).run(&text).await,
            Job::Resume(run) => builder.resume(self.store.as_ref(), run).await,
        }
    }

    /// A run ended (or could not go on): its event, its figures, a log line.
    fn ended(&self, plan: &str, outcome: &Result<RunReport, EngineError>) {
        match outcome {
            Ok(r) => {
                self.metrics.run_ended(plan, r.status);
                let _ = self.events.send(Event::Run {
                    run: r.run,
                    plan: plan.to_string(),
                    status: r.status,
                });
                let why = r
                    .error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                self.reporter.say(&format!(
                    "run {} of plan \"{plan}\": {}{why}",
                    r.run,
                    r.status.as_str()
                ));
            }
            Err(e) => self
                .reporter
                .say(&format!("plan \"{plan}\": the run stopped: {e}")),
        }
    }

    /// Journal retention for plan `plan`, by its current settings (`keep_runs`, `keep_days`).
    async fn retain(&self, plan: &str) {
        let Some((keep_runs, keep_days)) = self
            .catalog()
            .plans
            .get(plan)
            .map(|e| (e.program.settings.keep_runs, e.program.settings.keep_days))
        else {
            return;
        };
        let now = self.clock.now();
        match crate::store::retention::apply(&self.store, plan, keep_runs, keep_days, now).await {
            Ok(0) => {}
            Ok(n) => self.reporter.say(&format!(
                "journal retention: {n} old run(s) of plan \"{plan}\" removed from the state file"
            )),
            Err(e) => self
                .reporter
                .say(&format!("journal retention of plan \"{plan}\" failed: {e}")),
        }
    }

    /// The plan and status of run `run`, from the state file.
    fn summary(&self, run: RunId) -> Result<crate::store::RunSummary, ServeError> {
        match self.store.run(run) {
            Ok(d) => Ok(d.summary),
            Err(crate::store::StoreError::NoRun(_)) => {
                Err(ServeError::NotFound(format!("no run {run}")))
            }
            Err(e) => Err(ServeError::Internal(e.to_string())),
        }
    }

    /// Interrupts run `run`: no new step starts; it ends INTERRUPTED, for `resume`.
    pub fn interrupt(&self, run: RunId) -> Result<RunId, ServeError> {
        if let Some(live) = self.live_of(run) {
            live.interrupt();
            return Ok(run);
        }
        let s = self.summary(run)?;
        Err(ServeError::Conflict(format!(
            "run {run} is not running (it is {})",
            s.status.as_str()
        )))
    }

    /// Continues an unfinished run that is not running.
    pub async fn resume(self: &Arc<Self>, run: RunId, origin: String) -> Result<RunId, ServeError> {
        self.continue_run(run, origin, false).await
    }

    /// Cancels run `run`: a running one stops starting steps and ends CANCELLED once its owed
    /// releases ran; an unfinished one that is not running is continued just to release what
    /// it owes and end CANCELLED.
    pub async fn cancel(self: &Arc<Self>, run: RunId, origin: String) -> Result<RunId, ServeError> {
        if let Some(live) = self.live_of(run) {
            live.cancel();
            return Ok(run);
        }
        self.continue_run(run, origin, true).await
    }

    async fn continue_run(
        self: &Arc<Self>,
        run: RunId,
        origin: String,
        cancel: bool,
    ) -> Result<RunId, ServeError> {
        if self.live_of(run).is_some() {
            return Err(ServeError::Conflict(format!("run {run} is running")));
        }
        let s = self.summary(run)?;
        if s.status.is_final() {
            return Err(ServeError::Conflict(format!(
                "run {run} has ended {}",
                s.status.as_str()
            )));
        }
        let live = Arc::new(Live::default());
        if cancel {
            live.cancel();
        }
        let options = RunOptions {
            origin: Some(origin),
            ..self.base_options.clone()
        };
        self.launch(&s.plan, Job::Resume(run), options, live).await
    }

    /// A new run of a finished run's stored program, for its tasks that did not succeed.
    pub async fn retry(self: &Arc<Self>, run: RunId, origin: String) -> Result<RunId, ServeError> {
        self.summary(run)?;
        let r = crate::engine::retry_plan(self.store.as_ref(), run, &[])
            .map_err(|e| ServeError::Conflict(e.to_string()))?;
        let options = RunOptions {
            origin: Some(origin),
            retry: Some(r.retry),
            ..self.base_options.clone()
        };
        let job = Job::New {
            program: Arc::new(r.program),
            plan: r.plan.clone(),
            text: r.plan_text,
        };
        self.launch(&r.plan, job, options, Arc::new(Live::default()))
            .await
    }

    /// Resumes every unfinished run of the state file (at start: owed unquiesces first).
    pub async fn resume_unfinished(self: &Arc<Self>) -> Result<Vec<RunId>, ServeError> {
        let runs = self
            .store
            .runs(None, usize::MAX)
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        let mut resumed = Vec::new();
        for r in runs.iter().rev().filter(|r| !r.status.is_final()) {
            let origin = "dpplan serve at its start (the run was unfinished)".to_string();
            match self.continue_run(r.id, origin, false).await {
                Ok(id) => resumed.push(id),
                Err(e) => self
                    .reporter
                    .say(&format!("run {}: not resumed: {e}", r.id)),
            }
        }
        Ok(resumed)
    }

    /// Records that plan `plan` fell due at `due` while serve was down and its window has
    /// closed since: a MISSED run, with nothing done.
    pub async fn record_missed(
        &self,
        plan: &str,
        due: chrono::DateTime<chrono::Utc>,
    ) -> Result<RunId, ServeError> {
        use crate::store::{Journal, NewRun, Record};
        let catalog = self.catalog();
        let entry = catalog
            .plans
            .get(plan)
            .ok_or_else(|| ServeError::NotFound(format!("no plan named \"{plan}\"")))?;
        let now = self.clock.now();
        let why = format!(
            "due at {} while dpplan serve was not running; the window had closed when it came back",
            due.to_rfc3339()
        );
        let run = self
            .store
            .create_run(NewRun {
                plan: plan.to_string(),
                started: now,
                plan_text: entry.text.clone(),
                plan_hash: String::new(),
                graph: String::new(),
                activities: Vec::new(),
                tasks: Vec::new(),
            })
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        // The status and its notifications in one commit, as the engine writes a run's end.
        let outcome = crate::notify::Outcome::new(
            run,
            plan,
            now,
            RunStatus::Missed,
            Some(why.clone()),
            now,
            Vec::new(),
        );
        self.outbox
            .enqueue_for(
                run,
                vec![Record::Run {
                    status: RunStatus::Missed,
                    error: Some(why.clone()),
                    at: now,
                }],
                &entry.program,
                plan,
                &outcome,
            )
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        self.ended(
            plan,
            &Ok(RunReport {
                run,
                status: RunStatus::Missed,
                error: Some(why),
                tasks: Vec::new(),
            }),
        );
        Ok(run)
    }

    /// The graceful stop (SIGTERM): nothing new starts, running runs stop starting steps and
    /// release what they hold; returns once every run has ended (INTERRUPTED, for the next
    /// start to resume).
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.with_driving(|d| {
            for x in d.iter() {
                x.live.interrupt();
            }
        });
        self.wake.notify_one();
        let handles: Vec<_> = match self.handles.lock() {
            Ok(mut h) => h.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for h in handles {
            let _ = h.await;
        }
    }

    /// Whether serve is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// What the runs driven now hold quiesced (for a forced exit's message).
    pub fn quiesced(&self) -> Vec<String> {
        self.with_driving(|d| d.iter().flat_map(|x| x.live.quiesced()).collect())
    }
}

/// The engine's observer for one run: task changes become events and figures.
struct Watcher {
    daemon: std::sync::Weak<Daemon>,
    run: AtomicU64,
    started: Mutex<HashMap<u32, std::time::Instant>>,
}

impl crate::engine::Observer for Watcher {
    fn run(&self, run: &crate::engine::RunStart<'_>) {
        self.run.store(run.run, Ordering::SeqCst);
        if let Some(d) = self.daemon.upgrade() {
            let plan = d
                .with_driving(|x| {
                    x.iter()
                        .find(|r| r.live.run() == Some(run.run))
                        .map(|r| r.plan.clone())
                })
                .unwrap_or_default();
            let _ = d.events.send(Event::Run {
                run: run.run,
                plan,
                status: RunStatus::Running,
            });
        }
    }

    fn task(&self, task: &Task, status: TaskStatus) {
        let Some(d) = self.daemon.upgrade() else {
            return;
        };
        let elapsed = match self.started.lock() {
            Ok(mut s) if status == TaskStatus::Running => {
                s.entry(task.id).or_insert_with(std::time::Instant::now);
                None
            }
            Ok(mut s) if status.is_final() => s.remove(&task.id).map(|t| t.elapsed()),
            _ => None,
        };
        if status.is_final() {
            d.metrics
                .task_ended(&task.device, status, elapsed, d.clock.now());
        }
        let _ = d.events.send(Event::Task {
            run: self.run.load(Ordering::SeqCst),
            task: task.id,
            device: task.device.clone(),
            domain: task.target.domain_label().to_string(),
            status,
        });
    }
}
