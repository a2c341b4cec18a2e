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
mod context;
mod execute;
pub mod failpoint;
pub mod fsinfo;
mod gate;
mod hooks;
mod options;
mod start;
mod stored;
pub use gate::DeviceLocks;
pub mod scripts;
mod task;
pub mod window;

pub use crate::report::{RunReport, TaskReport};
pub use crate::secrets::read_secret;
pub use connect::unresolved_config;
use connect::*;
pub use context::Connector;
use context::*;
pub use context::{Engine, EngineBuilder, EngineError, Observer, RunStart};
pub use execute::run_status;
use execute::*;
pub use options::{Live, Retry, RunOptions, StoredOptions};
use stored::*;
pub use stored::{retry_plan, stored_program, stored_store_root, RetryPlan};

use sha2::{Digest, Sha256};

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
            let at = self.base.clock.now();
            records.push(Record::Run {
                status,
                error: Some(error.clone()),
                at,
            });
            // Its notifications are queued in the commit of its status.
            let told = crate::notify::Outcome::new(
                run,
                &plan.name,
                started,
                status,
                Some(error.clone()),
                at,
                Vec::new(),
            );
            let queued = crate::notify::queue_for(&self.program, &plan.name, &told);
            records.extend(queued.log);
            self.base
                .journal
                .append_with_outbox(run, records, queued.entries)
                .await?;
            failpoint::hit("after-outcome");
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
        let stored = serde_json::to_string(&stored).map_err(|source| StoreError::Encode {
            what: "the stored run",
            source,
        })?;
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
