//! The store's shared vocabulary: run and task statuses, the records the engine journals,
//! the views the history answers with, the [`Journal`] and [`History`] traits and
//! [`StoreError`].
//!
//! A leaf of the module: every other file of `store` imports these from here, never from
//! `mod.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A run's number: 1, 2, 3... in the order runs were created in this state file.
pub type RunId = u64;

/// The status of a run (docs/cli.md, "Result pages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    /// Created; pre-validation not finished.
    WaitingForPreValidation,
    /// Tasks are running.
    Running,
    /// Waiting for the window to open again (`on_window_close = sleep`).
    Sleeping,
    /// Stopped by an interrupt; `resume` continues it.
    Interrupted,
    /// Every task SUCCEEDED.
    Completed,
    /// None FAILED, ROLLED_BACK or CANCELLED, but some SKIPPED or WARNING.
    Warning,
    /// Some task FAILED, ROLLED_BACK or CANCELLED, or the pre-plan script failed.
    Failed,
    /// Every task was SKIPPED: nothing ran.
    Stopped,
    /// Cancelled by an operator.
    Cancelled,
    /// `settings.backups_enabled = false`.
    BackupsDisabled,
    /// Started outside the plan's window.
    OutsideWindow,
    /// The store is missing, or not a remote filesystem when one is required.
    StoreNotMounted,
    /// The store has less free space than required.
    StoreOutOfSpace,
    /// A secret or file the run needs is missing (an unset `env()` variable, a missing
    /// `file()`, `tls_ca` or script): nothing was touched.
    InvalidConfig,
    /// A scheduled run fell due while `dpplan serve` was down and its window had closed
    /// by the time serve came back: nothing ran.
    Missed,
}

impl RunStatus {
    /// Every status, in the order a run meets them (the final ones last).
    pub const ALL: [RunStatus; 15] = [
        RunStatus::WaitingForPreValidation,
        RunStatus::Running,
        RunStatus::Sleeping,
        RunStatus::Interrupted,
        RunStatus::Completed,
        RunStatus::Warning,
        RunStatus::Failed,
        RunStatus::Stopped,
        RunStatus::Cancelled,
        RunStatus::BackupsDisabled,
        RunStatus::OutsideWindow,
        RunStatus::StoreNotMounted,
        RunStatus::StoreOutOfSpace,
        RunStatus::InvalidConfig,
        RunStatus::Missed,
    ];

    /// The status named `name` (`completed` or `COMPLETED`), if any.
    pub fn parse(name: &str) -> Option<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether the run is over (nothing more will happen to it).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            RunStatus::WaitingForPreValidation
                | RunStatus::Running
                | RunStatus::Sleeping
                | RunStatus::Interrupted
        )
    }

    /// The name as shown to users: `COMPLETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::WaitingForPreValidation => "WAITING_FOR_PRE_VALIDATION",
            RunStatus::Running => "RUNNING",
            RunStatus::Sleeping => "SLEEPING",
            RunStatus::Interrupted => "INTERRUPTED",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Warning => "WARNING",
            RunStatus::Failed => "FAILED",
            RunStatus::Stopped => "STOPPED",
            RunStatus::Cancelled => "CANCELLED",
            RunStatus::BackupsDisabled => "BACKUPS_DISABLED",
            RunStatus::OutsideWindow => "OUTSIDE_WINDOW",
            RunStatus::StoreNotMounted => "STORE_NOT_MOUNTED",
            RunStatus::StoreOutOfSpace => "STORE_OUT_OF_SPACE",
            RunStatus::InvalidConfig => "INVALID_CONFIG",
            RunStatus::Missed => "MISSED",
        }
    }
}

/// The status of a task (docs/cli.md, "Result pages").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Not started.
    Pending,
    /// Started, not finished.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// Finished, but a step failed under `continue`.
    Warning,
    /// A step failed under `stop` or `halt`.
    Failed,
    /// A step failed under `rollback`; completed steps were undone.
    RolledBack,
    /// Never run: device not available, or a pattern matched nothing.
    Skipped,
    /// Never run: halted, window closed, or cancelled.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task is over.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }

    /// The name as shown to users: `SUCCEEDED`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Succeeded => "SUCCEEDED",
            TaskStatus::Warning => "WARNING",
            TaskStatus::Failed => "FAILED",
            TaskStatus::RolledBack => "ROLLED_BACK",
            TaskStatus::Skipped => "SKIPPED",
            TaskStatus::Cancelled => "CANCELLED",
        }
    }
}

/// How one attempt of a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StepOutcome {
    /// The action succeeded.
    Succeeded,
    /// The action failed (the error says why).
    Failed,
    /// Not run: left out by the recovery policy or a script's `when`.
    Skipped,
    /// Its `undo` ran during a rollback.
    Undone,
}

