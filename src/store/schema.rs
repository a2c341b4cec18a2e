//! The tables of the state file, their keys and value encodings, and the schema version.
//!
//! docs/checkpoint-format.md is the reference for everything here; change both together, and
//! bump [`SCHEMA_VERSION`] for any change an older dpplan could misread.

use ::redb::TableDefinition;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::types::{RunId, RunStatus, StoreError, TaskRecord, TaskStatus};

/// The schema version this dpplan writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 4;

/// The key in [`META`] that holds the schema version.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// The key in [`META`] that holds the number the next outbox entry gets (schema 3).
pub const OUTBOX_NEXT_KEY: &str = "outbox_next_id";

/// `name -> u64`: file-wide settings: `schema_version`, `outbox_next_id`.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `run -> JSON RunHeader`: what `dpplan runs` shows, kept current as records are appended.
pub const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("runs");

/// `run -> JSON RunText`: the plan text (and, in schema 1, the compiled graph), written once.
pub const RUN_TEXT: TableDefinition<u64, &[u8]> = TableDefinition::new("run_text");

/// `run -> bytes`: the compiled graph as the engine serialized it, written once (schema 2;
/// schema 1 kept it inside [`RunText`], as an escaped string).
pub const RUN_GRAPH: TableDefinition<u64, &[u8]> = TableDefinition::new("run_graph");

/// `(run, activity id) -> JSON ActivityRecord`, written once.
pub const ACTIVITIES: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("activities");

/// `(run, task id) -> JSON TaskRecord`: the task as created, written once.
pub const TASKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("tasks");

/// `(run, task id) -> JSON TaskStatus`: the task's current status, updated by Task records.
pub const TASK_STATE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("task_state");

/// `(run, seq) -> JSON Record`: the journal; seq starts at 1 and increases by 1 per record.
pub const JOURNAL: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("journal");

/// `run -> ()`: the runs whose status is not final (the index `resume` starts from).
pub const UNFINISHED: TableDefinition<u64, ()> = TableDefinition::new("unfinished");

/// `(plan, run) -> ()`: runs by plan, for `dpplan runs --plan P`.
pub const PLAN_RUNS: TableDefinition<(&str, u64), ()> = TableDefinition::new("plan_runs");

/// `entry id -> JSON StoredEntry`: messages about runs waiting to be delivered (schema 3).
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");

/// The header of a run: its summary line, kept current by the writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    /// The plan's name.
    pub plan: String,
    /// The run's start time.
    pub started: DateTime<Utc>,
    /// SHA-256 of the plan text, hex.
    pub plan_hash: String,
    /// The current status (the last Run record, or WAITING_FOR_PRE_VALIDATION).
    pub status: RunStatus,
    /// The error of the last Run record.
    pub error: Option<String>,
    /// When the run reached its current final status.
    pub finished: Option<DateTime<Utc>>,
    /// Distinct devices among the tasks (fixed at creation).
    pub devices: u32,
    /// Distinct (device, domain) pairs among EXPORT_DOMAIN tasks (fixed at creation).
    pub domains: u32,
    /// Tasks SUCCEEDED or WARNING now.
    pub succeeded: u32,
    /// Tasks FAILED, ROLLED_BACK or CANCELLED now.
    pub failed: u32,
    /// Tasks SKIPPED now.
    pub skipped: u32,
}

impl RunHeader {
    /// Moves one task from the count of its old status to that of its new one.
    pub fn recount(&mut self, old: Option<TaskStatus>, new: TaskStatus) {
        if let Some(old) = old {
            if let Some(count) = self.bucket(old) {
                *count = count.saturating_sub(1);
            }
        }
        if let Some(count) = self.bucket(new) {
            *count = count.saturating_add(1);
        }
    }

    fn bucket(&mut self, status: TaskStatus) -> Option<&mut u32> {
        match status {
            TaskStatus::Succeeded | TaskStatus::Warning => Some(&mut self.succeeded),
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled => {
                Some(&mut self.failed)
            }
            TaskStatus::Skipped => Some(&mut self.skipped),
            TaskStatus::Pending | TaskStatus::Running => None,
        }
    }

    /// The header of a run created with these tasks.
    pub fn new(
        plan: String,
        started: DateTime<Utc>,
        plan_hash: String,
        tasks: &[TaskRecord],
    ) -> RunHeader {
        let devices: std::collections::BTreeSet<&str> =
            tasks.iter().map(|t| t.device.as_str()).collect();
        let domains: std::collections::BTreeSet<(&str, &str)> = tasks
            .iter()
            .filter(|t| t.action == "EXPORT_DOMAIN")
            .map(|t| (t.device.as_str(), t.domain.as_str()))
            .collect();
        let mut header = RunHeader {
            plan,
            started,
            plan_hash,
            status: RunStatus::WaitingForPreValidation,
            error: None,
            finished: None,
            devices: count(devices.len()),
            domains: count(domains.len()),
            succeeded: 0,
            failed: 0,
            skipped: 0,
        };
        for task in tasks {
            header.recount(None, task.status);
        }
        header
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The plan text of a run (and its graph, in schema 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunText {
    /// The plan text, with its imports.
    pub plan_text: String,
    /// Schema 1: the compiled graph. Schema 2 writes it empty and keeps the graph in
    /// [`RUN_GRAPH`].
    #[serde(default)]
    pub graph: String,
}

/// Encodes a value (JSON).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        what: "a value",
        source,
    })
}

/// Decodes a value; a value that does not decode is a corrupt state file.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        what: what.to_string(),
        source,
    })
}

/// Maps any redb error to [`StoreError::Redb`].
pub fn db<E: Into<::redb::Error>>(e: E) -> StoreError {
    StoreError::redb(e)
}

/// The key range of one run in a `(run, id)` table.
pub fn run_range_u32(run: RunId) -> std::ops::RangeInclusive<(u64, u32)> {
    (run, 0)..=(run, u32::MAX)
}

/// The key range of one run's journal.
pub fn run_range_u64(run: RunId) -> std::ops::RangeInclusive<(u64, u64)> {
    (run, 0)..=(run, u64::MAX)
}
