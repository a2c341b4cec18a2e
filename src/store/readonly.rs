//! [`ReadOnlyStore`]: the [`History`] of a state file, opened read-only.
//!
//! What the report commands use. It shares the file with the process that writes it (redb's
//! single-writer mode) and sees each of its commits; it never writes the file, with one
//! exception: a file left unclean by a writer that was killed cannot be opened read-only
//! until it is recovered, so when no writer holds it, it is opened for writing once (which
//! recovers it) and then read-only.
//!
//! It also settles what the file cannot know: a run the file says is RUNNING (or waiting for
//! pre-validation, or sleeping) whose process is gone is shown INTERRUPTED, with the hint to
//! resume it (docs/checkpoint-format.md). Alive means: a process holds the file for writing and its sidecar
//! names the run (`owner.rs`).

use std::path::{Path, PathBuf};

use ::redb::{ConcurrencyMode, DatabaseError, ReadOnlyDatabase};

use super::owner::{self, Holder};
use super::read;
use super::redb::RedbStore;
use super::types::{
    History, LogLine, RunDetail, RunId, RunStatus, RunSummary, StoreError, TaskStatus,
};

/// redb's page cache for a reader: reports read a run or a page of runs.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// A state file, open read-only: the history, while a run may be writing it.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
    path: PathBuf,
    recovered: bool,
}

impl std::fmt::Debug for ReadOnlyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyStore")
            .field("path", &self.path)
            .field("recovered", &self.recovered)
            .finish_non_exhaustive()
    }
}

impl ReadOnlyStore {
    /// Opens the existing state file at `path` read-only.
    ///
    /// Fails with [`StoreError::Version`] when a newer dpplan wrote it, with
    /// [`StoreError::Locked`] when a dpplan older than this one has it open (it locks the
    /// whole file), and with [`StoreError::Open`] when it is missing or not a state file. A
    /// file left by a killed writer is recovered first ([`ReadOnlyStore::recovered`]).
    pub fn open(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        let shown = path.display().to_string();
        let mut recovered = false;
        let db = match open_read_only(path) {
            Err(DatabaseError::RepairAborted) => {
                // Unclean, and no live writer repairs it: recover it by opening it for
                // writing, once. A writer that took it meanwhile recovers it itself.
                match RedbStore::open(path) {
                    Ok(store) => {
                        drop(store);
                        recovered = true;
                    }
                    Err(StoreError::Locked { .. }) => {}
                    Err(e) => return Err(e),
                }
                open_read_only(path)
            }
            other => other,
        };
        let db = db.map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                StoreError::Locked {
                    path: shown.clone(),
                    owner: None,
                }
            }
            DatabaseError::RepairAborted => StoreError::NeedsRecovery {
                path: shown.clone(),
            },
            e => StoreError::Open {
                path: shown.clone(),
                source: Box::new(e.into()),
            },
        })?;
        read::check_version(&db, &shown)?;
        Ok(ReadOnlyStore {
            db,
            path: path.to_path_buf(),
            recovered,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether opening it had to recover it (its last writer was killed): the one time a
    /// reader writes the file.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// Who holds the file for writing now.
    pub fn holder(&self) -> Holder {
        owner::holder(&self.path)
    }

    /// Shows a run whose process is gone as INTERRUPTED. `before` and `after` are who held
    /// the file before and after the read: a run is alive if either writes it, so a run
    /// that ends, or one that starts, between the two looks as it is.
    fn settle(&self, summary: &mut RunSummary, before: &Holder, after: &Holder) {
        if !in_process(summary.status) || before.writes(summary.id) || after.writes(summary.id) {
            return;
        }
        summary.status = RunStatus::Interrupted;
        // The hint first: tables cut the error column from its end.
        summary.error = Some(format!(
            "dpplan resume {} (its process is gone: killed, crashed or rebooted)",
            summary.id
        ));
    }
}

/// Whether a run with this status has a process working on it, by the file's account.
fn in_process(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::WaitingForPreValidation | RunStatus::Running | RunStatus::Sleeping
    )
}

fn open_read_only(path: &Path) -> Result<ReadOnlyDatabase, DatabaseError> {
    ::redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(path)
}

impl History for ReadOnlyStore {
    fn runs(&self, plan: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let before = self.holder();
        let mut runs = read::runs(&self.db, plan, limit)?;
        if runs.iter().any(|r| in_process(r.status)) {
            let after = self.holder();
            for r in &mut runs {
                self.settle(r, &before, &after);
            }
        }
        Ok(runs)
    }

    fn run(&self, id: RunId) -> Result<RunDetail, StoreError> {
        let before = self.holder();
        let mut detail = read::run(&self.db, id)?;
        if in_process(detail.summary.status) {
            let after = self.holder();
            self.settle(&mut detail.summary, &before, &after);
        }
        if detail.summary.status == RunStatus::Interrupted {
            // Nothing runs in an interrupted run: its unfinished tasks wait for `resume`.
            for t in &mut detail.tasks {
                if t.status == TaskStatus::Running {
                    t.status = TaskStatus::Pending;
                    t.error = Some(format!(
                        "interrupted before it finished; `dpplan resume {id}` continues it"
                    ));
                }
            }
        }
        Ok(detail)
    }

    fn stored_run(&self, id: RunId) -> Result<String, StoreError> {
        read::stored_run(&self.db, id)
    }

    fn log(&self, id: RunId, task: Option<u32>) -> Result<Vec<LogLine>, StoreError> {
        read::log(&self.db, id, task)
    }

    fn latest_unfinished(&self) -> Result<Option<RunId>, StoreError> {
        read::latest_unfinished(&self.db)
    }
}
