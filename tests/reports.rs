//! The result pages and file tools through the binary, on a recorded history.
//!
//! The state file is written here with the store's own API at fixed times (no appliance), and
//! the store's files are written beside it with real sizes and checksums. Every table and
//! JSON page is compared with a golden file under tests/golden/reports/;
//! `DPPLAN_BLESS=1 cargo test reports` rewrites them (review the diff). `verify` must catch a
//! flipped byte, a truncated file, a damaged archive and a secure backup missing a file it
//! lists; `prune` must keep the newest backups, the newest successful one and those of an
//! unfinished run, and record what it removed.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use dpplan::backups::{hash_file, timestamp, Layout};
use dpplan::store::{
    ActivityRecord, FileRecord, Journal, NewRun, Record, RedbStore, RunStatus, StepOutcome,
    TaskRecord, TaskStatus,
};

use crate::support::golden::Golden;
use crate::support::records::{self, facts, log};
use crate::support::{root, Test};

/// The first run's start: 2026-09-21 14:13:20 UTC.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 21, 14, 13, 20).unwrap()
}

fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + Duration::milliseconds(ms)
}

fn activities() -> Vec<ActivityRecord> {
    vec![
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
    ]
}

fn task(id: u32, activity: u32, device: &str, domain: &str) -> TaskRecord {
    TaskRecord {
        id,
        activity,
        action: if activity == 1 {
            "SECURE_BACKUP"
        } else {
            "EXPORT_DOMAIN"
        }
        .into(),
        device: device.into(),
        domain: domain.into(),
        status: TaskStatus::Pending,
        reason: None,
    }
}

fn new_run(plan: &str, started: DateTime<Utc>, tasks: Vec<TaskRecord>) -> NewRun {
    NewRun {
        plan: plan.into(),
        started,
        plan_text: "# ==== missing.dpplan ====\n".into(),
        plan_hash: "ab".repeat(32),
        graph: "{}".into(),
        activities: activities(),
        tasks,
    }
}

fn step(task: u32, name: &str, attempt: u32, from: DateTime<Utc>, ms: i64) -> Vec<Record> {
    vec![
        records::intent(task, name, attempt, from),
        records::result(
            task,
            name,
            attempt,
            StepOutcome::Succeeded,
            None,
            at(from, ms),
        ),
    ]
}

fn status(task: u32, s: TaskStatus, error: Option<&str>, when: DateTime<Utc>) -> Record {
    records::task(task, s, error, when)
}

/// Writes `bytes` under the store and returns its manifest entry and journal record.
fn put(store: &Path, rel: &str, bytes: &[u8]) -> (serde_json::Value, FileRecord) {
    let p = store.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    let (size, sha256) = hash_file(&p).unwrap();
    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
    (
        serde_json::json!({ "path": name, "size": size, "sha256": sha256 }),
        FileRecord {
            path: rel.into(),
            size,
            sha256,
        },
    )
}

/// A small ZIP archive, the same bytes every time.
fn zip_bytes(text: &str) -> Vec<u8> {
    use std::io::Write;
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("export.xml", options).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

fn backup_manifest(files: &[(&str, &[u8])]) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut s = String::from("<?xml version=\"1.0\"?>\n<secure-backup>\n  <files>\n");
    for (name, bytes) in files {
        s.push_str(&format!(
            "    <file><filename>{name}</filename><size>{}</size><checksum>{}</checksum></file>\n",
            bytes.len(),
            hex::encode(Sha1::digest(bytes))
        ));
    }
    s.push_str("  </files>\n</secure-backup>\n");
    s.into_bytes()
}