/// One activity of a run, as the reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityRecord {
    /// 1-based, in plan order.
    pub id: u32,
    /// The kind (`secure_backup`).
    pub kind: String,
    /// The optional label.
    pub label: Option<String>,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN` (the kind's action).
    pub action: String,
    /// The device patterns, as written (`QA*`, or `TEST8, TEST9`).
    pub device_pattern: String,
    /// The domain patterns, as written; `all-domains` for secure backups and `all`.
    pub domain_pattern: String,
}

/// One task of a run, as created by expansion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// 1-based, in creation order.
    pub id: u32,
    /// The activity it belongs to.
    pub activity: u32,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The device.
    pub device: String,
    /// The domain; `all-domains` for secure backups and all-domains exports.
    pub domain: String,
    /// The status at creation: PENDING, or SKIPPED with a reason.
    pub status: TaskStatus,
    /// Why it is SKIPPED (or later, why it failed).
    pub reason: Option<String>,
}

/// A run as created: everything `resume` needs to execute it again without the plan file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRun {
    /// The plan's name.
    pub plan: String,
    /// The run's start time (its id in the output layout).
    pub started: DateTime<Utc>,
    /// The text of the plan file and its imports, concatenated with file headers.
    pub plan_text: String,
    /// SHA-256 of `plan_text`, hex.
    pub plan_hash: String,
    /// The compiled step graph, serialized (JSON) by the compile layer.
    pub graph: String,
    /// Activities in plan order.
    pub activities: Vec<ActivityRecord>,
    /// Tasks in creation order.
    pub tasks: Vec<TaskRecord>,
}

/// A file written into the store for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the store root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// One transition or observation, appended to a run's journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A step attempt is about to have its side effect. Durable before the effect starts.
    StepIntent {
        /// The task.
        task: u32,
        /// The step's name within the task (`backup`).
        step: String,
        /// 1 for the first attempt.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// A step attempt ended (or the step was skipped or undone).
    StepResult {
        /// The task.
        task: u32,
        /// The step.
        step: String,
        /// The attempt it ends (0 for skipped steps that never had an intent).
        attempt: u32,
        /// How it ended.
        outcome: StepOutcome,
        /// The error, for failures.
        error: Option<String>,
        /// When.
        at: DateTime<Utc>,
        /// A failure the step's policy retries: another attempt follows (after its backoff),
        /// so resume runs the step again rather than apply its final policy. Absent (false)
        /// in records of earlier releases.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        retry: bool,
    },
    /// A task changed status.
    Task {
        /// The task.
        task: u32,
        /// Its new status.
        status: TaskStatus,
        /// The error or reason, if any.
        error: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The run changed status.
    Run {
        /// The new status.
        status: RunStatus,
        /// The error, if any.
        error: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A file was written into the store for a task.
    File {
        /// The task.
        task: u32,
        /// The file.
        file: FileRecord,
    },
    /// Facts about the device a task ran against (for the task page and manifests).
    Facts {
        /// The task.
        task: u32,
        /// Firmware version, build, machine type, model, serial, as `key -> value`.
        facts: Vec<(String, String)>,
    },
    /// What an import did, or would do (a dry run), per object and per file.
    Import {
        /// The task.
        task: u32,
        /// The step (`dry_run`, `import`).
        step: String,
        /// The appliance's report.
        report: crate::appliance::import::ImportReport,
    },
    /// A line of the activity log.
    Log {
        /// The task, or `None` for the run itself.
        task: Option<u32>,
        /// The step, if any.
        step: Option<String>,
        /// When.
        at: DateTime<Utc>,
        /// The message.
        message: String,
    },
}

/// Errors of the state file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process writes the state file.
    #[error("the state file {path} is in use by another dpplan process")]
    Locked {
        /// The state file.
        path: String,
        /// The process, as its sidecar names it (`None` when it does not).
        owner: Option<Box<Owner>>,
    },
    /// The file was written by a newer dpplan.
    #[error(
        "the state file {path} has schema version {found}; this dpplan reads up to {supported}"
    )]
    Version {
        /// The state file.
        path: String,
        /// Its version.
        found: u32,
        /// Ours.
        supported: u32,
    },
    /// No such run.
    #[error("no run {0} in the state file")]
    NoRun(RunId),
    /// The file cannot be opened as a state file (not one, damaged, unreadable).
    #[error("cannot open the state file {path}: {source}")]
    Open {
        /// The state file.
        path: String,
        /// What redb said.
        #[source]
        source: Box<::redb::Error>,
    },
    /// A reader found the file left by a killed writer, and its recovery needs a writer.
    #[error("{path} needs recovery after a crash, and its writer has not recovered it yet")]
    NeedsRecovery {
        /// The state file.
        path: String,
    },
    /// redb failed: the disk (full, failing), or a damaged file.
    #[error("state file: {0}")]
    Redb(#[from] Box<::redb::Error>),
    /// A value in the file does not read back: a damaged file, or one written by something
    /// else.
    #[error("state file: corrupt {what}: {source}")]
    Corrupt {
        /// What was read (`run header`, `journal record`...).
        what: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be encoded for the file.
    #[error("state file: encoding {what}: {source}")]
    Encode {
        /// What was written.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A file beside or under the state file (its folder, the owner sidecar).
    #[error("state file: {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The state file has no plan text, or an unreadable graph, for a run it lists.
    #[error("state file: run {run} {what}")]
    Incomplete {
        /// The run.
        run: RunId,
        /// What is missing.
        what: &'static str,
    },
    /// The writer thread stopped (the process is going down) or could not start.
    #[error("the state file's writer has stopped")]
    WriterGone,
    /// A commit that failed for every request of its batch: the first request gets the cause,
    /// the others this, which names it.
    #[error("state file: {0}")]
    Batch(std::sync::Arc<str>),
}

impl StoreError {
    /// A redb error of any kind.
    pub fn redb(e: impl Into<::redb::Error>) -> StoreError {
        StoreError::Redb(Box::new(e.into()))
    }
}

/// Where the engine writes. Object safe; the engine holds `Arc<dyn Journal>`.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// Creates a run with its activities and tasks; durable when it returns.
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError>;

    /// Appends records to a run's journal, in order; durable (fsynced) when it returns.
    /// Concurrent callers may share one commit (group commit), but no call returns before
    /// its own records are durable.
    async fn append(&self, run: RunId, records: Vec<Record>) -> Result<(), StoreError>;

    /// Appends records and queues messages in the outbox ([`OutboxStore`]) about the run, in
    /// one commit: durable together when it returns, or neither written. How a run's final
    /// status and the notifications of it are written.
    async fn append_with_outbox(
        &self,
        run: RunId,
        records: Vec<Record>,
        outbox: Vec<NewOutboxEntry>,
    ) -> Result<(), StoreError>;
}

/// One line of `dpplan runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run.
    pub id: RunId,
    /// Its plan.
    pub plan: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it reached its current final status, if it has.
    pub finished: Option<DateTime<Utc>>,
    /// Its status.
    pub status: RunStatus,
    /// The run's error, if any.
    pub error: Option<String>,
    /// Distinct devices among its tasks.
    pub devices: u32,
    /// Distinct (device, domain) pairs among its export tasks.
    pub domains: u32,
    /// Tasks SUCCEEDED (or WARNING).
    pub succeeded: u32,
    /// Tasks FAILED, ROLLED_BACK or CANCELLED.
    pub failed: u32,
    /// Tasks SKIPPED.
    pub skipped: u32,
}

