//! What a run came to, as `dpplan run --json` prints it and the engine returns it.

use serde::{Deserialize, Serialize};

use crate::store::{RunId, RunStatus, TaskStatus};

/// What one task came to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
