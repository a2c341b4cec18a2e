//! The stored run: everything `resume` and `retry` need, written at a run's creation
//! (docs/checkpoint-format.md), read back in either version.

#[allow(unused_imports)]
use super::context::*;
use super::options::{Retry, StoredOptions};

/// Everything `resume` needs, stored with the run: the checked program, the plan, the tasks
/// exactly as compiled, and the step graph. Resume never reads the plan file again.
/// docs/checkpoint-format.md describes it; `version` 2 stores the graph as an object with
/// edges by node index, version 1 stored it as a JSON string with edges by node id.
/// Version 2 also stores each distinct list of steps once (`step_sets`; tasks of one activity
/// share theirs): a task is stored without its steps, and `task_steps[i]` names its set.
#[derive(Debug, Serialize)]
pub(super) struct StoredRunOut<'a> {
    pub(super) version: u32,
    pub(super) program: &'a Program,
    pub(super) plan: &'a str,
    pub(super) tasks: Vec<Task>,
    pub(super) step_sets: Vec<&'a Arc<[TaskStep]>>,
    pub(super) task_steps: Vec<u32>,
    pub(super) graph: compile::GraphData<'a>,
    pub(super) options: StoredOptions,
}

impl<'a> StoredRunOut<'a> {
    pub(super) fn new(
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
pub(super) struct StoredRunIn {
    pub(super) version: u32,
    pub(super) program: Program,
    pub(super) plan: String,
    pub(super) tasks: Vec<Task>,
    #[serde(default)]
    pub(super) step_sets: Vec<Arc<[TaskStep]>>,
    #[serde(default)]
    pub(super) task_steps: Vec<u32>,
    pub(super) graph: Box<serde_json::value::RawValue>,
    /// Absent in runs stored before options were kept: run as default options.
    #[serde(default)]
    pub(super) options: StoredOptions,
}

/// The stored run's format written now.
pub(super) const STORED_RUN_VERSION: u32 = 2;

/// Reads a stored run (version 1 or 2) and rebuilds its graph.
pub(super) fn read_stored_run(text: &str) -> Result<(StoredRunIn, PlanGraph), String> {
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
    stored_program(stored_run)?.store.map(|s| s.path)
}

/// The program a run stored (its inventory, store and plans, as the run resolved them).
pub fn stored_program(stored_run: &str) -> Option<Program> {
    #[derive(serde::Deserialize)]
    struct Only {
        program: Program,
    }
    let only: Only = serde_json::from_str(stored_run).ok()?;
    Some(only.program)
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
