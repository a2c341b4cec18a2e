//! Journal retention: the runs `keep_runs` / `keep_days` let go, so a state file stays bounded
//! over years of nightly runs. Never an unfinished run, never the newest run of a plan.

use super::redb::RedbStore;
use super::types::{History, RunId, RunSummary, StoreError};
use chrono::{DateTime, Utc};

/// The runs of one plan that retention lets go: `runs` are the plan's runs, newest first.
/// A finished run goes when it is past the `keep_runs` newest finished runs, or started more
/// than `keep_days` days before `now`; with neither set, nothing goes. The newest run and
/// unfinished runs always stay.
pub fn expired(
    runs: &[RunSummary],
    keep_runs: Option<u32>,
    keep_days: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<RunId> {
    if keep_runs.is_none() && keep_days.is_none() {
        return Vec::new();
    }
    let cutoff = keep_days.map(|d| now - chrono::Duration::days(i64::from(d)));
    let mut finished = 0u64;
    let mut out = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        if !r.status.is_final() {
            continue;
        }
        finished += 1;
        if i == 0 {
            continue;
        }
        let too_many = keep_runs.is_some_and(|k| finished > u64::from(k));
        let too_old = cutoff.is_some_and(|c| r.started < c);
        if too_many || too_old {
            out.push(r.id);
        }
    }
    out
}

/// Applies retention to plan `plan`'s runs in `store`; returns how many runs went.
pub async fn apply(
    store: &RedbStore,
    plan: &str,
    keep_runs: Option<u32>,
    keep_days: Option<u32>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    if keep_runs.is_none() && keep_days.is_none() {
        return Ok(0);
    }
    let runs = store.runs(Some(plan), usize::MAX)?;
    store
        .forget(expired(&runs, keep_runs, keep_days, now))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunStatus;

    fn run(id: RunId, days_ago: i64, status: RunStatus, now: DateTime<Utc>) -> RunSummary {
        RunSummary {
            id,
            plan: "p".into(),
            started: now - chrono::Duration::days(days_ago),
            finished: None,
            status,
            error: None,
            devices: 0,
            domains: 0,
            succeeded: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Rows of run `run` left in every per-run table of the file at `path`.
    fn rows_of(path: &std::path::Path, run: RunId) -> usize {
        use crate::store::schema::*;
        use ::redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
        let db = ::redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let all = (run, 0u32)..=(run, u32::MAX);
        let mut n = 0;
        for t in [ACTIVITIES, TASKS, TASK_STATE] {
            n += txn
                .open_table(t)
                .unwrap()
                .range(all.clone())
                .unwrap()
                .count();
        }
        n += txn
            .open_table(JOURNAL)
            .unwrap()
            .range(run_range_u64(run))
            .unwrap()
            .count();
        for t in [RUNS, RUN_TEXT, RUN_GRAPH] {
            n += usize::from(txn.open_table(t).unwrap().get(run).unwrap().is_some());
        }
        n += txn
            .open_table(PLAN_RUNS)
            .unwrap()
            .iter()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().0.value().1 == run)
            .count();
        let _ = txn.open_table(OUTBOX).unwrap().len();
        n
    }

    #[tokio::test]
    async fn a_forgotten_run_leaves_nothing_behind_and_an_unfinished_one_is_refused() {
        use crate::store::{Journal, NewRun, Record, TaskRecord, TaskStatus};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = RedbStore::open(&path).unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let id = store
                .create_run(NewRun {
                    plan: "p".into(),
                    started: Utc::now(),
                    plan_text: "plan".into(),
                    plan_hash: String::new(),
                    graph: "{}".into(),
                    activities: Vec::new(),
                    tasks: vec![TaskRecord {
                        id: 1,
                        activity: 1,
                        action: "EXPORT_DOMAIN".into(),
                        device: "d".into(),
                        domain: "x".into(),
                        status: TaskStatus::Pending,
                        reason: None,
                    }],
                })
                .await
                .unwrap();
            ids.push(id);
        }
        for &id in &ids[..2] {
            store
                .append(
                    id,
                    vec![
                        Record::Log {
                            task: Some(1),
                            step: None,
                            at: Utc::now(),
                            message: "m".into(),
                        },
                        Record::Run {
                            status: RunStatus::Completed,
                            error: None,
                            at: Utc::now(),
                        },
                    ],
                )
                .await
                .unwrap();
        }
        // Run 3 is unfinished: refused; run 1 goes whole.
        assert_eq!(store.forget(vec![ids[0], ids[2], 99]).await.unwrap(), 1);
        assert!(matches!(store.run(ids[0]), Err(StoreError::NoRun(_))));
        assert_eq!(store.runs(Some("p"), 10).unwrap().len(), 2);
        drop(store);
        assert_eq!(rows_of(&path, ids[0]), 0);
        assert!(rows_of(&path, ids[1]) > 3);
        assert!(rows_of(&path, ids[2]) > 3);
        // Numbers are not reused.
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.runs(None, 1).unwrap()[0].id, ids[2]);
    }

    #[test]
    fn retention_keeps_the_newest_and_unfinished_runs() {
        let now = Utc::now();
        use RunStatus::*;
        // Newest first.
        let runs = vec![
            run(6, 400, Failed, now), // the newest: stays however old
            run(5, 1, Interrupted, now),
            run(4, 2, Completed, now),
            run(3, 3, Completed, now),
            run(2, 100, Completed, now),
            run(1, 200, Running, now),
        ];
        assert_eq!(expired(&runs, None, None, now), Vec::<RunId>::new());
        assert_eq!(expired(&runs, Some(2), None, now), vec![3, 2]);
        assert_eq!(expired(&runs, None, Some(30), now), vec![2]);
        assert_eq!(expired(&runs, Some(3), Some(50), now), vec![2]);
        assert_eq!(expired(&runs, Some(1), None, now), vec![4, 3, 2]);
    }
}