/// What the journal says about one step of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// Attempts with an intent record.
    pub attempts: u32,
    /// The outcome of the last result record, if any.
    pub outcome: Option<StepOutcome>,
    /// An intent without a result: the step was in flight when the process stopped.
    pub in_flight: bool,
    /// First intent.
    pub started: Option<DateTime<Utc>>,
    /// Last result.
    pub finished: Option<DateTime<Utc>>,
    /// The last error.
    pub error: Option<String>,
    /// The last result is a failure its policy retries: the step runs again on resume.
    #[serde(skip)]
    pub retry_pending: bool,
    /// Failures of the step that were retried (its retry policy's budget used so far).
    #[serde(skip)]
    pub retried: u32,
}

/// What a task learned about its device: the firmware, and whether the domain had unsaved
/// changes. The journal keeps it as `key -> value` pairs ([`Record::Facts`]); this is its one
/// reading and writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFacts {
    /// Firmware version.
    pub version: String,
    /// Firmware build.
    pub build: String,
    /// Machine type.
    pub machine_type: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// The domain had unsaved changes (an export took the running configuration too).
    pub save_needed: bool,
    /// The backup a restore reads (absolute path), chosen by its `validate` step.
    pub source: Option<String>,
}

impl TaskFacts {
    /// As the journal keeps them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        vec![
            ("version".into(), self.version.clone()),
            ("build".into(), self.build.clone()),
            ("machine_type".into(), self.machine_type.clone()),
            ("model".into(), self.model.clone()),
            ("serial".into(), self.serial.clone()),
            (
                "save_needed".into(),
                if self.save_needed { "on" } else { "off" }.into(),
            ),
        ]
        .into_iter()
        .chain(self.source.clone().map(|s| ("source".to_string(), s)))
        .collect()
    }

    /// From the journal's pairs; `None` when none were recorded. Unknown keys are ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Option<TaskFacts> {
        if pairs.is_empty() {
            return None;
        }
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Some(TaskFacts {
            version: get("version"),
            build: get("build"),
            machine_type: get("machine_type"),
            model: get("model"),
            serial: get("serial"),
            save_needed: get("save_needed") == "on",
            source: Some(get("source")).filter(|s| !s.is_empty()),
        })
    }
}

