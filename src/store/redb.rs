//! [`RedbStore`]: the [`Journal`] and [`History`] of runs in one redb file, opened for writing.
//!
//! Writes go through one writer thread with group commit (see `writer.rs`); reads open read
//! transactions on the caller's thread, concurrently with the writer. The file is opened in
//! redb's single-writer mode: one process writes it, and any number of others read it at the
//! same time through [`ReadOnlyStore`](super::ReadOnlyStore). The writer says who it is in
//! the sidecar file (`owner.rs`). Schema: `schema.rs` and docs/checkpoint-format.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ::redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
};
use tokio::sync::oneshot;

use super::outbox::StoredEntry;
use super::outbox::{OutboxEntry, OutboxStore, Settlement};
use super::owner::{self, Claim, Owner};
use super::read;
use super::schema::{
    db, decode, encode, RunHeader, ACTIVITIES, JOURNAL, META, OUTBOX, PLAN_RUNS, RUNS, RUN_GRAPH,
    RUN_TEXT, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TASKS, TASK_STATE, UNFINISHED,
};
use super::types::NewOutboxEntry;
use super::types::{
    History, Journal, LogLine, NewRun, Record, RunDetail, RunId, RunStatus, RunSummary, StoreError,
};
use super::writer::{Request, Writer};

/// redb's page cache: bounded well under redb's 1 GiB default, since `serve` keeps the file
/// open for weeks; a 10,000-task run's journal is about 32 MiB.
const CACHE_BYTES: usize = 128 * 1024 * 1024;

