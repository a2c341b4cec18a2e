//! [`RedbStore`]: the [`Journal`] and [`History`] of runs in one redb file.
//!
//! Writes go through one writer thread with group commit (see `writer.rs`); reads open read
//! transactions on the caller's thread, concurrently with the writer. Schema: `schema.rs` and
//! docs/checkpoint-format.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use ::redb::{
    Database, DatabaseError, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase,
    ReadableTable, TableError,
};
use tokio::sync::oneshot;

use super::fold::{Fold, LogFold};
use super::schema::{
    db, decode, encode, run_range_u32, run_range_u64, RunHeader, RunText, ACTIVITIES, JOURNAL,
    META, PLAN_RUNS, RUNS, RUN_GRAPH, RUN_TEXT, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TASKS,
    TASK_STATE, UNFINISHED,
};
use super::writer::{Request, Writer};
use super::{
    ActivityRecord, History, Journal, LogLine, NewRun, Record, RunDetail, RunId, RunSummary,
    StoreError, TaskRecord,
};

/// redb's page cache: bounded well under redb's 1 GiB default, since `serve` keeps the file
/// open for weeks; a 10,000-task run's journal is about 32 MiB.
const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The state file: a redb database holding every run, its tasks and its journal.
///
/// Open one per process with [`RedbStore::open`]; a second open of the same file, from this
/// process or another, fails with [`StoreError::Locked`]. Dropping it stops the writer thread
/// (after it has answered every request sent) and closes the file.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    group_commit: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the state file at `path`, creating it (and its parent directories) if needed.
    ///
    /// Fails with [`StoreError::Locked`] at once when another `RedbStore` (in this process or
    /// another) has it open, with [`StoreError::Version`] when a newer dpplan wrote it, and
    /// with [`StoreError::Db`] when it is not a state file.
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Db(format!("creating {}: {e}", parent.display())))?;
            }
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                    StoreError::Locked {
                        path: shown.clone(),
                    }
                }
                e => StoreError::Db(format!("{shown}: {e}")),
            })?;
        check_version(&db, &shown)?;
        init(&db)?;

        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let group_commit = Arc::new(AtomicBool::new(true));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: Arc::clone(&db),
            rx,
            group_commit: Arc::clone(&group_commit),
            commits: Arc::clone(&commits),
            last_seq: Default::default(),
        };
        let writer = std::thread::Builder::new()
            .name("dpplan-store".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Db(format!("starting the writer thread: {e}")))?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            tx: Some(tx),
            writer: Some(writer),
            group_commit,
            commits,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether concurrent writes share commits (the default). With `false` every request is
    /// committed (and fsynced) alone: for benchmarks and tests only.
    pub fn set_group_commit(&self, enabled: bool) {
        self.group_commit.store(enabled, Ordering::Relaxed);
    }

    /// How many write transactions have committed since the file was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let stopped = || StoreError::Db("the state file's writer has stopped".into());
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(db)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer's loop once it has answered what it holds.
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Refuses a file written by a newer schema, before anything is written to it.
fn check_version(database: &Database, path: &str) -> Result<(), StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(db(e)),
    };
    if let Some(found) = meta.get(SCHEMA_VERSION_KEY).map_err(db)? {
        let found = found.value();
        if found > u64::from(SCHEMA_VERSION) {
            return Err(StoreError::Version {
                path: path.to_string(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: SCHEMA_VERSION,
            });
        }
    }
    Ok(())
}

/// Creates the tables and records the schema version (a no-op on an existing file).
fn init(database: &Database) -> Result<(), StoreError> {
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::Immediate).map_err(db)?;
    {
        let mut meta = txn.open_table(META).map_err(db)?;
        // New, or an older schema this one extends (schema 1 lacks `run_graph`; its runs
        // stay readable): record this version.
        let found = meta.get(SCHEMA_VERSION_KEY).map_err(db)?.map(|v| v.value());
        if found.is_none_or(|v| v < u64::from(SCHEMA_VERSION)) {
            meta.insert(SCHEMA_VERSION_KEY, u64::from(SCHEMA_VERSION))
                .map_err(db)?;
        }
        txn.open_table(RUNS).map_err(db)?;
        txn.open_table(RUN_TEXT).map_err(db)?;
        txn.open_table(RUN_GRAPH).map_err(db)?;
        txn.open_table(ACTIVITIES).map_err(db)?;
        txn.open_table(TASKS).map_err(db)?;
        txn.open_table(TASK_STATE).map_err(db)?;
        txn.open_table(JOURNAL).map_err(db)?;
        txn.open_table(UNFINISHED).map_err(db)?;
        txn.open_table(PLAN_RUNS).map_err(db)?;
    }
    txn.commit().map_err(db)
}

#[async_trait::async_trait]
impl Journal for RedbStore {
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Create {
            run: Box::new(run),
            reply,
        })?;
        answer
            .await
            .map_err(|_| StoreError::Db("the state file's writer has stopped".into()))?
    }

    async fn append(&self, run: RunId, records: Vec<Record>) -> Result<(), StoreError> {
        // Encoded here, on the caller's thread: the writer's time goes to the commit.
        let encoded = records.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append {
            run,
            records,
            encoded,
            reply,
        })?;
        answer
            .await
            .map_err(|_| StoreError::Db("the state file's writer has stopped".into()))?
    }
}

