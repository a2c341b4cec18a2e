//! Journal records (`dpplan::store::Record`) for tests that write a journal by hand, and a
//! reader of the step attempts a run recorded: one place that spells out each record's fields.

use chrono::{DateTime, Utc};
use dpplan::store::{Record, RunStatus, StepOutcome, TaskStatus};

/// The run's status changes to `status`.
pub fn run(status: RunStatus, error: Option<&str>, at: DateTime<Utc>) -> Record {
    Record::Run {
        status,
        error: error.map(Into::into),
        at,
    }
}

/// Task `task`'s status changes to `status`.
pub fn task(task: u32, status: TaskStatus, error: Option<&str>, at: DateTime<Utc>) -> Record {
    Record::Task {
        task,
        status,
        error: error.map(Into::into),
        at,
    }
}

/// Attempt `attempt` of step `step` of task `task` is about to start.
pub fn intent(task: u32, step: &str, attempt: u32, at: DateTime<Utc>) -> Record {
    Record::StepIntent {
        task,
        step: step.into(),
        attempt,
        at,
    }
}

/// Attempt `attempt` of step `step` of task `task` ended with `outcome`.
pub fn result(
    task: u32,
    step: &str,
    attempt: u32,
    outcome: StepOutcome,
    error: Option<&str>,
    at: DateTime<Utc>,
) -> Record {
    Record::StepResult {
        task,
        step: step.into(),
        attempt,
        outcome,
        error: error.map(Into::into),
        at,
        retry: false,
    }
}

/// A line of the activity log.
pub fn log(task: Option<u32>, step: Option<&str>, at: DateTime<Utc>, message: &str) -> Record {
    Record::Log {
        task,
        step: step.map(Into::into),
        at,
        message: message.into(),
    }
}

/// The firmware facts of task `task`'s appliance (an IDG 10.6 of serial 78AB123).
pub fn facts(task: u32) -> Record {
    Record::Facts {
        task,
        facts: vec![
            ("version".into(), "IDG.10.6.0.0".into()),
            ("build".into(), "356711".into()),
            ("machine_type".into(), "8436".into()),
            ("model".into(), "52X".into()),
            ("serial".into(), "78AB123".into()),
        ],
    }
}

/// The attempts of step `step` of task `task` that `records` holds a result for, with their
/// outcomes, in order.
pub fn attempts(records: &[Record], task: u32, step: &str) -> Vec<(u32, StepOutcome)> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::StepResult {
                task: t,
                step: s,
                attempt,
                outcome,
                ..
            } if *t == task && s == step => Some((*attempt, *outcome)),
            _ => None,
        })
        .collect()
}
