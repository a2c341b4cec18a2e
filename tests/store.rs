//! The redb state file: what the engine appends survives a reopen in order, group commit
//! shares fsyncs without answering early, the folded task and step states are what `resume`
//! and the reports need, and a file that is in use, newer or damaged gives a typed error
//! rather than a hang or a panic. A reader (`ReadOnlyStore`) follows the writer's commits
//! beside it, writes nothing but the recovery of a file a killed writer left, and shows a run
//! whose process is gone as INTERRUPTED.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::records;
use chrono::{DateTime, TimeZone, Utc};
use dpplan::store::Record;
use dpplan::store::{
    ActivityRecord, FileRecord, History, Journal, NewOutboxEntry, NewRun, OutboxStore,
    ReadOnlyStore, RedbStore, RunId, RunStatus, Settlement, StepOutcome, StoreError, TaskRecord,
    TaskStatus, SCHEMA_VERSION,
};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_790_000_000 + secs, 0).unwrap()
}

fn task(id: u32, action: &str, device: &str, domain: &str) -> TaskRecord {
    TaskRecord {
        id,
        activity: if action == "EXPORT_DOMAIN" { 2 } else { 1 },
        action: action.into(),
        device: device.into(),
        domain: domain.into(),
        status: TaskStatus::Pending,
        reason: None,
    }
}

fn new_run(plan: &str, tasks: Vec<TaskRecord>) -> NewRun {
    NewRun {
        plan: plan.into(),
        started: at(0),
        plan_text: format!("plan \"{plan}\" {{}}"),
        plan_hash: "ab".repeat(32),
        graph: "{\"nodes\":[]}".into(),
        activities: vec![
            ActivityRecord {
                id: 1,
                kind: "secure_backup".into(),
                label: None,
                action: "SECURE_BACKUP".into(),
                device_pattern: "QA*".into(),
                domain_pattern: "all-domains".into(),
            },
            ActivityRecord {
                id: 2,
                kind: "export_domain".into(),
                label: Some("test-domains".into()),
                action: "EXPORT_DOMAIN".into(),
                device_pattern: "TEST8, TEST9".into(),
                domain_pattern: "DOMAIN*".into(),
            },
        ],
        tasks,
    }
}

fn task_status(task: u32, status: TaskStatus, secs: i64) -> Record {
    records::task(task, status, None, at(secs))
}

fn intent(task: u32, step: &str, attempt: u32, secs: i64) -> Record {
    records::intent(task, step, attempt, at(secs))
}

fn result(task: u32, step: &str, outcome: StepOutcome, error: Option<&str>, secs: i64) -> Record {
    records::result(task, step, 1, outcome, error, at(secs))
}

fn run_status(status: RunStatus, secs: i64) -> Record {
    records::run(status, None, at(secs))
}

fn final_status(t: u32) -> TaskStatus {
    match t % 4 {
        0 => TaskStatus::Succeeded,
        1 => TaskStatus::Warning,
        2 => TaskStatus::Failed,
        _ => TaskStatus::Skipped,
    }
}