fn manifest(
    store: &Path,
    rel: &Path,
    run: u64,
    t: &TaskRecord,
    started: DateTime<Utc>,
    files: Vec<serde_json::Value>,
) {
    let m = serde_json::json!({
        "run": run, "task": t.id, "device": t.device, "domain": t.domain, "action": t.action,
        "firmware": { "version": "IDG.10.6.0.0", "build": "356711", "machine_type": "8436",
                      "model": "52X", "serial": "78AB123" },
        "started": started, "finished": started, "files": files,
    });
    std::fs::write(store.join(rel), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

/// A secure backup of `t` for a run started at `started`: backupmanifest.xml, one archive,
/// manifest.json. Returns the journal's file records.
fn secure_backup(store: &Path, run: u64, t: &TaskRecord, started: DateTime<Utc>) -> Vec<Record> {
    let layout = Layout::secure_backup(&t.device, &timestamp(started));
    let Layout::SecureBackup { dir } = &layout else {
        unreachable!()
    };
    let dir = dir.display().to_string();
    let config = format!("config of {} in run {run}", t.device).into_bytes();
    let xml = backup_manifest(&[("config.tgz", &config)]);
    let (m1, r1) = put(store, &format!("{dir}/backupmanifest.xml"), &xml);
    let (m2, r2) = put(store, &format!("{dir}/config.tgz"), &config);
    manifest(store, &layout.manifest(), run, t, started, vec![m1, m2]);
    [r1, r2]
        .into_iter()
        .map(|file| Record::File { task: t.id, file })
        .collect()
}

/// An export of `t`: one persisted ZIP and its manifest.
fn export(store: &Path, run: u64, t: &TaskRecord, started: DateTime<Utc>) -> Vec<Record> {
    let layout = Layout::export(&t.device, &t.domain, &timestamp(started));
    let Layout::Export { dir, stem } = &layout else {
        unreachable!()
    };
    let rel = format!("{}/{stem}-persisted.zip", dir.display());
    let bytes = zip_bytes(&format!("<export domain=\"{}\" run=\"{run}\"/>", t.domain));
    let (m, r) = put(store, &rel, &bytes);
    manifest(store, &layout.manifest(), run, t, started, vec![m]);
    vec![Record::File {
        task: t.id,
        file: r,
    }]
}

/// The recorded history, in `dir`: `state.redb` and `store/`.
///
/// Run 1 (nightly, FAILED): a secure backup of QA1, an export of TEST8 DOMAIN1 that needed a
/// second attempt, a failed export of TEST9 DOMAIN1 and a skipped TEST9 DOMAIN2. Run 2
/// (weekly, COMPLETED) and run 3 (nightly, RUNNING) each back up QA1 a day apart.
fn fixture(dir: &Path) {
    let store_dir = dir.join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = RedbStore::open(&dir.join("state.redb")).unwrap();
    rt.block_on(async {
        // Run 1.
        let s = t0();
        let mut skipped = task(4, 2, "TEST9", "DOMAIN2");
        skipped.status = TaskStatus::Skipped;
        skipped.reason = Some("device TEST9 is not available: connection refused".into());
        let tasks = vec![
            task(1, 1, "QA1", "all-domains"),
            task(2, 2, "TEST8", "DOMAIN1"),
            task(3, 2, "TEST9", "DOMAIN1"),
            skipped,
        ];
        let id = store
            .create_run(new_run("nightly", s, tasks.clone()))
            .await
            .unwrap();
        let mut r = vec![
            Record::Run {
                status: RunStatus::Running,
                error: None,
                at: s,
            },
            log(None, None, at(s, 0), "run 1 of plan nightly started"),
            status(1, TaskStatus::Running, None, at(s, 100)),
            facts(1),
            log(
                Some(1),
                Some("validate"),
                at(s, 150),
                "firmware IDG.10.6.0.0",
            ),
        ];
        r.extend(step(1, "validate", 1, at(s, 120), 400));
        r.extend(step(1, "backup", 1, at(s, 600), 41_300));
        r.extend(secure_backup(&store_dir, id, &tasks[0], s));
        r.push(log(
            Some(1),
            Some("backup"),
            at(s, 41_900),
            "downloaded 2 files (1.0 KiB)",
        ));
        r.push(status(1, TaskStatus::Succeeded, None, at(s, 42_000)));
        r.push(status(2, TaskStatus::Running, None, at(s, 200)));
        r.push(facts(2));
        r.push(Record::StepIntent {
            task: 2,
            step: "export".into(),
            attempt: 1,
            at: at(s, 300),
        });
        r.push(Record::StepResult {
            task: 2,
            step: "export".into(),
            attempt: 1,
            outcome: StepOutcome::Failed,
            error: Some("connection reset by peer".into()),
            at: at(s, 2_300),
            retry: false,
        });
        r.push(log(
            Some(2),
            Some("export"),
            at(s, 2_300),
            "attempt 1 failed: connection reset by peer; retrying in 5s",
        ));
        r.extend(step(2, "export", 2, at(s, 7_300), 1_500));
        r.extend(export(&store_dir, id, &tasks[1], s));
        r.push(status(2, TaskStatus::Succeeded, None, at(s, 9_000)));
        r.push(status(3, TaskStatus::Running, None, at(s, 250)));
        r.push(Record::StepIntent {
            task: 3,
            step: "export".into(),
            attempt: 1,
            at: at(s, 350),
        });
        let err = "SOAP fault: domain DOMAIN1 is not up (op-state down)";
        r.push(Record::StepResult {
            task: 3,
            step: "export".into(),
            attempt: 1,
            outcome: StepOutcome::Failed,
            error: Some(err.into()),
            at: at(s, 1_350),
            retry: false,
        });
        r.push(status(3, TaskStatus::Failed, Some(err), at(s, 1_400)));
        r.push(log(Some(3), Some("export"), at(s, 1_400), err));
        r.push(log(None, None, at(s, 42_100), "run 1 ended FAILED"));
        r.push(Record::Run {
            status: RunStatus::Failed,
            error: Some("1 task failed".into()),
            at: at(s, 42_100),
        });
        store.append(id, r).await.unwrap();

        // Runs 2 and 3: one secure backup each, a day apart; run 3 has not finished.
        for (day, plan, done) in [(1, "weekly", true), (2, "nightly", false)] {
            let s = t0() + Duration::days(day);
            let tasks = vec![task(1, 1, "QA1", "all-domains")];
            let id = store
                .create_run(new_run(plan, s, tasks.clone()))
                .await
                .unwrap();
            let mut r = vec![
                Record::Run {
                    status: RunStatus::Running,
                    error: None,
                    at: s,
                },
                status(1, TaskStatus::Running, None, at(s, 10)),
            ];
            r.extend(step(1, "backup", 1, at(s, 20), 3_000));
            r.extend(secure_backup(&store_dir, id, &tasks[0], s));
            if done {
                r.push(status(1, TaskStatus::Succeeded, None, at(s, 3_100)));
                r.push(Record::Run {
                    status: RunStatus::Completed,
                    error: None,
                    at: at(s, 3_200),
                });
            }
            store.append(id, r).await.unwrap();
        }
    });
}

/// A fixture in a fresh directory that lives as long as the returned guard.
fn recorded() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let state = dir.path().join("state.redb");
    (dir, state)
}

/// `dpplan ARGS --state DIR/state.redb` in `dir`, in Berlin (`TZ`), output piped.
fn dpplan(dir: &Path, args: &[&str]) -> crate::support::Ran {
    let state = dir.join("state.redb").display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--state", &state]);
    Test::new()
        .cwd(dir)
        .env("TZ", "Europe/Berlin")
        .args(all)
        .run()
}

#[test]
fn every_page_matches_its_golden_file() {
    let (dir, _) = recorded();
    let golden = root().join("tests/golden/reports");
    let cases: &[(&str, &[&str])] = &[
        ("runs.txt", &["runs"]),
        ("runs.json", &["runs", "--json"]),
        (
            "runs-nightly-limit-1.txt",
            &["runs", "--plan", "nightly", "--limit", "1"],
        ),
        ("show.txt", &["show", "1"]),
        ("show.json", &["show", "1", "--json"]),
        ("show-activity.txt", &["show", "1", "--activity", "2"]),
        (
            "show-activity.json",
            &["show", "1", "--activity", "2", "--json"],
        ),
        ("show-task.txt", &["show", "1", "--task", "1"]),
        ("show-task.json", &["show", "1", "--task", "1", "--json"]),
        ("show-task-failed.txt", &["show", "1", "--task", "3"]),
        ("log.txt", &["log", "1"]),
        ("log.json", &["log", "1", "--json"]),
        ("log-task.txt", &["log", "1", "--task", "2"]),
    ];
    let mut g = Golden::new();
    for (name, args) in cases {
        let ran = dpplan(dir.path(), args);
        if ran.status != 0 {
            g.fail(format!("{name}: exit {}: {}", ran.status, ran.stderr));
            continue;
        }
        if ran.stdout.contains('\x1b') {
            g.fail(format!("{name}: colour in a pipe"));
        }
        if ran.stdout.contains('…') {
            g.fail(format!("{name}: a value cut in a pipe"));
        }
        g.check(&golden.join(name), name, &ran.stdout);
    }
    g.assert_all();
}

/// A state file in `dir` with one FAILED run of a plan with a long name and a long error.
fn long_values(dir: &Path) -> (&'static str, &'static str) {
    let plan = "prod-nightly-every-appliance-in-the-frankfurt-data-centre";
    let error = "pre-plan script exited 3: the change freeze calendar says no backups during the quarter-end close";
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = RedbStore::open(&dir.join("state.redb")).unwrap();
    rt.block_on(async {
        let id = store
            .create_run(new_run(plan, t0(), vec![task(1, 1, "QA1", "all-domains")]))
            .await
            .unwrap();
        let r = vec![Record::Run {
            status: RunStatus::Failed,
            error: Some(error.into()),
            at: at(t0(), 500),
        }];
        store.append(id, r).await.unwrap();
    });
    (plan, error)
}

#[test]
fn a_pipe_gets_every_value_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, error) = long_values(dir.path());
    let ran = dpplan(dir.path(), &["runs"]).status(0);
    ran.stdout_has(plan).stdout_has(error);
}