/// The state file: a redb database holding every run, its tasks and its journal, open for
/// writing.
///
/// One process at a time has it open for writing: a second [`RedbStore::open`] of the same
/// file, from this process or another, fails at once with [`StoreError::Locked`] (naming the
/// writer), and [`RedbStore::open_waiting`] waits for the writer instead. Readers
/// ([`ReadOnlyStore`](super::ReadOnlyStore)) are never refused. Dropping it stops the writer
/// thread (after it has answered every request sent) and closes the file.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    tx: Option<Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    group_commit: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    // Dropped after the database: the sidecar names this process while the file is open.
    claim: Claim,
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
    /// Opens the state file at `path` for writing, creating it (and its parent directories,
    /// private to the user: mode 0700) if needed.
    ///
    /// Fails with [`StoreError::Locked`] at once when another `RedbStore` (in this process or
    /// another) has it open, with [`StoreError::Version`] when a newer dpplan wrote it, and
    /// with [`StoreError::Open`] when it is not a state file. A file left by a writer that was
    /// killed is recovered here (redb repairs it on open).
    pub fn open(path: &Path) -> Result<RedbStore, StoreError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() && !parent.is_dir() {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|source| StoreError::Io {
                        path: parent.to_path_buf(),
                        source,
                    })?;
            }
        }
        // A new state file is its owner's only, whatever the umask (it names devices, hosts
        // and users); redb initializes an empty file as a new database.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| StoreError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_concurrency_mode(ConcurrencyMode::SingleWriter)
            .create(path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                    locked(path)
                }
                e => StoreError::Open {
                    path: shown.to_string(),
                    source: Box::new(e.into()),
                },
            })?;
        read::check_version(&db, &shown)?;
        init(&db)?;
        let claim = Claim::take(path, read::next_run(&db)?)?;

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
            .map_err(|_| StoreError::WriterGone)?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            tx: Some(tx),
            writer: Some(writer),
            group_commit,
            commits,
            claim,
        })
    }

    /// Opens the state file at `path` for writing as [`RedbStore::open`] does, but while
    /// another process writes it, waits: tries again every `poll`, calling `waiting` with
    /// the writer (when its sidecar names it) before each wait.
    pub fn open_waiting(
        path: &Path,
        poll: Duration,
        mut waiting: impl FnMut(Option<&Owner>),
    ) -> Result<RedbStore, StoreError> {
        loop {
            match RedbStore::open(path) {
                Err(StoreError::Locked { owner, .. }) => {
                    waiting(owner.as_deref());
                    std::thread::sleep(poll);
                }
                done => return done,
            }
        }
    }

    /// Says in the sidecar that this process is `dpplan serve`, its API at `url` (so a
    /// `dpplan run` beside it can say how to start a run through it).
    pub fn announce_serve(&self, url: &str) -> Result<(), StoreError> {
        self.claim.set_serve(url)
    }

    /// Deletes finished runs whole (journal retention, see [`super::retention`]); a run
    /// that is not finished, or not there, is left alone. Returns how many went.
    pub async fn forget(&self, runs: Vec<RunId>) -> Result<usize, StoreError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        self.send(Request::Forget { runs, reply })?;
        answer.await.map_err(|_| StoreError::WriterGone)?
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

    /// The newest runs with status `status`, optionally of one plan, newest first: what
    /// [`History::runs`] gives filtered by status, but read only as far back as the
    /// `limit`-th match.
    pub fn runs_with_status(
        &self,
        plan: Option<&str>,
        status: RunStatus,
        limit: usize,
    ) -> Result<Vec<RunSummary>, StoreError> {
        read::runs_where(self.db.as_ref(), plan, Some(status), limit)
    }

    /// How many write transactions have committed since the file was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn send(&self, request: Request) -> Result<(), StoreError> {
        let stopped = || StoreError::WriterGone;
        self.tx
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())
    }

    /// Records, before its first append, that this process writes run `run` (a resumed run,
    /// or an old one `prune` logs to), so readers do not take it for one whose process is gone.
    fn claim_run(&self, run: RunId) -> Result<(), StoreError> {
        if self.claim.writes(run) {
            return Ok(());
        }
        let txn = self.db.begin_read().map_err(db)?;
        let plan = match txn.open_table(RUNS).map_err(db)?.get(run).map_err(db)? {
            Some(bytes) => decode::<RunHeader>(bytes.value(), "run header")?.plan,
            // The append is refused as it reaches the writer.
            None => return Ok(()),
        };
        self.claim.add_run(run, &plan)
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

/// The error for a state file another process writes, naming it when its sidecar does.
fn locked(path: &Path) -> StoreError {
    StoreError::Locked {
        path: path.display().to_string(),
        owner: owner::holder(path).owner().cloned().map(Box::new),
    }
}

/// Creates the tables and records the schema version (a no-op on an existing file).
fn init(database: &Database) -> Result<(), StoreError> {
    let mut txn = database.begin_write().map_err(db)?;
    txn.set_durability(Durability::Immediate).map_err(db)?;
    {
        let mut meta = txn.open_table(META).map_err(db)?;
        // New, or an older schema this one extends (schema 1 lacks `run_graph`, schema 2
        // the `outbox`; their runs stay readable): record this version.
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
        txn.open_table(OUTBOX).map_err(db)?;
    }
    txn.commit().map_err(db)
}

#[async_trait::async_trait]
impl Journal for RedbStore {
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        let plan = run.plan.clone();
        let (reply, answer) = oneshot::channel();
        self.send(Request::Create {
            run: Box::new(run),
            reply,
        })?;
        let id = answer.await.map_err(|_| StoreError::WriterGone)??;
        // Readers know it is this process's already (its number is past `first_new_run`);
        // this names it for messages.
        self.claim.add_run(id, &plan)?;
        Ok(id)
    }

    async fn append(&self, run: RunId, records: Vec<Record>) -> Result<(), StoreError> {
        self.append_with_outbox(run, records, Vec::new()).await
    }

    async fn append_with_outbox(
        &self,
        run: RunId,
        records: Vec<Record>,
        outbox: Vec<NewOutboxEntry>,
    ) -> Result<(), StoreError> {
        self.claim_run(run)?;
        // Encoded here, on the caller's thread: the writer's time goes to the commit.
        let encoded = records.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let outbox = outbox
            .iter()
            .map(|e| encode(&StoredEntry::new(run, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Append {
            run,
            records,
            encoded,
            outbox,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

#[async_trait::async_trait]
impl OutboxStore for RedbStore {
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        read::outbox(self.db.as_ref())
    }

    async fn settle(
        &self,
        id: u64,
        settlement: Settlement,
        log: Vec<Record>,
    ) -> Result<bool, StoreError> {
        let encoded = log.iter().map(encode).collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Settle {
            id,
            settlement,
            log,
            encoded,
            reply,
        })?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

impl History for RedbStore {
    fn runs(&self, plan: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        read::runs(self.db.as_ref(), plan, limit)
    }

    fn run(&self, id: RunId) -> Result<RunDetail, StoreError> {
        read::run(self.db.as_ref(), id)
    }

    fn stored_run(&self, id: RunId) -> Result<String, StoreError> {
        read::stored_run(self.db.as_ref(), id)
    }

    fn log(&self, id: RunId, task: Option<u32>) -> Result<Vec<LogLine>, StoreError> {
        read::log(self.db.as_ref(), id, task)
    }

    fn latest_unfinished(&self) -> Result<Option<RunId>, StoreError> {
        read::latest_unfinished(self.db.as_ref())
    }
}
