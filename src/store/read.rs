//! Reading the history: one copy of the [`History`](super::History) queries, for any redb
//! handle ([`RedbStore`](super::RedbStore)'s writable database and
//! [`ReadOnlyStore`](super::ReadOnlyStore)'s read-only one).
//!
//! A read-only handle never creates tables, so a table that does not exist (a schema 1 file
//! has no `run_graph`) reads as empty here.

use ::redb::{
    Key, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableError, Value,
};

use super::fold::{Fold, LogFold};
use super::outbox::OutboxEntry;
use super::outbox::StoredEntry;
use super::schema::{
    db, decode, run_range_u32, run_range_u64, RunHeader, RunText, ACTIVITIES, JOURNAL, META,
    OUTBOX, PLAN_RUNS, RUNS, RUN_GRAPH, RUN_TEXT, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TASKS,
    UNFINISHED,
};
use super::types::{
    ActivityRecord, LogLine, Record, RunDetail, RunId, RunStatus, RunSummary, StoreError,
    TaskRecord,
};
use chrono::{DateTime, Utc};

/// Refuses a file written by a newer schema.
pub(super) fn check_version(
    database: &impl ReadableDatabase,
    path: &str,
) -> Result<(), StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let Some(meta) = table(&txn, META)? else {
        return Ok(());
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

/// The number the next run created will get.
pub(super) fn next_run(database: &impl ReadableDatabase) -> Result<RunId, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let Some(runs) = table(&txn, RUNS)? else {
        return Ok(1);
    };
    let last = runs.last().map_err(db)?;
    Ok(last.map_or(1, |(key, _)| key.value().saturating_add(1)))
}

/// A table, or `None` when the file has none of that name.
fn table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(definition) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(db(e)),
    }
}

pub(super) fn summary(id: RunId, header: RunHeader) -> RunSummary {
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

/// A run's header; [`StoreError::NoRun`] when there is no such run.
fn header(txn: &ReadTransaction, id: RunId) -> Result<RunHeader, StoreError> {
    let Some(runs) = table(txn, RUNS)? else {
        return Err(StoreError::NoRun(id));
    };
    match runs.get(id).map_err(db)? {
        Some(bytes) => decode(bytes.value(), "run header"),
        None => Err(StoreError::NoRun(id)),
    }
}

/// Calls `f` with each journal record of a run, in order.
fn journal(txn: &ReadTransaction, id: RunId, mut f: impl FnMut(Record)) -> Result<(), StoreError> {
    let Some(table) = table(txn, JOURNAL)? else {
        return Ok(());
    };
    for entry in table.range(run_range_u64(id)).map_err(db)? {
        let (_, value) = entry.map_err(db)?;
        f(decode(value.value(), "journal record")?);
    }
    Ok(())
}

/// [`History::runs`](super::History::runs).
pub(super) fn runs(
    database: &impl ReadableDatabase,
    plan: Option<&str>,
    limit: usize,
) -> Result<Vec<RunSummary>, StoreError> {
    runs_where(database, plan, None, limit)
}

/// The status of a stored run header, decoded without the rest of it.
#[derive(serde::Deserialize)]
struct HeaderStatus {
    status: RunStatus,
}

/// `"status":"` in a stored run header.
static STATUS_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"status\":\""));

/// Whether a stored run header has status `status` (any status when `None`): what a status
/// filter asks of every run it passes over, so it reads the status's name without decoding
/// the header. Headers are compact JSON (`encode`), in which the bytes `"status":"` can only
/// be the header's own `status` key: a quote inside a string is escaped (`\"`), so the quote
/// after `status` ends a key, and no field of the header is an object with keys of its own.
/// A header where they are not found is decoded.
fn has_status(bytes: &[u8], status: Option<RunStatus>) -> Result<bool, StoreError> {
    let Some(status) = status else {
        return Ok(true);
    };
    if let Some(at) = STATUS_KEY.find(bytes) {
        let name = &bytes[at + STATUS_KEY.needle().len()..];
        if let Some(end) = memchr::memchr(b'"', name) {
            return Ok(&name[..end] == status.as_str().as_bytes());
        }
    }
    Ok(decode::<HeaderStatus>(bytes, "run header")?.status == status)
}

