//! `dpplan run`, `plan` and `graph` through the binary, against a simulated fleet started by
//! the test; and every plan in plans/ run against the simulator.

use crate::engine::World;
use crate::support::fleet::dpod;
use crate::support::{root, Test};
use dpplan::check::{self, Secret};
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Engine, RunOptions};
use dpplan::sim::{self, Fleet};
use dpplan::soma::SomaConnector;
use dpplan::store::memory::MemoryJournal;
use dpplan::store::{RunStatus, TaskStatus};
use std::sync::Arc;
use std::time::Duration;

const PLAN: &str = r#"
plan "nightly" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    quiesce = 60s
  }
  activity export_domain "test-domains" {
    devices    = ["TEST8", "TEST9"]
    domains    = "DOMAIN*"
    on_failure = continue
  }
}
"#;

pub fn plan_file(w: &World) -> String {
    format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\n{PLAN}",
        w.store().display(),
        w.inventory().replace(
            "file(\"pw\")",
            &format!("file(\"{}\")", w.dir.path().join("pw").display())
        )
    )
}

async fn blocking(t: Test) -> crate::support::Ran {
    tokio::task::spawn_blocking(move || t.run()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_prints_json_and_exits_five_on_warning() {
    let w = World::new(dpod()).await;
    let t = Test::new()
        .file("p.dpplan", &plan_file(&w))
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = blocking(t).await.status(5);
    let v = ran.json();
    assert_eq!(v["run"], 1);
    assert_eq!(v["status"], "WARNING");
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 6);
    for key in [
        "id", "action", "device", "domain", "status", "error", "files",
    ] {
        assert!(tasks[0].get(key).is_some(), "no {key}");
    }
    assert_eq!(tasks[5]["status"], "SKIPPED");
    assert_eq!(tasks[4]["files"].as_array().unwrap().len(), 2);
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_the_tasks_and_changes_nothing() {
    let w = World::new(dpod()).await;
    let t = Test::new()
        .file("p.dpplan", &plan_file(&w))
        .args(["plan", "p.dpplan", "--json"]);
    let v = blocking(t).await.status(0).json();
    assert_eq!(v["plan"], "nightly");
    let tasks = v["tasks"].as_array().unwrap();
    let rows: Vec<(String, String, String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["action"].as_str().unwrap().into(),
                t["device"].as_str().unwrap().into(),
                t["domain"].as_str().unwrap().into(),
                t["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        rows[3],
        (
            "EXPORT_DOMAIN".into(),
            "TEST8".into(),
            "DOMAIN1".into(),
            "PENDING".into()
        )
    );
    assert_eq!(rows[5].3, "SKIPPED");
    assert_eq!(tasks[5]["activity"], "test-domains");
    for d in ["QA1", "TEST8"] {
        let ops = w.state(d).ops;
        for op in ["QuiesceDP", "DomainQuiesce", "SecureBackup", "do-export"] {
            assert_eq!(ops.get(op), None, "{d} got {op}");
        }
    }
    assert!(crate::engine::files_below(&w.store()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_prints_templates_and_the_expanded_run() {
    let w = World::new(dpod()).await;
    let t = Test::new()
        .file("p.dpplan", &plan_file(&w))
        .args(["graph", "p.dpplan"]);
    let dot = blocking(t).await.status(0).stdout;
    assert!(dot.starts_with("digraph plan {"));
    assert!(dot.contains("\"a1/<secure_backup>:quiesce\" -> \"a1/<secure_backup>:backup\""));
    let t = Test::new().file("p.dpplan", &plan_file(&w)).args([
        "graph",
        "p.dpplan",
        "--expanded",
        "--format",
        "mermaid",
    ]);
    let m = blocking(t).await.status(0).stdout;
    assert!(m.starts_with("flowchart LR"));
    assert!(m.contains("a2/TEST8/DOMAIN2:export"));
    assert!(!m.contains("TEST9"), "skipped tasks have no steps");
}

/// With `--no-wait`, a state file another process writes fails the run at once, naming the
/// writer (without it the run waits: tests/state_file.rs).
#[test]
fn a_held_state_file_with_no_wait_is_a_clear_error_not_a_hang() {
    let t = Test::new().file(
        "p.dpplan",
        "import \"std/datapower\"\nplan \"p\" {\n  activity secure_backup {\n    devices = \"X*\"\n    cert = \"c\"\n  }\n}\n",
    );
    let state = t.path().join("held.redb");
    let held = dpplan::store::RedbStore::open(&state).unwrap();
    let ran = t
        .args([
            "run",
            "p.dpplan",
            "--no-wait",
            "--state",
            state.to_str().unwrap(),
        ])
        .run()
        .status(1)
        .stderr_has("is in use");
    // The writer is this test process, as its sidecar says.
    let pid = format!("(pid {},", std::process::id());
    assert!(ran.stderr.contains(&pid), "{}", ran.stderr);
    drop(held);
}

/// Every plan in plans/ against a simulated fleet with its devices: hosts, ports, TLS and
/// secrets, the store and its remote requirement, and windows are swapped for the test's.
/// Plans that name the same store share the test's copy of it, in file order, so the restore
/// examples restore what the backup examples before them wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_plan_runs_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "admin").unwrap();
    let mut plans: Vec<_> = std::fs::read_dir(root().join("plans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dpplan"))
        .collect();
    plans.sort();
    let mut ran = 0;
    for path in plans {
        let checked = check::check_file(&path);
        assert!(
            crate::support::without_missing_secrets(checked.diagnostics).is_empty(),
            "{}",
            path.display()
        );
        let mut program = checked.program;
        if program.plans.is_empty() {
            continue;
        }
        let mut fleet = String::from(
            "[defaults]\nuser = \"admin\"\npassword = \"admin\"\nquiesce_delay = \"50ms\"\nunquiesce_delay = \"50ms\"\nbackup_file_size = \"4KiB\"\ndomains = [\"default\", \"DOMAIN1\", \"DOMAIN2\", \"APP1\", \"B2B_EDI\"]\ncerts = [\"backup-cert\", \"b2b-backup-cert\"]\ncreds = [\"restore-cred\"]\nrestore_downtime = \"200ms\"\nunsaved = [\"APP1\"]\n",
        );
        for d in &program.devices {
            fleet.push_str(&format!("[[device]]\nname = \"{}\"\n", d.name));
        }
        let running = sim::serve(
            &Fleet::parse(&fleet).unwrap(),
            "127.0.0.1".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        for d in &mut program.devices {
            let sim = running.device(&d.name).unwrap();
            d.host = "127.0.0.1".into();
            d.port = sim.addr.port();
            d.tls = false;
            d.tls_ca = None;
            d.user = Some("admin".into());
            d.password = Some(Secret::File(dir.path().join("pw")));
        }
        let shared = program
            .store
            .as_ref()
            .and_then(|s| s.path.file_name().map(|n| n.to_os_string()))
            .unwrap_or_else(|| path.file_stem().unwrap().to_os_string());
        let store = dir.path().join(shared);
        std::fs::create_dir_all(&store).unwrap();
        if let Some(s) = &mut program.store {
            s.path = store.clone();
            s.require_remote = false;
            s.min_free = None;
        }
        let program = Arc::new(program);
        for plan in &program.plans {
            let engine = Engine::new(
                program.clone(),
                plan.name.clone(),
                Arc::new(MemoryJournal::new()),
                Arc::new(SomaConnector),
                Arc::new(SystemClock),
                RunOptions {
                    ignore_window: true,
                    poll_interval: Duration::from_millis(20),
                    ..RunOptions::default()
                },
            );
            let report = tokio::time::timeout(Duration::from_secs(120), engine.run("example"))
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(report.status, RunStatus::Completed | RunStatus::Warning),
                "{}: {report:#?}",
                path.display()
            );
            assert!(
                report.tasks.iter().all(|t| t.status != TaskStatus::Failed),
                "{}: {report:#?}",
                path.display()
            );
            // Backups write files; restores and drills read them.
            let restores = report.tasks.iter().all(|t| {
                ["IMPORT_DOMAIN", "SECURE_RESTORE", "RESTORE_DRILL"].contains(&t.action.as_str())
            });
            assert!(restores || report.tasks.iter().any(|t| !t.files.is_empty()));
            ran += 1;
        }
        running.shutdown().await;
    }
    assert!(ran >= 3, "ran {ran} example plans");
}