#[test]
fn a_terminal_gets_its_width() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, error) = long_values(dir.path());
    let d = dir.path();
    // A wide terminal: everything fits, nothing is cut.
    let (status, screen) = crate::support::stdout_on_pty(d, &["runs"], &[], 250);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.contains(plan) && screen.contains(error), "{screen}");
    // A narrower one: every line fits it; the error is cut first, with `…`.
    let (status, screen) = crate::support::stdout_on_pty(d, &["runs"], &[], 160);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 160), "{screen}");
    assert!(screen.contains(plan), "{screen}");
    assert!(screen.contains("pre-plan script exited 3: the"), "{screen}");
    assert!(!screen.contains(error) && screen.contains('…'), "{screen}");
    // COLUMNS wins over what the terminal says.
    let (status, screen) = crate::support::stdout_on_pty(d, &["runs"], &[("COLUMNS", "100")], 250);
    assert_eq!(status, 0, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 100), "{screen}");
    assert!(screen.contains("prod-nightly-every-a"), "{screen}");
    assert!(!screen.contains(plan), "{screen}");
    assert!(
        screen.contains("FAILED"),
        "statuses are never cut: {screen}"
    );
}

#[test]
fn times_are_local_with_their_offset_or_utc_with_the_flag() {
    let (dir, _) = recorded();
    let d = dir.path();
    // Berlin in September is UTC+2 (the golden pages are in Berlin too).
    dpplan(d, &["show", "1"])
        .status(0)
        .stdout_has("started   2026-09-21 16:13:20 +02:00\n");
    // --utc on every page that shows a time.
    dpplan(d, &["show", "1", "--utc"])
        .status(0)
        .stdout_has("started   2026-09-21 14:13:20 +00:00\n")
        .stdout_has("finished  2026-09-21 14:14:02 +00:00  (42.1s)\n");
    dpplan(d, &["show", "1", "--task", "1", "--utc"])
        .status(0)
        .stdout_has("started   2026-09-21 14:13:20 +00:00\n");
    dpplan(d, &["runs", "--utc"])
        .status(0)
        .stdout_has(" 1  2026-09-21 14:13 +00:00  nightly");
    dpplan(d, &["log", "1", "--utc"])
        .status(0)
        .stdout_has("2026-09-21 +00:00\n14:13:20.000 ");
    // Another zone, another offset: New York in September is UTC-4.
    Test::new()
        .cwd(d)
        .env("TZ", "America/New_York")
        .args(["runs", "--state", "state.redb"])
        .run()
        .status(0)
        .stdout_has(" 1  2026-09-21 10:13 -04:00  nightly");
    // JSON keeps RFC 3339 UTC whatever the zone or flag.
    for args in [&["runs", "--json"][..], &["runs", "--json", "--utc"][..]] {
        let ran = dpplan(d, args).status(0);
        assert_eq!(ran.json()[2]["started"], "2026-09-21T14:13:20.000Z");
    }
}