/// The newest runs, optionally of one plan and of one status (as stored: a reader that
/// settles statuses filters after it), newest first, at most `limit`. Stops reading at the
/// `limit`-th match, and decodes only the headers it returns.
pub(super) fn runs_where(
    database: &impl ReadableDatabase,
    plan: Option<&str>,
    status: Option<RunStatus>,
    limit: usize,
) -> Result<Vec<RunSummary>, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let mut out = Vec::new();
    let Some(runs) = table(&txn, RUNS)? else {
        return Ok(out);
    };
    if limit == 0 {
        return Ok(out);
    }
    match plan {
        Some(plan) => {
            let Some(index) = table(&txn, PLAN_RUNS)? else {
                return Ok(out);
            };
            for entry in index
                .range((plan, 0u64)..=(plan, u64::MAX))
                .map_err(db)?
                .rev()
            {
                let (key, _) = entry.map_err(db)?;
                let id = key.value().1;
                let Some(bytes) = runs.get(id).map_err(db)? else {
                    return Err(StoreError::NoRun(id));
                };
                if has_status(bytes.value(), status)? {
                    out.push(summary(id, decode(bytes.value(), "run header")?));
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
        None => {
            for entry in runs.iter().map_err(db)?.rev() {
                let (key, value) = entry.map_err(db)?;
                if has_status(value.value(), status)? {
                    out.push(summary(key.value(), decode(value.value(), "run header")?));
                    if out.len() == limit {
                        break;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// [`History::run`](super::History::run).
pub(super) fn run(database: &impl ReadableDatabase, id: RunId) -> Result<RunDetail, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let header = header(&txn, id)?;
    let text: RunText = match table(&txn, RUN_TEXT)? {
        Some(t) => match t.get(id).map_err(db)? {
            Some(bytes) => decode(bytes.value(), "run text")?,
            None => {
                return Err(StoreError::Incomplete {
                    run: id,
                    what: "has no plan text",
                })
            }
        },
        None => {
            return Err(StoreError::Incomplete {
                run: id,
                what: "has no plan text",
            })
        }
    };
    let mut activities: Vec<ActivityRecord> = Vec::new();
    if let Some(t) = table(&txn, ACTIVITIES)? {
        for entry in t.range(run_range_u32(id)).map_err(db)? {
            activities.push(decode(entry.map_err(db)?.1.value(), "activity")?);
        }
    }
    let mut tasks: Vec<TaskRecord> = Vec::new();
    if let Some(t) = table(&txn, TASKS)? {
        for entry in t.range(run_range_u32(id)).map_err(db)? {
            tasks.push(decode(entry.map_err(db)?.1.value(), "task")?);
        }
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

/// [`History::stored_run`](super::History::stored_run).
pub(super) fn stored_run(
    database: &impl ReadableDatabase,
    id: RunId,
) -> Result<String, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    header(&txn, id)?;
    // Schema 2 keeps it in its own table; a run written by schema 1 inside its RunText.
    if let Some(graphs) = table(&txn, RUN_GRAPH)? {
        if let Some(bytes) = graphs.get(id).map_err(db)? {
            return String::from_utf8(bytes.value().to_vec()).map_err(|_| StoreError::Incomplete {
                run: id,
                what: "has a graph that is not UTF-8",
            });
        }
    }
    let text = match table(&txn, RUN_TEXT)? {
        Some(t) => t.get(id).map_err(db)?,
        None => None,
    };
    match text {
        Some(bytes) => Ok(decode::<RunText>(bytes.value(), "run text")?.graph),
        None => Err(StoreError::Incomplete {
            run: id,
            what: "has no plan text",
        }),
    }
}

/// [`History::log`](super::History::log).
pub(super) fn log(
    database: &impl ReadableDatabase,
    id: RunId,
    task: Option<u32>,
) -> Result<Vec<LogLine>, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    header(&txn, id)?;
    let mut lines = Vec::new();
    let mut fold = LogFold::new(task);
    journal(&txn, id, |record| lines.extend(fold.line(record)))?;
    Ok(lines)
}

/// [`History::latest_unfinished`](super::History::latest_unfinished).
pub(super) fn latest_unfinished(
    database: &impl ReadableDatabase,
) -> Result<Option<RunId>, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let Some(unfinished) = table(&txn, UNFINISHED)? else {
        return Ok(None);
    };
    let last = unfinished.last().map_err(db)?;
    Ok(last.map(|(key, _)| key.value()))
}

/// [`OutboxStore::outbox`](super::OutboxStore::outbox).
pub(super) fn outbox(database: &impl ReadableDatabase) -> Result<Vec<OutboxEntry>, StoreError> {
    let txn = database.begin_read().map_err(db)?;
    let Some(table) = table(&txn, OUTBOX)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(db)? {
        let (key, value) = entry.map_err(db)?;
        let stored: StoredEntry = decode(value.value(), "outbox entry")?;
        out.push(stored.entry(key.value()));
    }
    Ok(out)
}

impl RunSummary {
    /// The summary of run `id` of `plan` with `tasks` in the statuses they have, counted as
    /// the state file counts them, at `status` (reached at `at`: `finished` for a final
    /// status).
    pub fn of_tasks(
        id: RunId,
        plan: &str,
        started: DateTime<Utc>,
        status: RunStatus,
        error: Option<String>,
        at: DateTime<Utc>,
        tasks: &[TaskRecord],
    ) -> RunSummary {
        let mut header = RunHeader::new(plan.to_string(), started, String::new(), tasks);
        header.status = status;
        header.error = error;
        header.finished = status.is_final().then_some(at);
        summary(id, header)
    }
}

#[cfg(test)]
mod tests {
    use super::{has_status, RunHeader, RunStatus};
    use crate::store::schema::encode;

    /// The quick read of a header's status agrees with decoding it, whatever the plan's name
    /// and the run's error hold.
    #[test]
    fn a_headers_status_reads_as_decoded() {
        let all = RunStatus::ALL;
        let tricky = [
            "nightly",
            "\"status\":\"FAILED\"",
            "\\\"status\\\":\\\"FAILED",
            "x\\",
            "status\":\"CANCELLED",
        ];
        for status in all {
            for text in tricky {
                let mut h = RunHeader::new(text.into(), chrono::Utc::now(), text.into(), &[]);
                h.status = status;
                h.error = Some(text.into());
                let bytes = encode(&h).unwrap();
                for wanted in all {
                    assert_eq!(
                        has_status(&bytes, Some(wanted)).unwrap(),
                        wanted == status,
                        "{} {wanted:?}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                assert!(has_status(&bytes, None).unwrap());
            }
        }
        // Not compact (not what `encode` writes): decoded.
        let spaced = br#"{"plan": "p", "status": "MISSED"}"#;
        assert!(has_status(spaced, Some(RunStatus::Missed)).unwrap());
        assert!(!has_status(spaced, Some(RunStatus::Failed)).unwrap());
    }
}
