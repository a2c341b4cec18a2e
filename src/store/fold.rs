//! Rebuilding task and step state from a run's journal, by folding its records in order.
//!
//! This is what `resume` and the reports see: a step with an intent and no result is in
//! flight; a step's outcome is that of its last result. Records naming a task the run does
//! not have are ignored, so a damaged journal cannot make a read fail or panic.

use std::collections::HashMap;

use super::types::{LogLine, Record, StepOutcome, StepState, TaskRecord, TaskState, TaskStatus};

/// Task states being rebuilt, in task order.
pub(super) struct Fold {
    tasks: Vec<TaskState>,
    index: HashMap<u32, usize>,
}

impl Fold {
    /// Starts from the tasks as created.
    pub fn new(tasks: Vec<TaskRecord>) -> Fold {
        let index = tasks
            .iter()
            .enumerate()
            .map(|(i, task)| (task.id, i))
            .collect();
        let tasks = tasks
            .into_iter()
            .map(|task| TaskState {
                status: task.status,
                error: task.reason.clone(),
                task,
                started: None,
                finished: None,
                steps: Vec::new(),
                files: Vec::new(),
                facts: Vec::new(),
                imports: Vec::new(),
            })
            .collect();
        Fold { tasks, index }
    }

    fn task(&mut self, id: u32) -> Option<&mut TaskState> {
        let i = *self.index.get(&id)?;
        self.tasks.get_mut(i)
    }

    /// Applies one record.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::StepIntent { task, step, at, .. } => {
                if let Some(task) = self.task(task) {
                    let step = step_mut(&mut task.steps, step);
                    step.attempts = step.attempts.saturating_add(1);
                    step.in_flight = true;
                    step.retry_pending = false;
                    step.started.get_or_insert(at);
                }
            }
            Record::StepResult {
                task,
                step,
                outcome,
                error,
                at,
                retry,
                ..
            } => {
                if let Some(task) = self.task(task) {
                    let step = step_mut(&mut task.steps, step);
                    step.outcome = Some(outcome);
                    step.error = error;
                    step.finished = Some(at);
                    step.in_flight = false;
                    step.retry_pending = retry;
                    step.retried = step.retried.saturating_add(u32::from(retry));
                }
            }
            Record::Task {
                task,
                status,
                error,
                at,
            } => {
                if let Some(task) = self.task(task) {
                    task.status = status;
                    task.error = error;
                    if status == TaskStatus::Running && task.started.is_none() {
                        task.started = Some(at);
                    }
                    task.finished = if status.is_final() { Some(at) } else { None };
                }
            }
            Record::File { task, file } => {
                if let Some(task) = self.task(task) {
                    task.files.push(file);
                }
            }
            Record::Facts { task, facts } => {
                if let Some(task) = self.task(task) {
                    task.facts = facts;
                }
            }
            Record::Import { task, step, report } => {
                if let Some(task) = self.task(task) {
                    task.imports.push((step, report));
                }
            }
            // The run's status lives in its header; log lines are read by `log`.
            Record::Run { .. } | Record::Log { .. } => {}
        }
    }

    /// The task states, in task order.
    pub fn finish(self) -> Vec<TaskState> {
        self.tasks
    }
}

/// The state of the step named `name`, added (in first-record order) if new.
fn step_mut(steps: &mut Vec<StepState>, name: String) -> &mut StepState {
    let i = match steps.iter().position(|s| s.name == name) {
        Some(i) => i,
        None => {
            steps.push(StepState {
                name,
                attempts: 0,
                outcome: None,
                in_flight: false,
                started: None,
                finished: None,
                error: None,
                retry_pending: false,
                retried: 0,
            });
            steps.len() - 1
        }
    };
    &mut steps[i]
}

/// Turns a run's journal into its activity log (the audit trail): the `Log` records, and a
/// line for each step attempt's start and end (with its duration), each task's and the
/// run's status changes.
#[derive(Debug, Default)]
pub(super) struct LogFold {
    /// Only the lines of this task (and none of the run's own), when set.
    task: Option<u32>,
    /// When each step attempt's intent was written, for its duration.
    intents: std::collections::HashMap<(u32, String, u32), chrono::DateTime<chrono::Utc>>,
}

impl LogFold {
    /// A fold for the whole run, or for one task.
    pub(super) fn new(task: Option<u32>) -> LogFold {
        LogFold {
            task,
            intents: Default::default(),
        }
    }

    /// The log line of `record`, if it makes one for this fold.
    pub(super) fn line(&mut self, record: Record) -> Option<LogLine> {
        let (task, step, at, message) = match record {
            Record::Log {
                task,
                step,
                at,
                message,
            } => (task, step, at, message),
            Record::StepIntent {
                task,
                step,
                attempt,
                at,
            } => {
                self.intents.insert((task, step.clone(), attempt), at);
                (
                    Some(task),
                    Some(step),
                    at,
                    format!("started (attempt {attempt})"),
                )
            }
            Record::StepResult {
                task,
                step,
                attempt,
                outcome,
                error,
                at,
                retry,
            } => {
                let took = self
                    .intents
                    .remove(&(task, step.clone(), attempt))
                    .map(|from| {
                        let ms = (at - from).num_milliseconds().max(0);
                        if ms < 1000 {
                            format!(" after {ms}ms")
                        } else {
                            format!(" after {}.{:01}s", ms / 1000, (ms % 1000) / 100)
                        }
                    })
                    .unwrap_or_default();
                let what = match outcome {
                    StepOutcome::Succeeded => format!("succeeded (attempt {attempt}{took})"),
                    StepOutcome::Failed => format!("failed (attempt {attempt}{took})"),
                    StepOutcome::Skipped => "not run".to_string(),
                    StepOutcome::Undone => "undone".to_string(),
                };
                // A retried failure's text is in the engine's own line about the retry.
                let mut m = match error {
                    Some(e) if !retry => format!("{what}: {e}"),
                    _ => what,
                };
                if retry {
                    m.push_str("; a retry follows");
                }
                (Some(task), Some(step), at, m)
            }
            Record::Task {
                task,
                status,
                error,
                at,
            } => {
                let m = match error {
                    Some(e) => format!("task {}: {e}", status.as_str()),
                    None => format!("task {}", status.as_str()),
                };
                (Some(task), None, at, m)
            }
            Record::Run { status, error, at } => {
                let m = match error {
                    Some(e) => format!("run {}: {e}", status.as_str()),
                    None => format!("run {}", status.as_str()),
                };
                (None, None, at, m)
            }
            Record::File { .. } | Record::Facts { .. } | Record::Import { .. } => return None,
        };
        if self.task.is_some() && task != self.task {
            return None;
        }
        Some(LogLine {
            at,
            task,
            step,
            message,
        })
    }
}