/// 64 tokio tasks append 50 records each, one append per record; after a reopen every
/// record is there, in each task's order, and the folded states and counts are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("dpplan.redb");
    let tasks = (1..=64)
        .map(|t| task(t, "SECURE_BACKUP", &format!("GW{t}"), "all-domains"))
        .collect();
    let store = Arc::new(RedbStore::open(&path).unwrap());
    let id = store.create_run(new_run("nightly", tasks)).await.unwrap();
    let mut handles = Vec::new();
    for t in 1..=64u32 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut records = vec![task_status(t, TaskStatus::Running, 1)];
            for k in 0..16 {
                let step = format!("s{k}");
                let secs = 10 + i64::from(k) * 3;
                records.push(intent(t, &step, 1, secs));
                records.push(Record::Log {
                    task: Some(t),
                    step: Some(step.clone()),
                    at: at(secs + 1),
                    message: format!("{t}:{k}"),
                });
                records.push(result(t, &step, StepOutcome::Succeeded, None, secs + 2));
            }
            records.push(task_status(t, final_status(t), 100));
            assert_eq!(records.len(), 50);
            for record in records {
                store.append(id, vec![record]).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let appends = 1 + 64 * 50;
    let commits = store.commits();
    assert!(commits < appends, "{commits} commits for {appends} appends");
    drop(store);

    let store = RedbStore::open(&path).unwrap();
    let detail = store.run(id).unwrap();
    assert_eq!(detail.tasks.len(), 64);
    for state in &detail.tasks {
        let t = state.task.id;
        assert_eq!(state.status, final_status(t), "task {t}");
        assert_eq!(state.started, Some(at(1)));
        assert_eq!(state.finished, Some(at(100)));
        let names: Vec<String> = state.steps.iter().map(|s| s.name.clone()).collect();
        let expected: Vec<String> = (0..16).map(|k| format!("s{k}")).collect();
        assert_eq!(names, expected, "task {t}");
        for (k, step) in (0i64..).zip(&state.steps) {
            assert_eq!(step.attempts, 1);
            assert!(!step.in_flight);
            assert_eq!(step.outcome, Some(StepOutcome::Succeeded));
            assert_eq!(step.started, Some(at(10 + k * 3)));
            assert_eq!(step.finished, Some(at(12 + k * 3)));
        }
        let log = store.log(id, Some(t)).unwrap();
        // The test's own log records, without the lines the log derives from transitions.
        let messages: Vec<String> = log
            .into_iter()
            .map(|l| l.message)
            .filter(|m| !m.contains(' '))
            .collect();
        let expected: Vec<String> = (0..16).map(|k| format!("{t}:{k}")).collect();
        assert_eq!(messages, expected, "task {t}'s records out of order");
    }
    let own = store
        .log(id, None)
        .unwrap()
        .into_iter()
        .filter(|l| !l.message.contains(' '))
        .count();
    assert_eq!(own, 64 * 16);
    let s = &detail.summary;
    assert_eq!((s.succeeded, s.failed, s.skipped), (32, 16, 16));
    assert_eq!((s.devices, s.domains), (64, 0));
    // Appends after a reopen continue the journal rather than overwrite it.
    store
        .append(
            id,
            vec![Record::Log {
                task: Some(1),
                step: None,
                at: at(200),
                message: "after reopen".into(),
            }],
        )
        .await
        .unwrap();
    let log = store.log(id, Some(1)).unwrap();
    assert_eq!(log.iter().filter(|l| !l.message.contains(' ')).count(), 16);
    assert_eq!(log.last().unwrap().message, "after reopen");
}

