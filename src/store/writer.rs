//! The one thread that writes the state file, with group commit.
//!
//! Callers send requests over a channel and wait on a oneshot. The writer takes every request
//! queued, applies them all in one write transaction with `Durability::Immediate`, commits
//! (one fsync for the lot), and only then answers each waiter. So concurrent appends share
//! fsyncs, and no append is answered before its own records are durable.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use ::redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::outbox::Settlement;
use super::outbox::StoredEntry;
use super::schema::{
    db, decode, encode, run_range_u64, RunHeader, RunText, ACTIVITIES, JOURNAL, META, OUTBOX,
    OUTBOX_NEXT_KEY, PLAN_RUNS, RUNS, RUN_GRAPH, RUN_TEXT, TASKS, TASK_STATE, UNFINISHED,
};
use super::types::{NewRun, Record, RunId, StoreError, TaskStatus};

/// How many requests one commit takes at most, so one commit's latency stays bounded.
const MAX_BATCH: usize = 8192;

/// A batch of fewer requests than this waits up to [`LINGER`] for more before it commits
/// (as PostgreSQL's `commit_delay`). When tasks wait on appliances, appends trickle in and
/// would each pay a commit's fixed cost (about 0.3 ms of CPU here); lingering shares it: the
/// HTTP engine benchmark makes a quarter of the commits and spends less CPU. A batch this
/// large already shares it well and commits at once, so a busy journal never waits.
const LINGER_BELOW: usize = 64;

/// The longest a small batch waits: small beside an appliance's answer (tens of ms).
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// A request to the writer.
pub(super) enum Request {
    /// Create a run; answered with its id.
    Create {
        run: Box<NewRun>,
        reply: oneshot::Sender<Result<RunId, StoreError>>,
    },
    /// Append records to a run's journal, and queue outbox entries with them.
    Append {
        run: RunId,
        records: Vec<Record>,
        /// `records`, each encoded (by the caller, off the writer's thread).
        encoded: Vec<Vec<u8>>,
        /// Outbox entries of the run (encoded `StoredEntry`s), queued in the same commit.
        outbox: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Record an attempt to deliver an outbox entry, with lines for its run's log.
    Settle {
        id: u64,
        settlement: Settlement,
        log: Vec<Record>,
        /// `log`, each encoded.
        encoded: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    /// Delete finished runs whole (journal retention); answered with how many went.
    Forget {
        runs: Vec<RunId>,
        reply: oneshot::Sender<Result<usize, StoreError>>,
    },
}

/// The writer thread's state.
pub(super) struct Writer {
    pub db: Arc<Database>,
    pub rx: Receiver<Request>,
    pub group_commit: Arc<AtomicBool>,
    pub commits: Arc<AtomicU64>,
    /// The last journal seq of each run written since the thread started.
    pub last_seq: HashMap<RunId, u64>,
}

/// What one request got, before the commit decides whether it stands.
enum Applied {
    Created(RunId),
    Appended,
    /// Whether the outbox entry was there to settle.
    Settled(bool),
    /// How many runs were deleted.
    Forgot(usize),
    Refused(StoreError),
}

/// The tables one write transaction touches.
struct Tables<'t> {
    runs: Table<'t, u64, &'static [u8]>,
    run_text: Table<'t, u64, &'static [u8]>,
    run_graph: Table<'t, u64, &'static [u8]>,
    activities: Table<'t, (u64, u32), &'static [u8]>,
    tasks: Table<'t, (u64, u32), &'static [u8]>,
    task_state: Table<'t, (u64, u32), &'static [u8]>,
    journal: Table<'t, (u64, u64), &'static [u8]>,
    unfinished: Table<'t, u64, ()>,
    plan_runs: Table<'t, (&'static str, u64), ()>,
    outbox: Table<'t, u64, &'static [u8]>,
    meta: Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            runs: txn.open_table(RUNS).map_err(db)?,
            run_text: txn.open_table(RUN_TEXT).map_err(db)?,
            run_graph: txn.open_table(RUN_GRAPH).map_err(db)?,
            activities: txn.open_table(ACTIVITIES).map_err(db)?,
            tasks: txn.open_table(TASKS).map_err(db)?,
            task_state: txn.open_table(TASK_STATE).map_err(db)?,
            journal: txn.open_table(JOURNAL).map_err(db)?,
            unfinished: txn.open_table(UNFINISHED).map_err(db)?,
            plan_runs: txn.open_table(PLAN_RUNS).map_err(db)?,
            outbox: txn.open_table(OUTBOX).map_err(db)?,
            meta: txn.open_table(META).map_err(db)?,
        })
    }
}