#[test]
fn runs_json_has_the_documented_fields() {
    let (dir, _) = recorded();
    let ran = dpplan(dir.path(), &["runs", "--json"]).status(0);
    let runs = ran.json();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["id"], 3, "newest first");
    for key in [
        "id",
        "plan",
        "started",
        "status",
        "devices",
        "domains",
        "succeeded",
        "failed",
        "skipped",
        "error",
    ] {
        assert!(runs[2].get(key).is_some(), "no {key}");
    }
    assert_eq!(runs[2]["failed"], 1);
    assert_eq!(runs[2]["error"], "1 task failed");
}

#[test]
fn missing_state_and_unknown_ids_are_clear_errors() {
    let t = Test::new();
    let missing = t.path().join("nothing.redb").display().to_string();
    Test::new()
        .args(["runs", "--state", &missing])
        .run()
        .status(1)
        .stderr_has("no state file at");
    assert!(
        !Path::new(&missing).exists(),
        "a report must not create the state file"
    );
    let (dir, _) = recorded();
    dpplan(dir.path(), &["show", "9"])
        .status(1)
        .stderr_has("no run 9");
    dpplan(dir.path(), &["show", "1", "--task", "9"])
        .status(2)
        .stderr_has("no task 9");
    dpplan(dir.path(), &["show", "1", "--activity", "1", "--task", "1"]).status(2);
}