/// Intents, results, retries, files and facts fold into the step and task states `resume`
/// reads; an intent without a result is in flight.
#[tokio::test]
async fn journal_folds_into_task_and_step_states() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    let mut skipped = task(2, "EXPORT_DOMAIN", "TEST9", "DOMAIN*");
    skipped.status = TaskStatus::Skipped;
    skipped.reason = Some("device not available".into());
    let tasks = vec![task(1, "EXPORT_DOMAIN", "TEST8", "DOMAIN1"), skipped];
    let id = store.create_run(new_run("nightly", tasks)).await.unwrap();
    let file = FileRecord {
        path: "TEST8/domain/DOMAIN1/x.zip".into(),
        size: 42,
        sha256: "00".repeat(32),
    };
    store
        .append(
            id,
            vec![
                run_status(RunStatus::Running, 1),
                task_status(1, TaskStatus::Running, 2),
                intent(1, "validate", 1, 3),
                result(1, "validate", StepOutcome::Succeeded, None, 4),
                intent(1, "export", 1, 5),
                result(1, "export", StepOutcome::Failed, Some("HTTP 500"), 6),
                intent(1, "export", 2, 7),
                Record::File {
                    task: 1,
                    file: file.clone(),
                },
                Record::Facts {
                    task: 1,
                    facts: vec![("firmware".into(), "10.6.0.0".into())],
                },
                // A record for a task the run does not have is kept but ignored by the fold.
                task_status(99, TaskStatus::Running, 8),
            ],
        )
        .await
        .unwrap();
    drop(store);

    let store = RedbStore::open(&path).unwrap();
    let detail = store.run(id).unwrap();
    assert_eq!(detail.plan_text, "plan \"nightly\" {}");
    assert_eq!(store.stored_run(id).unwrap(), "{\"nodes\":[]}");
    assert_eq!(detail.plan_hash, "ab".repeat(32));
    assert_eq!(detail.activities.len(), 2);
    assert_eq!(detail.summary.status, RunStatus::Running);
    assert_eq!((detail.summary.devices, detail.summary.domains), (2, 2));
    let t1 = &detail.tasks[0];
    assert_eq!(t1.status, TaskStatus::Running);
    assert_eq!((t1.started, t1.finished), (Some(at(2)), None));
    assert_eq!(t1.steps.len(), 2);
    let export = &t1.steps[1];
    assert_eq!(export.name, "export");
    assert_eq!(export.attempts, 2);
    assert!(export.in_flight);
    assert_eq!(export.outcome, Some(StepOutcome::Failed));
    assert_eq!(export.error.as_deref(), Some("HTTP 500"));
    assert_eq!(
        (export.started, export.finished),
        (Some(at(5)), Some(at(6)))
    );
    assert!(!t1.steps[0].in_flight);
    assert_eq!(t1.files, vec![file]);
    assert_eq!(t1.facts[0].1, "10.6.0.0");
    let t2 = &detail.tasks[1];
    assert_eq!(t2.status, TaskStatus::Skipped);
    assert_eq!(t2.error.as_deref(), Some("device not available"));
    assert_eq!(detail.summary.skipped, 1);

    store
        .append(
            id,
            vec![
                result(1, "export", StepOutcome::Succeeded, None, 9),
                task_status(1, TaskStatus::Succeeded, 10),
                run_status(RunStatus::Warning, 11),
            ],
        )
        .await
        .unwrap();
    let detail = store.run(id).unwrap();
    let export = &detail.tasks[0].steps[1];
    assert!(!export.in_flight);
    assert_eq!(export.outcome, Some(StepOutcome::Succeeded));
    assert_eq!(export.error, None);
    assert_eq!(detail.tasks[0].finished, Some(at(10)));
    let s = &detail.summary;
    assert_eq!((s.status, s.finished), (RunStatus::Warning, Some(at(11))));
    assert_eq!((s.succeeded, s.failed, s.skipped), (1, 0, 1));
}

/// `runs` is newest first, filtered by plan, limited; counts follow Task records.
#[tokio::test]
async fn runs_newest_first_filtered_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    let tasks = vec![
        task(1, "SECURE_BACKUP", "QA1", "all-domains"),
        task(2, "SECURE_BACKUP", "QA2", "all-domains"),
        task(3, "EXPORT_DOMAIN", "TEST8", "DOMAIN1"),
        task(4, "EXPORT_DOMAIN", "TEST8", "DOMAIN2"),
        task(5, "EXPORT_DOMAIN", "TEST8", "DOMAIN2"),
    ];
    let mut ids = Vec::new();
    for i in 0..5 {
        let plan = if i % 2 == 0 { "a" } else { "b" };
        ids.push(
            store
                .create_run(new_run(plan, tasks.clone()))
                .await
                .unwrap(),
        );
    }
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    let all: Vec<u64> = store.runs(None, 40).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(all, vec![5, 4, 3, 2, 1]);
    let a: Vec<u64> = store
        .runs(Some("a"), 2)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(a, vec![5, 3]);
    let b: Vec<u64> = store
        .runs(Some("b"), 40)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(b, vec![4, 2]);
    assert!(store.runs(Some("c"), 40).unwrap().is_empty());
    assert!(store.runs(None, 0).unwrap().is_empty());

    store
        .append(
            3,
            vec![
                task_status(1, TaskStatus::Running, 1),
                task_status(1, TaskStatus::Succeeded, 2),
                task_status(2, TaskStatus::RolledBack, 3),
                task_status(3, TaskStatus::Warning, 4),
                task_status(4, TaskStatus::Skipped, 5),
                task_status(5, TaskStatus::Cancelled, 6),
                Record::Run {
                    status: RunStatus::Failed,
                    error: Some("2 tasks failed".into()),
                    at: at(7),
                },
            ],
        )
        .await
        .unwrap();
    let r = &store.runs(Some("a"), 40).unwrap()[1];
    assert_eq!(r.id, 3);
    assert_eq!((r.devices, r.domains), (3, 2));
    assert_eq!((r.succeeded, r.failed, r.skipped), (2, 2, 1));
    assert_eq!(r.status, RunStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("2 tasks failed"));
    assert_eq!(r.finished, Some(at(7)));
    let untouched = &store.runs(None, 1).unwrap()[0];
    assert_eq!(untouched.status, RunStatus::WaitingForPreValidation);
    assert_eq!((untouched.succeeded, untouched.failed), (0, 0));

    assert!(matches!(store.run(9), Err(StoreError::NoRun(9))));
    assert!(matches!(store.log(9, None), Err(StoreError::NoRun(9))));
    let refused = store
        .append(9, vec![run_status(RunStatus::Running, 1)])
        .await;
    assert!(matches!(refused, Err(StoreError::NoRun(9))));
}