impl Writer {
    /// Serves requests until every sender is gone.
    pub fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            if self.group_commit.load(Ordering::Relaxed) {
                while batch.len() < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                // A small batch waits a moment for company (see LINGER).
                let deadline = std::time::Instant::now() + LINGER;
                while batch.len() < LINGER_BELOW {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
            }
            self.commit(batch);
        }
    }

    /// Writes a batch in one transaction, commits, then answers every request.
    fn commit(&mut self, batch: Vec<Request>) {
        let outcome = self.write(&batch);
        if outcome.is_err() {
            // The transaction did not commit: the cached seqs may be ahead of the file.
            self.last_seq.clear();
        }
        match outcome {
            Ok(applied) => {
                for (request, applied) in batch.into_iter().zip(applied) {
                    answer(request, Ok(applied));
                }
            }
            Err(e) => {
                // The first request gets the cause itself; the others its text (the cause
                // is not `Clone`): the commit failed for all of them alike.
                let message: std::sync::Arc<str> = match &e {
                    StoreError::Batch(m) => m.clone(),
                    other => other.to_string().trim_start_matches("state file: ").into(),
                };
                let mut cause = Some(e);
                for request in batch {
                    let err = cause
                        .take()
                        .unwrap_or_else(|| StoreError::Batch(message.clone()));
                    answer(request, Err(err));
                }
            }
        }
    }

    fn write(&mut self, batch: &[Request]) -> Result<Vec<Applied>, StoreError> {
        let mut txn = self.db.begin_write().map_err(db)?;
        txn.set_durability(Durability::Immediate).map_err(db)?;
        let mut applied = Vec::with_capacity(batch.len());
        {
            let mut tables = Tables::open(&txn)?;
            // Headers read or changed by this batch; the changed ones are written once at the
            // end (most appends change none: only task and run records move the counts).
            let mut headers: HashMap<RunId, (RunHeader, bool)> = HashMap::new();
            for request in batch {
                applied.push(match request {
                    Request::Create { run, .. } => {
                        let (id, header) = create(&mut tables, run)?;
                        headers.insert(id, (header, false));
                        Applied::Created(id)
                    }
                    Request::Append {
                        run,
                        records,
                        encoded,
                        outbox,
                        ..
                    } => {
                        let applied =
                            self.append_one(&mut tables, &mut headers, *run, records, encoded)?;
                        if matches!(applied, Applied::Appended) {
                            queue(&mut tables, outbox)?;
                        }
                        applied
                    }
                    Request::Settle {
                        id,
                        settlement,
                        log,
                        encoded,
                        ..
                    } => {
                        self.settle_one(&mut tables, &mut headers, *id, settlement, log, encoded)?
                    }
                    Request::Forget { runs, .. } => {
                        let mut n = 0;
                        for run in runs {
                            headers.remove(run);
                            self.last_seq.remove(run);
                            n += usize::from(forget(&mut tables, *run)?);
                        }
                        Applied::Forgot(n)
                    }
                });
            }
            for (id, (header, _)) in headers.iter().filter(|(_, (_, dirty))| *dirty) {
                tables
                    .runs
                    .insert(*id, encode(header)?.as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(applied)
    }

    /// Appends one request's records, or refuses it whole (no such run).
    fn append_one(
        &mut self,
        tables: &mut Tables<'_>,
        headers: &mut HashMap<RunId, (RunHeader, bool)>,
        run: RunId,
        records: &[Record],
        encoded: &[Vec<u8>],
    ) -> Result<Applied, StoreError> {
        let (header, dirty) = match headers.entry(run) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let stored = tables.runs.get(run).map_err(db)?;
                match stored {
                    Some(bytes) => e.insert((decode(bytes.value(), "run header")?, false)),
                    None => return Ok(Applied::Refused(StoreError::NoRun(run))),
                }
            }
        };
        *dirty |= records
            .iter()
            .any(|r| matches!(r, Record::Task { .. } | Record::Run { .. }));
        let last = match self.last_seq.get(&run) {
            Some(&last) => last,
            None => last_seq(tables, run)?,
        };
        let last = append(tables, header, run, last, records, encoded)?;
        self.last_seq.insert(run, last);
        Ok(Applied::Appended)
    }
}