/// A state file another process writes is read all the same (read-only, beside it).
#[test]
fn a_state_file_being_written_is_still_read() {
    let (dir, state) = recorded();
    let _held = RedbStore::open(&state).unwrap();
    dpplan(dir.path(), &["runs"])
        .status(0)
        .stdout_has("nightly");
    dpplan(dir.path(), &["show", "1"]).status(0);
}

#[test]
fn verify_passes_a_sound_store() {
    let (dir, _) = recorded();
    dpplan(dir.path(), &["verify", "1", "--store", "store"])
        .status(0)
        .stderr_has("verified 3 files in 2 manifests: all as recorded");
    Test::new()
        .cwd(dir.path())
        .args(["verify", "store"])
        .run()
        .status(0)
        .stderr_has("in 4 manifests: all as recorded");
}

#[test]
fn verify_of_nothing_says_so_and_fails() {
    let (dir, _) = recorded();
    let d = dir.path();
    // Run 4: both tasks CANCELLED before writing anything.
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = RedbStore::open(&d.join("state.redb")).unwrap();
        let s = t0() + Duration::days(3);
        let tasks = vec![
            task(1, 1, "QA1", "all-domains"),
            task(2, 2, "TEST8", "DOMAIN1"),
        ];
        rt.block_on(async {
            let id = store
                .create_run(new_run("nightly", s, tasks))
                .await
                .unwrap();
            let why = Some("cancelled: the maintenance window closed");
            let r = vec![
                status(1, TaskStatus::Cancelled, why, at(s, 10)),
                status(2, TaskStatus::Cancelled, why, at(s, 10)),
                Record::Run {
                    status: RunStatus::Failed,
                    error: None,
                    at: at(s, 20),
                },
            ];
            store.append(id, r).await.unwrap();
        });
    }
    let ran = dpplan(d, &["verify", "4", "--store", "store"]).status(1);
    assert_eq!(
        ran.stderr,
        "error: nothing to verify: run 4 recorded no backup files (its 2 tasks: 2 CANCELLED)\n"
    );
    assert_eq!(ran.stdout, "");
    let v = dpplan(d, &["verify", "4", "--store", "store", "--json"])
        .status(1)
        .json();
    assert_eq!(v["outcome"], "NOTHING_TO_VERIFY");
    assert_eq!(v["run"], 4);
    assert_eq!(v["files"], 0);
    // A folder with no manifests is nothing to verify too.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    Test::new()
        .cwd(d)
        .args(["verify", "empty"])
        .run()
        .status(1)
        .stderr_has("nothing to verify: no manifests listing files under empty");
}