/// `runs_with_status` (serve's `?status=`) gives what `runs` gives filtered by status, newest
/// first and limited, with and without a plan, though it stops reading at the limit.
#[tokio::test]
async fn runs_with_status_is_runs_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(&dir.path().join("state.redb")).unwrap();
    let statuses = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Completed,
        RunStatus::Warning,
        RunStatus::Failed,
        RunStatus::Missed,
    ];
    for i in 0..40u32 {
        let plan = ["a", "b", "c"][i as usize % 3];
        let id = store
            .create_run(new_run(
                plan,
                vec![task(1, "SECURE_BACKUP", "QA1", "all-domains")],
            ))
            .await
            .unwrap();
        // Every seventh run stays as created (WAITING_FOR_PRE_VALIDATION).
        if i % 7 != 6 {
            let status = statuses[(i as usize * 5) % statuses.len()];
            store
                .append(id, vec![run_status(status, i64::from(i))])
                .await
                .unwrap();
        }
    }
    for plan in [None, Some("a"), Some("b"), Some("c"), Some("none")] {
        for status in statuses
            .iter()
            .copied()
            .chain([RunStatus::WaitingForPreValidation, RunStatus::Cancelled])
        {
            for limit in [0, 1, 2, 3, 40, usize::MAX] {
                let want: Vec<_> = store
                    .runs(plan, usize::MAX)
                    .unwrap()
                    .into_iter()
                    .filter(|r| r.status == status)
                    .take(limit)
                    .collect();
                let got = store.runs_with_status(plan, status, limit).unwrap();
                assert_eq!(got, want, "{plan:?} {status:?} {limit}");
            }
        }
    }
    assert_eq!(
        store
            .runs_with_status(None, RunStatus::Failed, 40)
            .unwrap()
            .len(),
        12
    );
}

/// The newest run whose status is not final, kept by an index across status changes.
#[tokio::test]
async fn latest_unfinished_follows_run_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), None);
    let r1 = store.create_run(new_run("a", Vec::new())).await.unwrap();
    let r2 = store.create_run(new_run("a", Vec::new())).await.unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(r2));
    store
        .append(r2, vec![run_status(RunStatus::Completed, 1)])
        .await
        .unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(r1));
    store
        .append(r2, vec![run_status(RunStatus::Interrupted, 2)])
        .await
        .unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(r2));
    store
        .append(r2, vec![run_status(RunStatus::Stopped, 3)])
        .await
        .unwrap();
    store
        .append(r1, vec![run_status(RunStatus::Running, 4)])
        .await
        .unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(r1));
    store
        .append(r1, vec![run_status(RunStatus::OutsideWindow, 5)])
        .await
        .unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), None);
}

/// A second open of a file that is open gives `Locked` at once, not a hang.
#[test]
fn a_file_in_use_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let first = RedbStore::open(&path).unwrap();
    let start = Instant::now();
    let second = RedbStore::open(&path);
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(first);
    RedbStore::open(&path).unwrap();
}

/// A file written by a newer schema is refused, and left as it was.
#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    drop(RedbStore::open(&path).unwrap());
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", u64::from(SCHEMA_VERSION) + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    match RedbStore::open(&path) {
        Err(StoreError::Version {
            found, supported, ..
        }) => assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION)),
        other => panic!("{other:?}"),
    }
}