impl Writer {
    /// Settles one outbox entry and appends its log lines to its run (left out when the run is
    /// gone); `Settled(false)` when the entry is gone.
    fn settle_one(
        &mut self,
        tables: &mut Tables<'_>,
        headers: &mut HashMap<RunId, (RunHeader, bool)>,
        id: u64,
        settlement: &Settlement,
        log: &[Record],
        encoded: &[Vec<u8>],
    ) -> Result<Applied, StoreError> {
        let stored: StoredEntry = match tables.outbox.get(id).map_err(db)? {
            Some(bytes) => decode(bytes.value(), "outbox entry")?,
            None => return Ok(Applied::Settled(false)),
        };
        let run = stored.run;
        match stored.settle(settlement) {
            Some(next) => {
                tables
                    .outbox
                    .insert(id, encode(&next)?.as_slice())
                    .map_err(db)?;
            }
            None => {
                tables.outbox.remove(id).map_err(db)?;
            }
        }
        if !log.is_empty() {
            // A run that is gone (pruned) keeps no log: the entry is settled all the same.
            self.append_one(tables, headers, run, log, encoded)?;
        }
        Ok(Applied::Settled(true))
    }
}

/// Queues encoded outbox entries, numbering them from the file's counter.
fn queue(tables: &mut Tables<'_>, entries: &[Vec<u8>]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let stored = tables
        .meta
        .get(OUTBOX_NEXT_KEY)
        .map_err(db)?
        .map(|v| v.value());
    let mut next = match stored {
        Some(n) => n,
        None => match tables.outbox.last().map_err(db)? {
            Some((key, _)) => key.value().saturating_add(1),
            None => 1,
        },
    };
    for bytes in entries {
        tables.outbox.insert(next, bytes.as_slice()).map_err(db)?;
        next = next.saturating_add(1);
    }
    tables.meta.insert(OUTBOX_NEXT_KEY, next).map_err(db)?;
    Ok(())
}

fn answer(request: Request, applied: Result<Applied, StoreError>) {
    // A waiter that went away (its future dropped) needs no answer.
    match request {
        Request::Create { reply, .. } => {
            let _ = reply.send(match applied {
                Ok(Applied::Created(id)) => Ok(id),
                Ok(Applied::Refused(e)) | Err(e) => Err(e),
                Ok(_) => Err(mismatched()),
            });
        }
        Request::Append { reply, .. } => {
            let _ = reply.send(match applied {
                Ok(Applied::Appended) => Ok(()),
                Ok(Applied::Refused(e)) | Err(e) => Err(e),
                Ok(_) => Err(mismatched()),
            });
        }
        Request::Settle { reply, .. } => {
            let _ = reply.send(match applied {
                Ok(Applied::Settled(found)) => Ok(found),
                Ok(Applied::Refused(e)) | Err(e) => Err(e),
                Ok(_) => Err(mismatched()),
            });
        }
        Request::Forget { reply, .. } => {
            let _ = reply.send(match applied {
                Ok(Applied::Forgot(n)) => Ok(n),
                Ok(Applied::Refused(e)) | Err(e) => Err(e),
                Ok(_) => Err(mismatched()),
            });
        }
    }
}

