//! What the rooms of serve share, below all of them: the events streamed to clients, where
//! log lines go, serve's errors, and when a plan next falls due.

use crate::check::{Checked, Plan};
use crate::store::{RunId, RunStatus, TaskStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// What `/api/events` streams.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A run started, changed status or ended.
    Run {
        /// The run.
        run: RunId,
        /// Its plan.
        plan: String,
        /// Its status now.
        status: RunStatus,
    },
    /// A task changed status.
    Task {
        /// The run.
        run: RunId,
        /// The task.
        task: u32,
        /// Its device.
        device: String,
        /// Its domain, or `all-domains`.
        domain: String,
        /// Its status now.
        status: TaskStatus,
    },
    /// The plans were reloaded.
    Plans,
    /// This listener fell behind and missed events: read the state again.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Where the daemon's log lines go (the CLI: stderr, which systemd keeps).
pub trait Reporter: Send + Sync {
    /// One line.
    fn say(&self, line: &str);
    /// A check result's diagnostics as text.
    fn diagnostics(&self, checked: &Checked) -> String;
}

/// Why serve or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Serve cannot start.
    #[error("{0}")]
    Start(String),
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or the wrong one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No such plan, run, task or route (404).
    #[error("{0}")]
    NotFound(String),
    /// Not now: the plan is running, the run has ended (409).
    #[error("{0}")]
    Conflict(String),
    /// The state file or the engine failed (500).
    #[error("{0}")]
    Internal(String),
}

/// When plan `plan` next falls due after `now` (its schedule, else its window's opening).
pub fn next_due(plan: &Plan, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    crate::schedule::next_due(plan, now)
}