/// A file that is not a state file, and a corrupt value inside one, are `Db` errors.
#[tokio::test]
async fn damage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, "not a database\n".repeat(1000)).unwrap();
    assert!(matches!(
        RedbStore::open(&junk),
        Err(StoreError::Open { .. })
    ));

    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    let id = store
        .create_run(new_run(
            "a",
            vec![task(1, "SECURE_BACKUP", "QA1", "all-domains")],
        ))
        .await
        .unwrap();
    store
        .append(id, vec![task_status(1, TaskStatus::Running, 1)])
        .await
        .unwrap();
    drop(store);
    let journal: redb::TableDefinition<(u64, u64), &[u8]> = redb::TableDefinition::new("journal");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(journal)
            .unwrap()
            .insert((id, 1), b"{not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert!(matches!(store.run(id), Err(StoreError::Corrupt { .. })));
    assert!(matches!(
        store.log(id, None),
        Err(StoreError::Corrupt { .. })
    ));
    // The decoder's own error is reachable as the cause.
    let e = store.run(id).unwrap_err();
    assert!(std::error::Error::source(&e).is_some_and(|c| c.is::<serde_json::Error>()));
    assert_eq!(store.runs(None, 40).unwrap().len(), 1);
}

/// Concurrent appends share commits; with group commit off, each append is one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_batches_concurrent_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap());
    let id = store.create_run(new_run("a", Vec::new())).await.unwrap();

    let round = |store: Arc<RedbStore>| async move {
        let before = store.commits();
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let mut handles = Vec::new();
        for t in 0..64 {
            let store = Arc::clone(&store);
            let barrier = Arc::clone(&barrier);
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(id, vec![task_status(t, TaskStatus::Running, 1)])
                    .await
                    .unwrap();
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        store.commits() - before
    };

    let grouped = round(Arc::clone(&store)).await;
    assert!(
        grouped <= 16,
        "64 concurrent appends took {grouped} commits"
    );
    store.set_group_commit(false);
    let alone = round(Arc::clone(&store)).await;
    assert_eq!(alone, 64);
}

/// What the version 1 fixture holds: one run of two tasks, part way through.
async fn write_v1_fixture(store: &RedbStore) {
    let mut skipped = task(2, "EXPORT_DOMAIN", "TEST9", "DOMAIN*");
    skipped.status = TaskStatus::Skipped;
    skipped.reason = Some("device not available".into());
    let tasks = vec![task(1, "SECURE_BACKUP", "QA1", "all-domains"), skipped];
    let id = store.create_run(new_run("nightly", tasks)).await.unwrap();
    store
        .append(
            id,
            vec![
                run_status(RunStatus::Running, 1),
                task_status(1, TaskStatus::Running, 2),
                intent(1, "validate", 1, 3),
                result(1, "validate", StepOutcome::Succeeded, None, 4),
                intent(1, "quiesce", 1, 5),
                Record::Log {
                    task: Some(1),
                    step: Some("quiesce".into()),
                    at: at(6),
                    message: "QuiesceDP sent".into(),
                },
            ],
        )
        .await
        .unwrap();
}

/// A state file written by schema version 1 (tests/fixtures/store/v1.redb, rewritten with
/// DPPLAN_BLESS=1) still opens and reads the same. When the schema changes, keep this file
/// and this test: they are what guards the migration.
#[tokio::test]
async fn a_version_1_file_still_opens() {
    let fixture = crate::support::root().join("tests/fixtures/store/v1.redb");
    if std::env::var_os("DPPLAN_BLESS").is_some() {
        let _ = std::fs::remove_file(&fixture);
        let store = RedbStore::open(&fixture).unwrap();
        write_v1_fixture(&store).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::copy(&fixture, &path).expect("tests/fixtures/store/v1.redb (DPPLAN_BLESS=1)");
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(1));
    let detail = store.run(1).unwrap();
    assert_eq!(detail.summary.plan, "nightly");
    assert_eq!(detail.summary.status, RunStatus::Running);
    assert_eq!((detail.summary.devices, detail.summary.domains), (2, 1));
    assert_eq!(detail.summary.skipped, 1);
    let t1 = &detail.tasks[0];
    assert_eq!(t1.status, TaskStatus::Running);
    assert_eq!(t1.steps.len(), 2);
    assert!(t1.steps[1].in_flight);
    let log = store.log(1, Some(1)).unwrap();
    assert!(log.iter().any(|l| l.message == "QuiesceDP sent"), "{log:?}");
    // Schema 1 kept the stored graph inside the run's text.
    assert_eq!(store.stored_run(1).unwrap(), "{\"nodes\":[]}");
    // Upgraded past schema 2 too: an empty outbox.
    assert!(store.outbox().unwrap().is_empty());
    // It takes new records after the old ones.
    store
        .append(
            1,
            vec![result(1, "quiesce", StepOutcome::Succeeded, None, 7)],
        )
        .await
        .unwrap();
    assert!(!store.run(1).unwrap().tasks[0].steps[1].in_flight);
}