/// What the journal says about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    /// As created.
    pub task: TaskRecord,
    /// Its current status.
    pub status: TaskStatus,
    /// Its error or reason.
    pub error: Option<String>,
    /// When it started running.
    pub started: Option<DateTime<Utc>>,
    /// When it reached a final status.
    pub finished: Option<DateTime<Utc>>,
    /// Steps that have records, in the order of their first record.
    pub steps: Vec<StepState>,
    /// Files written.
    pub files: Vec<FileRecord>,
    /// Device facts, if recorded.
    pub facts: Vec<(String, String)>,
    /// Import reports, by step, in the order recorded (a step's latest attempt last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<(String, crate::appliance::import::ImportReport)>,
}

/// Everything stored about a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    /// The summary line.
    pub summary: RunSummary,
    /// The plan text, as stored at creation.
    pub plan_text: String,
    /// SHA-256 of the plan text.
    pub plan_hash: String,
    /// Activities.
    pub activities: Vec<ActivityRecord>,
    /// Tasks with their journal state.
    pub tasks: Vec<TaskState>,
}

/// One line of the activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When.
    pub at: DateTime<Utc>,
    /// The task, if any.
    pub task: Option<u32>,
    /// The step, if any.
    pub step: Option<String>,
    /// The message.
    pub message: String,
}

/// Where the reports and `resume` read.
pub trait History {
    /// The most recent runs, newest first, optionally of one plan.
    fn runs(&self, plan: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError>;

    /// One run, with its tasks' journal state.
    fn run(&self, id: RunId) -> Result<RunDetail, StoreError>;

    /// What `resume` reads: the run's stored graph ([`NewRun::graph`]) as written.
    fn stored_run(&self, id: RunId) -> Result<String, StoreError>;

    /// The activity log of a run, optionally of one task, oldest first.
    fn log(&self, id: RunId, task: Option<u32>) -> Result<Vec<LogLine>, StoreError>;

    /// The newest run whose status is not final, if any.
    fn latest_unfinished(&self) -> Result<Option<RunId>, StoreError>;
}

/// The process that writes a state file, as its sidecar records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Its process id.
    pub pid: u32,
    /// The user it runs as.
    pub user: String,
    /// The host it runs on.
    pub host: String,
    /// Its command line.
    pub command: String,
    /// When it opened the state file.
    pub started: DateTime<Utc>,
    /// Runs numbered from this one up were created by this process: the single writer
    /// numbers every run it creates after the last one in the file when it opened it.
    pub first_new_run: RunId,
    /// The runs it created or continued, oldest first (at most the last 64).
    pub runs: Vec<OwnedRun>,
    /// When it is `dpplan serve`: the base URL of its API (runs are started through it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve: Option<String>,
}

/// A run an [`Owner`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedRun {
    /// The run.
    pub id: RunId,
    /// Its plan.
    pub plan: String,
}

/// A message to queue with a run's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOutboxEntry {
    /// When it was queued: its first attempt is due then.
    pub queued: DateTime<Utc>,
    /// What to deliver and where, as the notifier wrote it.
    pub message: serde_json::Value,
}

#[cfg(test)]
mod facts_tests {
    use super::TaskFacts;

    #[test]
    fn facts_read_back_as_written_and_old_pairs_still_read() {
        let f = TaskFacts {
            version: "IDG.10.6.0.0".into(),
            build: "1".into(),
            machine_type: "8436".into(),
            model: "52X".into(),
            serial: "S1".into(),
            save_needed: true,
            source: None,
        };
        assert_eq!(TaskFacts::from_pairs(&f.to_pairs()), Some(f.clone()));
        // A restore's chosen backup reads back too.
        let restore = TaskFacts {
            source: Some("/store/QA1/domain/D/D-export-x-persisted.zip".into()),
            ..f
        };
        assert_eq!(
            TaskFacts::from_pairs(&restore.to_pairs()),
            Some(restore.clone())
        );
        assert_eq!(TaskFacts::from_pairs(&[]), None);
        // A journal of an older release: some keys missing, an unknown one.
        let old = [
            ("version".to_string(), "IDG.10.5".to_string()),
            ("other".to_string(), "x".to_string()),
        ];
        let back = TaskFacts::from_pairs(&old).unwrap();
        assert_eq!(back.version, "IDG.10.5");
        assert!(!back.save_needed && back.serial.is_empty() && back.source.is_none());
    }
}
