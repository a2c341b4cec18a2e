//! Rebuilding task and step state from a run's journal, by folding its records in order.
//!
//! This is what `resume` and the reports see: a step with an intent and no result is in
//! flight; a step's outcome is that of its last result. Records naming a task the run does
//! not have are ignored, so a damaged journal cannot make a read fail or panic.

use std::collections::HashMap;

use super::{LogLine, Record, StepState, TaskRecord, TaskState, TaskStatus};

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

/// The log line of a record, if it is one and belongs to `task` (any task when `None`).
pub(super) fn log_line(record: Record, task: Option<u32>) -> Option<LogLine> {
    match record {
        Record::Log {
            task: t,
            step,
            at,
            message,
        } if task.is_none() || t == task => Some(LogLine {
            at,
            task: t,
            step,
            message,
        }),
        _ => None,
    }
}