/// The version of a state file, as its `meta` table says (the file must not be open).
fn file_version(path: &std::path::Path) -> u64 {
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let db = redb::Database::create(path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let table = txn.open_table(meta).unwrap();
    table.get("schema_version").unwrap().unwrap().value()
}

/// A state file written by schema version 2 (tests/fixtures/store/v2.redb, written by the
/// last dpplan of that schema: the version 1 fixture's unfinished run 1, then run 2 of the
/// same plan, FAILED at `at(15)` with task 1's `validate` failing "HTTP 500") still opens,
/// reads the same, is upgraded to this schema (an empty outbox) and takes new runs and
/// outbox entries. Keep this file and this test when the schema changes again.
#[tokio::test]
async fn a_version_2_file_still_opens() {
    let fixture = crate::support::root().join("tests/fixtures/store/v2.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::copy(&fixture, &path).expect("tests/fixtures/store/v2.redb");
    assert_eq!(file_version(&path), 2);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.latest_unfinished().unwrap(), Some(1));
    let runs = store.runs(Some("nightly"), 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].id, runs[0].status), (2, RunStatus::Failed));
    assert_eq!(runs[0].finished, Some(at(15)));
    assert_eq!(runs[0].failed, 1);
    let detail = store.run(2).unwrap();
    assert_eq!(detail.tasks[0].steps[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(store.stored_run(2).unwrap(), "{\"nodes\":[]}");
    assert!(store.outbox().unwrap().is_empty());
    let id = store
        .create_run(new_run(
            "nightly",
            vec![task(1, "SECURE_BACKUP", "QA3", "all-domains")],
        ))
        .await
        .unwrap();
    assert_eq!(id, 3);
    store
        .append_with_outbox(
            id,
            vec![run_status(RunStatus::Completed, 20)],
            vec![outbox_entry("hello", 20)],
        )
        .await
        .unwrap();
    drop(store);
    assert_eq!(file_version(&path), u64::from(SCHEMA_VERSION));
    let store = RedbStore::open(&path).unwrap();
    let outbox = store.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!((outbox[0].id, outbox[0].run), (1, 3));
}

fn outbox_entry(text: &str, secs: i64) -> NewOutboxEntry {
    NewOutboxEntry {
        queued: at(secs),
        message: serde_json::json!({ "text": text }),
    }
}

/// Outbox entries are queued in the commit of the records they come with (after a reopen,
/// both are there, or for a run that does not exist, neither); an attempt is settled in one
/// commit with its log line; numbers are never reused; an entry settled already is `false`.
#[tokio::test]
async fn the_outbox_is_queued_with_the_records_and_settled_with_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let store = RedbStore::open(&path).unwrap();
    let run = store
        .create_run(new_run(
            "nightly",
            vec![task(1, "SECURE_BACKUP", "QA1", "all-domains")],
        ))
        .await
        .unwrap();
    store
        .append_with_outbox(
            run,
            vec![run_status(RunStatus::Failed, 5)],
            vec![outbox_entry("a", 5), outbox_entry("b", 5)],
        )
        .await
        .unwrap();
    // No run 9: refused whole, nothing queued.
    assert!(matches!(
        store
            .append_with_outbox(
                9,
                vec![run_status(RunStatus::Failed, 5)],
                vec![outbox_entry("c", 5)]
            )
            .await,
        Err(StoreError::NoRun(9))
    ));
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.runs(None, 1).unwrap()[0].status, RunStatus::Failed);
    let outbox = store.outbox().unwrap();
    let texts: Vec<(u64, RunId, &str)> = outbox
        .iter()
        .map(|e| (e.id, e.run, e.message["text"].as_str().unwrap()))
        .collect();
    assert_eq!(texts, vec![(1, run, "a"), (2, run, "b")]);
    assert_eq!(
        (outbox[0].attempts, outbox[0].next_attempt, outbox[0].queued),
        (0, at(5), at(5))
    );

    let log = |m: &str| Record::Log {
        task: None,
        step: None,
        at: at(6),
        message: m.into(),
    };
    let retry = Settlement::Retry {
        next_attempt: at(60),
        error: "connection refused".into(),
    };
    assert!(store.settle(1, retry, vec![log("a failed")]).await.unwrap());
    assert!(store
        .settle(2, Settlement::Delivered, vec![log("b delivered")])
        .await
        .unwrap());
    assert!(!store
        .settle(2, Settlement::Delivered, vec![log("b again")])
        .await
        .unwrap());
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    let outbox = store.outbox().unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(
        (outbox[0].id, outbox[0].attempts, outbox[0].next_attempt),
        (1, 1, at(60))
    );
    assert_eq!(outbox[0].last_error.as_deref(), Some("connection refused"));
    let lines: Vec<String> = store
        .log(run, None)
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert_eq!(lines, vec!["run FAILED", "a failed", "b delivered"]);
    assert!(store
        .settle(
            1,
            Settlement::GaveUp {
                error: "still refused".into()
            },
            vec![]
        )
        .await
        .unwrap());
    assert!(store.outbox().unwrap().is_empty());
    // The next entry gets a new number, though the outbox is empty.
    store
        .append_with_outbox(run, vec![], vec![outbox_entry("d", 7)])
        .await
        .unwrap();
    assert_eq!(store.outbox().unwrap()[0].id, 3);
}