fn summary(id: RunId, header: RunHeader) -> RunSummary {
    RunSummary {
        id,
        plan: header.plan,
        started: header.started,
        finished: header.finished,
        status: header.status,
        error: header.error,
        devices: header.devices,
        domains: header.domains,
        succeeded: header.succeeded,
        failed: header.failed,
        skipped: header.skipped,
    }
}

fn header(runs: &ReadOnlyTable<u64, &[u8]>, id: RunId) -> Result<RunHeader, StoreError> {
    match runs.get(id).map_err(db)? {
        Some(bytes) => decode(bytes.value(), "run header"),
        None => Err(StoreError::NoRun(id)),
    }
}

/// Calls `f` with each journal record of a run, in order.
fn journal(txn: &ReadTransaction, id: RunId, mut f: impl FnMut(Record)) -> Result<(), StoreError> {
    let table = txn.open_table(JOURNAL).map_err(db)?;
    for entry in table.range(run_range_u64(id)).map_err(db)? {
        let (_, value) = entry.map_err(db)?;
        f(decode(value.value(), "journal record")?);
    }
    Ok(())
}

impl History for RedbStore {
    fn runs(&self, plan: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let txn = self.read()?;
        let runs = txn.open_table(RUNS).map_err(db)?;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        match plan {
            Some(plan) => {
                let index = txn.open_table(PLAN_RUNS).map_err(db)?;
                for entry in index
                    .range((plan, 0u64)..=(plan, u64::MAX))
                    .map_err(db)?
                    .rev()
                    .take(limit)
                {
                    let (key, _) = entry.map_err(db)?;
                    let id = key.value().1;
                    out.push(summary(id, header(&runs, id)?));
                }
            }
            None => {
                for entry in runs.iter().map_err(db)?.rev().take(limit) {
                    let (key, value) = entry.map_err(db)?;
                    out.push(summary(key.value(), decode(value.value(), "run header")?));
                }
            }
        }
        Ok(out)
    }

    fn run(&self, id: RunId) -> Result<RunDetail, StoreError> {
        let txn = self.read()?;
        let runs = txn.open_table(RUNS).map_err(db)?;
        let header = header(&runs, id)?;
        let text: RunText = match txn.open_table(RUN_TEXT).map_err(db)?.get(id).map_err(db)? {
            Some(bytes) => decode(bytes.value(), "run text")?,
            None => return Err(StoreError::Db(format!("run {id} has no plan text"))),
        };
        let mut activities: Vec<ActivityRecord> = Vec::new();
        for entry in txn
            .open_table(ACTIVITIES)
            .map_err(db)?
            .range(run_range_u32(id))
            .map_err(db)?
        {
            activities.push(decode(entry.map_err(db)?.1.value(), "activity")?);
        }
        let mut tasks: Vec<TaskRecord> = Vec::new();
        for entry in txn
            .open_table(TASKS)
            .map_err(db)?
            .range(run_range_u32(id))
            .map_err(db)?
        {
            tasks.push(decode(entry.map_err(db)?.1.value(), "task")?);
        }
        let mut fold = Fold::new(tasks);
        journal(&txn, id, |record| fold.apply(record))?;
        Ok(RunDetail {
            plan_text: text.plan_text,
            plan_hash: header.plan_hash.clone(),
            summary: summary(id, header),
            activities,
            tasks: fold.finish(),
        })
    }

    fn stored_run(&self, id: RunId) -> Result<String, StoreError> {
        let txn = self.read()?;
        header(&txn.open_table(RUNS).map_err(db)?, id)?;
        // Schema 2 keeps it in its own table; a run written by schema 1 inside its RunText.
        if let Some(bytes) = txn.open_table(RUN_GRAPH).map_err(db)?.get(id).map_err(db)? {
            return String::from_utf8(bytes.value().to_vec())
                .map_err(|_| StoreError::Db(format!("corrupt graph of run {id}: not UTF-8")));
        }
        match txn.open_table(RUN_TEXT).map_err(db)?.get(id).map_err(db)? {
            Some(bytes) => Ok(decode::<RunText>(bytes.value(), "run text")?.graph),
            None => Err(StoreError::Db(format!("run {id} has no plan text"))),
        }
    }

    fn log(&self, id: RunId, task: Option<u32>) -> Result<Vec<LogLine>, StoreError> {
        let txn = self.read()?;
        header(&txn.open_table(RUNS).map_err(db)?, id)?;
        let mut lines = Vec::new();
        let mut fold = LogFold::new(task);
        journal(&txn, id, |record| lines.extend(fold.line(record)))?;
        Ok(lines)
    }

    fn latest_unfinished(&self) -> Result<Option<RunId>, StoreError> {
        let txn = self.read()?;
        let unfinished = txn.open_table(UNFINISHED).map_err(db)?;
        let last = unfinished.last().map_err(db)?;
        Ok(last.map(|(key, _)| key.value()))
    }
}