#[test]
fn verify_json_has_the_documented_fields() {
    let (dir, _) = recorded();
    let d = dir.path();
    let v = dpplan(d, &["verify", "1", "--store", "store", "--json"])
        .status(0)
        .json();
    assert_eq!(v["outcome"], "AS_RECORDED");
    assert_eq!(v["run"], 1);
    assert_eq!(v["files"], 3);
    assert_eq!(v["manifests"], 2);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["store"], "store");
    // A truncated file: one problem, its path relative to the store.
    let tgz = qa1_dir(d, 0).join("config.tgz");
    std::fs::write(&tgz, b"short").unwrap();
    let v = dpplan(d, &["verify", "1", "--store", "store", "--json"])
        .status(1)
        .json();
    assert_eq!(v["outcome"], "PROBLEMS");
    let problems = v["problems"].as_array().unwrap();
    let rel = format!("QA1/secure-backup/{}/config.tgz", timestamp(t0()));
    assert!(
        problems
            .iter()
            .any(|p| p["path"] == rel.as_str() && p["what"].as_str().unwrap().contains("bytes")),
        "{v}"
    );
}

fn qa1_dir(dir: &Path, day: i64) -> PathBuf {
    dir.join("store/QA1/secure-backup")
        .join(timestamp(t0() + Duration::days(day)))
}

#[test]
fn verify_catches_a_flipped_byte_and_a_truncated_file() {
    let (dir, _) = recorded();
    let tgz = qa1_dir(dir.path(), 0).join("config.tgz");
    let mut bytes = std::fs::read(&tgz).unwrap();
    bytes[3] ^= 0x01;
    std::fs::write(&tgz, &bytes).unwrap();
    let zip = dir
        .path()
        .join("store/TEST8/domain/DOMAIN1")
        .join(format!("DOMAIN1-export-{}-persisted.zip", timestamp(t0())));
    let len = std::fs::metadata(&zip).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&zip)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let ran = dpplan(dir.path(), &["verify", "1", "--store", "store"]).status(1);
    let ts = timestamp(t0());
    assert!(
        ran.stdout
            .contains(&format!("QA1/secure-backup/{ts}/config.tgz: SHA-256 is")),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout.contains(&format!(
            "-persisted.zip: is {} bytes, recorded {len}",
            len - 10
        )),
        "{}",
        ran.stdout
    );
    // The appliance's own manifest catches the flipped byte too.
    assert!(
        ran.stdout.contains("backupmanifest.xml lists"),
        "{}",
        ran.stdout
    );
    ran.stderr_has("problems");
    // By path as well.
    Test::new()
        .cwd(dir.path())
        .args(["verify", "store/TEST8"])
        .run()
        .status(1)
        .stdout_has("-persisted.zip: is ");
}