/// A reader neither upgrades nor writes a file: the version 1 fixture reads the same through
/// a `ReadOnlyStore` (its run's graph from `run_text`, as schema 1 kept it), its bytes stay as
/// they were, and its unfinished run, which no process writes, reads as INTERRUPTED.
#[test]
fn a_reader_reads_a_version_1_file_without_writing_it() {
    let fixture = crate::support::root().join("tests/fixtures/store/v1.redb");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    std::fs::copy(&fixture, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    {
        let store = ReadOnlyStore::open(&path).unwrap();
        assert!(!store.recovered());
        assert_eq!(store.latest_unfinished().unwrap(), Some(1));
        let detail = store.run(1).unwrap();
        assert_eq!(detail.summary.status, RunStatus::Interrupted);
        assert!(detail
            .summary
            .error
            .unwrap()
            .starts_with("dpplan resume 1 "));
        assert!(detail.tasks[0].steps[1].in_flight);
        assert_eq!(
            store.runs(None, 40).unwrap()[0].status,
            RunStatus::Interrupted
        );
        assert_eq!(store.stored_run(1).unwrap(), "{\"nodes\":[]}");
        let log = store.log(1, Some(1)).unwrap();
        assert!(log.iter().any(|l| l.message == "QuiesceDP sent"), "{log:?}");
        assert!(matches!(store.run(2), Err(StoreError::NoRun(2))));
    }
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the reader wrote the file"
    );
    assert!(!dpplan::store::owner::sidecar(&path).exists());
}