/// Deletes run `run` whole: its header, texts, activities, tasks, journal, index entry and
/// outbox entries. Refuses (false) a run that is not finished, or not there.
fn forget(tables: &mut Tables<'_>, run: RunId) -> Result<bool, StoreError> {
    if tables.unfinished.get(run).map_err(db)?.is_some() {
        return Ok(false);
    }
    let header: RunHeader = match tables.runs.get(run).map_err(db)? {
        Some(bytes) => decode(bytes.value(), "run header")?,
        None => return Ok(false),
    };
    if !header.status.is_final() {
        return Ok(false);
    }
    tables.runs.remove(run).map_err(db)?;
    tables.run_text.remove(run).map_err(db)?;
    tables.run_graph.remove(run).map_err(db)?;
    let all = (run, 0u32)..=(run, u32::MAX);
    tables
        .activities
        .retain_in(all.clone(), |_, _| false)
        .map_err(db)?;
    tables
        .tasks
        .retain_in(all.clone(), |_, _| false)
        .map_err(db)?;
    tables.task_state.retain_in(all, |_, _| false).map_err(db)?;
    tables
        .journal
        .retain_in(run_range_u64(run), |_, _| false)
        .map_err(db)?;
    tables
        .plan_runs
        .remove((header.plan.as_str(), run))
        .map_err(db)?;
    // Whatever of it the outbox still holds goes with it (an entry names its run).
    tables
        .outbox
        .retain(|_, v| decode::<StoredEntry>(v, "outbox entry").map_or(true, |e| e.run != run))
        .map_err(db)?;
    Ok(true)
}

fn mismatched() -> StoreError {
    StoreError::Batch("internal: a reply of the wrong kind".into())
}

/// The last seq in a run's journal, 0 if it has none.
fn last_seq(tables: &Tables<'_>, run: RunId) -> Result<u64, StoreError> {
    let mut range = tables.journal.range(run_range_u64(run)).map_err(db)?;
    match range.next_back() {
        Some(entry) => {
            let (key, _) = entry.map_err(db)?;
            Ok(key.value().1)
        }
        None => Ok(0),
    }
}

/// Creates a run: header, text, activities, tasks and their initial states, indexes.
fn create(tables: &mut Tables<'_>, run: &NewRun) -> Result<(RunId, RunHeader), StoreError> {
    let id = match tables.runs.last().map_err(db)? {
        Some((key, _)) => key.value().saturating_add(1),
        None => 1,
    };
    let header = RunHeader::new(
        run.plan.clone(),
        run.started,
        run.plan_hash.clone(),
        &run.tasks,
    );
    tables
        .runs
        .insert(id, encode(&header)?.as_slice())
        .map_err(db)?;
    let text = RunText {
        plan_text: run.plan_text.clone(),
        graph: String::new(),
    };
    tables
        .run_text
        .insert(id, encode(&text)?.as_slice())
        .map_err(db)?;
    tables
        .run_graph
        .insert(id, run.graph.as_bytes())
        .map_err(db)?;
    for activity in &run.activities {
        tables
            .activities
            .insert((id, activity.id), encode(activity)?.as_slice())
            .map_err(db)?;
    }
    for task in &run.tasks {
        tables
            .tasks
            .insert((id, task.id), encode(task)?.as_slice())
            .map_err(db)?;
        tables
            .task_state
            .insert((id, task.id), encode(&task.status)?.as_slice())
            .map_err(db)?;
    }
    tables.unfinished.insert(id, ()).map_err(db)?;
    tables
        .plan_runs
        .insert((run.plan.as_str(), id), ())
        .map_err(db)?;
    Ok((id, header))
}

/// Appends records after seq `last`; keeps task states, counts and the unfinished index
/// current. Returns the new last seq.
fn append(
    tables: &mut Tables<'_>,
    header: &mut RunHeader,
    run: RunId,
    mut last: u64,
    records: &[Record],
    encoded: &[Vec<u8>],
) -> Result<u64, StoreError> {
    for (record, bytes) in records.iter().zip(encoded) {
        last = last.saturating_add(1);
        tables
            .journal
            .insert((run, last), bytes.as_slice())
            .map_err(db)?;
        match record {
            Record::Task { task, status, .. } => {
                let encoded = encode(status)?;
                let old = tables
                    .task_state
                    .insert((run, *task), encoded.as_slice())
                    .map_err(db)?;
                let old: Option<TaskStatus> = match old {
                    Some(bytes) => Some(decode(bytes.value(), "task state")?),
                    None => None,
                };
                header.recount(old, *status);
            }
            Record::Run { status, error, at } => {
                header.status = *status;
                header.error.clone_from(error);
                if status.is_final() {
                    header.finished = Some(*at);
                    tables.unfinished.remove(run).map_err(db)?;
                } else {
                    header.finished = None;
                    tables.unfinished.insert(run, ()).map_err(db)?;
                }
            }
            _ => {}
        }
    }
    Ok(last)
}