#[test]
fn verify_reads_archives_and_the_backup_manifest() {
    let (dir, _) = recorded();
    // A damaged archive whose manifest was written with the damage: only the CRC tells.
    let zip = dir
        .path()
        .join("store/TEST8/domain/DOMAIN1")
        .join(format!("DOMAIN1-export-{}-persisted.zip", timestamp(t0())));
    let mut bytes = std::fs::read(&zip).unwrap();
    let at = bytes.windows(7).position(|w| w == b"<export").unwrap();
    bytes[at + 1] = b'E';
    std::fs::write(&zip, &bytes).unwrap();
    let mpath = zip
        .parent()
        .unwrap()
        .join(format!("DOMAIN1-export-{}.manifest.json", timestamp(t0())));
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let (size, sha) = hash_file(&zip).unwrap();
    m["files"][0]["size"] = size.into();
    m["files"][0]["sha256"] = sha.into();
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
    Test::new()
        .cwd(dir.path())
        .args(["verify", &mpath.display().to_string()])
        .run()
        .status(1)
        .stdout_has("-persisted.zip: ZIP entry export.xml is damaged");

    // A secure backup missing a file its backupmanifest.xml lists.
    let d = qa1_dir(dir.path(), 1);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
    m["files"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["path"] != "config.tgz");
    std::fs::write(d.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    std::fs::remove_file(d.join("config.tgz")).unwrap();
    Test::new()
        .cwd(dir.path())
        .args(["verify", &d.display().to_string()])
        .run()
        .status(1)
        .stdout_has("backupmanifest.xml: lists config.tgz, which is missing");
}

const PLAN: &str = r#"import "std/datapower"
store "store" { RETENTION }
inventory {
  defaults { password = env("DP_PASSWORD") }
  device "QA1" { host = "qa1.example.com" }
}
plan "nightly" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}
"#;

fn plan_file(dir: &Path, retention: &str) -> String {
    std::fs::write(dir.join("p.dpplan"), PLAN.replace("RETENTION", retention)).unwrap();
    "p.dpplan".into()
}

#[test]
fn prune_keeps_what_it_must() {
    let (dir, _) = recorded();
    let d = dir.path();
    // A fourth backup of QA1, from a run whose task failed after writing its files.
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = RedbStore::open(&d.join("state.redb")).unwrap();
        let s = t0() + Duration::days(3);
        let t = task(1, 1, "QA1", "all-domains");
        rt.block_on(async {
            let id = store
                .create_run(new_run("nightly", s, vec![t.clone()]))
                .await
                .unwrap();
            let mut r = secure_backup(&d.join("store"), id, &t, s);
            r.push(status(
                1,
                TaskStatus::Failed,
                Some("verify failed"),
                at(s, 10),
            ));
            r.push(Record::Run {
                status: RunStatus::Failed,
                error: None,
                at: at(s, 20),
            });
            store.append(id, r).await.unwrap();
        });
    }
    let file = plan_file(d, "keep_last = 1");
    let now = (t0() + Duration::days(4)).to_rfc3339();
    let before = dpplan(d, &["prune", &file, "--dry-run", "--now", &now]).status(0);
    // QA1: run 4 is the newest (keep_last), run 3 is unfinished, run 2 is the newest
    // successful one: only run 1's goes. TEST8 DOMAIN1 has one backup.
    let ts1 = timestamp(t0());
    assert_eq!(
        before.stdout,
        format!(
            "would remove QA1/secure-backup/{ts1}/manifest.json (run 1, task 1, 2 files, 223 B)\n"
        )
    );
    assert!(qa1_dir(d, 0).exists(), "a dry run removes nothing");
    let ran = dpplan(d, &["prune", &file, "--now", &now]).status(0);
    assert_eq!(
        ran.stdout,
        before.stdout.replacen("would remove", "removed", 1)
    );
    assert!(!qa1_dir(d, 0).exists(), "the emptied folder goes too");
    for day in 1..=3 {
        assert!(qa1_dir(d, day).join("manifest.json").exists(), "day {day}");
    }
    dpplan(d, &["log", "1", "--task", "1"])
        .status(0)
        .stdout_has("pruned: removed 2 files (223 B)");
    // Verify knows the task was pruned; the rest of the run is as recorded.
    dpplan(d, &["verify", "1", "--store", "store"])
        .status(0)
        .stderr_has("task 1 not checked: pruned");
    // Again: nothing more to remove.
    dpplan(d, &["prune", &file, "--now", &now])
        .status(0)
        .stderr_has("removed 0 backups");
}