/// While a writer holds the file and writes a run, readers see the run as stored (RUNNING),
/// and follow its commits; once the writer is gone, it reads as INTERRUPTED.
#[tokio::test]
async fn a_reader_follows_the_writer_and_outlives_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let writer = RedbStore::open(&path).unwrap();
    let reader = ReadOnlyStore::open(&path).unwrap();
    assert!(reader.runs(None, 40).unwrap().is_empty());
    let id = writer
        .create_run(new_run(
            "a",
            vec![task(1, "SECURE_BACKUP", "QA1", "all-domains")],
        ))
        .await
        .unwrap();
    writer
        .append(id, vec![run_status(RunStatus::Running, 1)])
        .await
        .unwrap();
    let owner = match reader.holder() {
        dpplan::store::owner::Holder::Known(o) => o,
        other => panic!("{other:?}"),
    };
    assert_eq!(owner.pid, std::process::id());
    assert_eq!((owner.runs[0].id, owner.runs[0].plan.as_str()), (id, "a"));
    assert_eq!(reader.run(id).unwrap().summary.status, RunStatus::Running);
    // A second writer is refused, naming the first.
    match RedbStore::open(&path) {
        Err(StoreError::Locked { owner: Some(o), .. }) => assert_eq!(o.runs[0].id, id),
        other => panic!("{other:?}"),
    }
    drop(writer);
    assert_eq!(reader.holder(), dpplan::store::owner::Holder::Nobody);
    assert_eq!(
        reader.run(id).unwrap().summary.status,
        RunStatus::Interrupted
    );
    // A resume (a new writer appending to the run) makes it its own again.
    let resumed = RedbStore::open(&path).unwrap();
    resumed
        .append(id, vec![run_status(RunStatus::Running, 2)])
        .await
        .unwrap();
    assert_eq!(reader.runs(None, 1).unwrap()[0].status, RunStatus::Running);
}

const CRASH_CHILD: &str = "DPPLAN_STORE_CRASH_CHILD";

/// The child half of `a_killed_writer_keeps_what_it_acknowledged`: does nothing unless that
/// test runs it. Eight tokio tasks append log lines `t:k` and print `ack t k` once each
/// append has returned, until the parent kills the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_CHILD) else {
        return;
    };
    let store = Arc::new(RedbStore::open(std::path::Path::new(&path)).unwrap());
    let tasks = (1..=8)
        .map(|t| task(t, "SECURE_BACKUP", &format!("GW{t}"), "all-domains"))
        .collect();
    let id = store.create_run(new_run("crash", tasks)).await.unwrap();
    let mut handles = Vec::new();
    for t in 1..=8u32 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for k in 0..100_000u32 {
                let line = Record::Log {
                    task: Some(t),
                    step: None,
                    at: at(i64::from(k)),
                    message: format!("{t}:{k}"),
                };
                store.append(id, vec![line]).await.unwrap();
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {t} {k}").unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

/// Crash consistency: a process killed (SIGKILL) while eight tasks append concurrently leaves
/// a state file that opens cleanly, in which every append that had returned is present, and
/// each task's records form an unbroken prefix in append order. (Killing the process does not
/// drop the page cache, so this guards atomicity and recovery, not the fsync itself; the
/// fsync is redb's `Durability::Immediate`.)
#[test]
fn a_killed_writer_keeps_what_it_acknowledged() {
    use std::io::BufRead as _;
    for (round, kill_after) in [50usize, 400, 1500].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_CHILD, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut acked = [None::<u32>; 9];
        let mut seen = 0;
        let mut killed = false;
        for line in stdout.lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ack ") else {
                continue;
            };
            let (t, k) = rest.split_once(' ').unwrap();
            let (t, k): (usize, u32) = (t.parse().unwrap(), k.parse().unwrap());
            acked[t] = Some(acked[t].map_or(k, |m: u32| m.max(k)));
            seen += 1;
            if seen == kill_after && !killed {
                child.kill().unwrap();
                killed = true;
            }
        }
        child.wait().unwrap();
        assert!(
            killed,
            "round {round}: the child stopped after {seen} appends"
        );

        // A reader comes first: the killed writer left the file needing recovery, which a
        // reader does by opening it for writing once, since no writer holds it.
        let reader = ReadOnlyStore::open(&path).unwrap();
        assert!(reader.recovered(), "round {round}");
        assert_eq!(
            reader.runs(None, 1).unwrap()[0].status,
            RunStatus::Interrupted
        );
        drop(reader);
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.latest_unfinished().unwrap(), Some(1));
        for t in 1..=8u32 {
            let messages: Vec<String> = store
                .log(1, Some(t))
                .unwrap()
                .into_iter()
                .map(|l| l.message)
                .collect();
            for (k, m) in messages.iter().enumerate() {
                assert_eq!(m, &format!("{t}:{k}"), "round {round}: task {t}'s journal");
            }
            if let Some(max) = acked[t as usize] {
                assert!(
                    messages.len() > max as usize,
                    "round {round}: task {t} acknowledged {t}:{max} but has {}",
                    messages.len()
                );
            }
        }
    }
}