#[test]
fn prune_json_lists_what_goes_and_what_stays_with_why() {
    let (dir, _) = recorded();
    let d = dir.path();
    let file = plan_file(d, "keep_last = 1");
    let now = (t0() + Duration::days(4)).to_rfc3339();
    let v = dpplan(d, &["prune", &file, "--dry-run", "--json", "--now", &now])
        .status(0)
        .json();
    assert_eq!(v["dry_run"], true);
    let removed = v["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 1, "{v}");
    let ts1 = timestamp(t0());
    assert_eq!(
        removed[0]["manifest"],
        format!("QA1/secure-backup/{ts1}/manifest.json")
    );
    assert_eq!(removed[0]["run"], 1);
    assert_eq!(removed[0]["files"], 2);
    assert_eq!(removed[0]["bytes"], 223);
    assert_eq!(removed[0]["keep"], serde_json::Value::Null);
    assert_eq!(v["bytes_removed"], 223);
    let mut why: Vec<(u64, String)> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["run"].as_u64().unwrap(),
                format!(
                    "{} {}",
                    b["device"].as_str().unwrap(),
                    b["keep"].as_str().unwrap()
                ),
            )
        })
        .collect();
    why.sort();
    assert_eq!(
        why,
        [
            (1, "TEST8 last".to_string()),
            (2, "QA1 newest_successful".to_string()),
            (3, "QA1 unfinished".to_string()),
        ]
    );
    assert!(qa1_dir(d, 0).exists(), "a dry run removes nothing");
    let v = dpplan(d, &["prune", &file, "--json", "--now", &now])
        .status(0)
        .json();
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["removed"][0]["error"], serde_json::Value::Null);
    assert!(!qa1_dir(d, 0).exists());
}

#[test]
fn prune_by_age() {
    let (dir, _) = recorded();
    let d = dir.path();
    let file = plan_file(d, "keep_days = 2");
    // 1.5 days after run 1 everything is young enough.
    let young = (t0() + Duration::hours(36)).to_rfc3339();
    dpplan(d, &["prune", &file, "--now", &young])
        .status(0)
        .stderr_has("removed 0 backups");
    // 2.5 days after, run 1's QA1 backup is old, run 2's is the newest successful and run
    // 3's unfinished; TEST8 DOMAIN1's only backup is the newest successful.
    let old = (t0() + Duration::hours(60)).to_rfc3339();
    let ran = dpplan(d, &["prune", &file, "--now", &old]).status(0);
    assert_eq!(ran.stdout.lines().count(), 1, "{}", ran.stdout);
    ran.stdout_has(&format!(
        "QA1/secure-backup/{}/manifest.json",
        timestamp(t0())
    ));
    assert!(d
        .join("store/TEST8/domain/DOMAIN1")
        .join(format!("DOMAIN1-export-{}.manifest.json", timestamp(t0())))
        .exists());
    // Without retention, prune refuses.
    let file = plan_file(d, "");
    dpplan(d, &["prune", &file])
        .status(1)
        .stderr_has("neither keep_last nor keep_days");
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let ran = Test::new().args(["completions", shell]).run().status(0);
        assert!(ran.stdout.contains("prune"), "{shell}");
    }
    Test::new().args(["completions", "tcsh"]).run().status(2);
}
