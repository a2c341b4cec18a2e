//! Plan and task flows (DESIGN.md 4): windows, the pre-plan script, all-skipped runs,
//! lockstep stages, one task per device at a time, script environments and timeouts, and
//! names that try to leave the store. The ordering rules (lockstep, one task per device) run
//! on scripted appliances on paused time; the rest against the simulator, and every example
//! plan through the binary in tests/run_cli.rs.

use crate::engine::{files_below, World};
use crate::policies::chmod_x;
use crate::support::appliance::FakeAppliance;
use crate::support::fleet::{qa, DeviceEntry, FleetFile};
use crate::support::world::PausedWorld;
use dpplan::compile::Task;
use dpplan::engine::clock::ManualClock;
use dpplan::engine::{Observer, RunOptions};
use dpplan::store::{Record, RunStatus, TaskStatus};
use std::sync::Arc;
use std::time::Duration;

/// QA1-3 with DOMAIN1 and DOMAIN2, quick quiesces, 8 KiB backup files.
fn fleet() -> FleetFile {
    qa(&["QA1", "QA2", "QA3"])
        .set("quiesce_delay", "50ms")
        .set("backup_file_size", "8KiB")
        .domains(&["default", "DOMAIN1", "DOMAIN2"])
}

/// Moves the clock an hour forward when the first task finishes.
struct CloseWindowAfterFirst(Arc<ManualClock>);

impl Observer for CloseWindowAfterFirst {
    fn task(&self, task: &Task, status: TaskStatus) {
        if task.id == 1 && status == TaskStatus::Succeeded {
            self.0.advance(Duration::from_secs(3600));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_closing_cancels_tasks_not_started() {
    let w = World::new(fleet()).await;
    // Inside a 22:00-23:00 UTC window, every day.
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T22:10:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock = Arc::new(ManualClock::new(start));
    let plan = r#"
settings { max_parallel = 1 }
plan "p" {
  window {
    from = 22:00
    to   = 23:00
    tz   = "UTC"
  }
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}"#;
    let observer: Arc<dyn Observer> = Arc::new(CloseWindowAfterFirst(clock.clone()));
    let options = RunOptions {
        poll_interval: Duration::from_millis(20),
        ..RunOptions::default()
    };
    let (report, _) = w.run_full(plan, "p", options, clock, Some(observer)).await;
    let st: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        st,
        [
            TaskStatus::Succeeded,
            TaskStatus::Cancelled,
            TaskStatus::Cancelled
        ],
        "{report:#?}"
    );
    assert!(report.tasks[1]
        .error
        .as_deref()
        .unwrap()
        .contains("maintenance window"));
    assert_eq!(report.status, RunStatus::Failed);
    assert_eq!(w.state("QA2").ops.get("SecureBackup"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_window_close_sleep_waits_for_the_next_opening_and_goes_on() {
    let w = World::new(fleet()).await;
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-23T22:10:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let clock = Arc::new(ManualClock::new(start));
    let plan = r#"
settings { max_parallel = 1 }
plan "p" {
  window {
    from = 22:00
    to   = 23:00
    tz   = "UTC"
  }
  on_window_close = sleep
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}"#;
    let observer: Arc<dyn Observer> = Arc::new(CloseWindowAfterFirst(clock.clone()));
    let options = RunOptions {
        poll_interval: Duration::from_millis(20),
        ..RunOptions::default()
    };
    let (report, journal) = w.run_full(plan, "p", options, clock, Some(observer)).await;
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    let statuses: Vec<RunStatus> = journal
        .records(report.run)
        .iter()
        .filter_map(|r| match r {
            Record::Run { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses,
        [
            RunStatus::Running,
            RunStatus::Sleeping,
            RunStatus::Running,
            RunStatus::Completed
        ]
    );
    let log: Vec<String> = journal
        .records(report.run)
        .iter()
        .filter_map(|r| match r {
            Record::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("sleeping until it opens again at 2026-11-24 22:00")),
        "{log:#?}"
    );
    // The tasks after the close ran after the next opening.
    assert_eq!(w.state("QA3").ops.get("SecureBackup"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_window_nothing_runs_unless_ignored() {
    let w = World::new(fleet()).await;
    let plan = r#"
plan "p" {
  window {
    days = [mon]
    from = 01:00
    to   = 01:01
    tz   = "UTC"
  }
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
  }
}"#;
    let clock = Arc::new(ManualClock::new(
        chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc),
    ));
    let (report, _) = w
        .run_full(plan, "p", RunOptions::default(), clock.clone(), None)
        .await;
    assert_eq!(report.status, RunStatus::OutsideWindow);
    assert!(report.tasks.is_empty());
    let options = RunOptions {
        ignore_window: true,
        poll_interval: Duration::from_millis(20),
        ..RunOptions::default()
    };
    let (report, _) = w.run_full(plan, "p", options, clock, None).await;
    assert_eq!(report.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_plan_script_ends_the_run_before_any_task() {
    let w = World::new(fleet()).await;
    std::fs::write(w.dir.path().join("pre.sh"), "#!/bin/sh\nexit 1\n").unwrap();
    chmod_x(&w.dir.path().join("pre.sh"));
    let plan = r#"
plan "p" {
  pre_plan = script("pre.sh")
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(report.error.as_deref().unwrap().contains("pre-plan script"));
    assert!(report
        .tasks
        .iter()
        .all(|t| t.status == TaskStatus::Cancelled));
    for d in ["QA1", "QA2", "QA3"] {
        assert_eq!(w.state(d).ops.get("SecureBackup"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_tasks_skipped_stops_without_the_pre_plan_script() {
    let w = World::new(fleet()).await;
    std::fs::write(w.dir.path().join("pre.sh"), "#!/bin/sh\ntouch pre-ran\n").unwrap();
    chmod_x(&w.dir.path().join("pre.sh"));
    let plan = r#"
plan "p" {
  pre_plan = script("pre.sh")
  activity export_domain {
    devices = "QA*"
    domains = "NOSUCH*"
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Stopped);
    assert_eq!(report.tasks.len(), 3);
    assert!(report.tasks.iter().all(|t| t.status == TaskStatus::Skipped));
    assert!(!w.dir.path().join("pre-ran").exists());
}

/// QA1-3 as scripted appliances (DOMAIN1, DOMAIN2), for the tests of the engine's ordering
/// on paused time: whatever the machine's load, the same order.
fn paused_fleet() -> PausedWorld {
    PausedWorld::new(
        ["QA1", "QA2", "QA3"]
            .map(|n| FakeAppliance::new(n).domains(&["default", "DOMAIN1", "DOMAIN2"])),
    )
}

#[tokio::test(start_paused = true)]
async fn lockstep_runs_each_phase_on_every_device_before_the_next() {
    let w = paused_fleet();
    let plan = r#"
settings { max_parallel = 2 }
plan "p" {
  stages = lockstep
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    quiesce = 60s
  }
}"#;
    let (report, journal) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    let records = journal.records(report.run);
    let phase = |step: &str| match step {
        "validate" | "pre_script" => 0,
        "quiesce" => 1,
        "backup" => 2,
        "unquiesce" => 3,
        _ => 4,
    };
    // In journal order, no step of a phase starts before every step of the previous phase
    // (on every device) has finished.
    let mut started_max = 0;
    for r in &records {
        match r {
            Record::StepIntent { step, .. } => {
                let p = phase(step);
                assert!(p >= started_max, "{step} started after a later phase began");
                started_max = started_max.max(p);
            }
            Record::StepResult { step, attempt, .. } if *attempt > 0 => {
                assert_eq!(phase(step), started_max, "{step} finished out of phase");
            }
            _ => {}
        }
    }
    assert_eq!(started_max, 3);
    w.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn tasks_on_one_device_never_overlap() {
    let w = paused_fleet();
    let plan = r#"
settings { max_parallel = 8 }
plan "p" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
  activity export_domain {
    devices = ["QA1", "QA2"]
    domains = "DOMAIN*"
  }
  activity export_domain "everything" {
    devices = "QA1"
    domains = all
  }
}"#;
    let (report, journal) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    let device_of: std::collections::HashMap<u32, String> = report
        .tasks
        .iter()
        .map(|t| (t.id, t.device.clone()))
        .collect();
    let mut running: std::collections::HashMap<String, u32> = Default::default();
    let mut order: std::collections::HashMap<String, Vec<u32>> = Default::default();
    for r in journal.records(report.run) {
        if let Record::Task { task, status, .. } = r {
            let d = device_of[&task].clone();
            if status == TaskStatus::Running {
                assert!(!running.contains_key(&d), "two tasks at once on {d}");
                running.insert(d.clone(), task);
                order.entry(d).or_default().push(task);
            } else {
                assert_eq!(running.remove(&d), Some(task));
            }
        }
    }
    // ... and in creation order.
    assert_eq!(order["QA1"], [1, 4, 5, 8]);
    assert_eq!(order["QA2"], [2, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_get_the_documented_environment_and_no_credentials() {
    let w = World::new(fleet()).await;
    std::fs::write(
        w.dir.path().join("env.sh"),
        "#!/bin/sh\nenv | sort > \"env-$DPPLAN_HOOK-${DPPLAN_TASK_ID:-plan}\"\n",
    )
    .unwrap();
    chmod_x(&w.dir.path().join("env.sh"));
    let plan = r#"
plan "p" {
  pre_plan  = script("env.sh")
  post_plan = script("env.sh")
  activity export_domain {
    devices = "QA1"
    domains = "DOMAIN1"
    pre     = script("env.sh")
    post    = script("env.sh")
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    let read = |name: &str| -> std::collections::HashMap<String, String> {
        std::fs::read_to_string(w.dir.path().join(name))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let pre = read("env-pre_task-1");
    assert_eq!(pre["DPPLAN_RUN_ID"], report.run.to_string());
    assert_eq!(pre["DPPLAN_PLAN"], "p");
    assert_eq!(pre["DPPLAN_TASK_ID"], "1");
    assert_eq!(pre["DPPLAN_ACTION"], "EXPORT_DOMAIN");
    assert_eq!(pre["DPPLAN_DEVICE"], "QA1");
    assert_eq!(pre["DPPLAN_DEVICE_HOST"], "127.0.0.1");
    assert_eq!(pre["DPPLAN_DOMAIN"], "DOMAIN1");
    assert_eq!(pre["DPPLAN_ATTEMPT"], "1");
    let post = read("env-post_task-1");
    assert_eq!(post["DPPLAN_STATUS"], "SUCCEEDED");
    assert!(post["DPPLAN_OUTPUT"].contains("DOMAIN1-export-"));
    let plan_pre = read("env-pre_plan-plan");
    assert_eq!(plan_pre["DPPLAN_HOOK"], "pre_plan");
    let plan_post = read("env-post_plan-plan");
    assert_eq!(plan_post["DPPLAN_STATUS"], "COMPLETED");
    let tasks: serde_json::Value = serde_json::from_str(&plan_post["DPPLAN_TASKS"]).unwrap();
    assert_eq!(tasks[0]["status"], "SUCCEEDED");
    for env in [&pre, &post, &plan_pre, &plan_post] {
        assert!(
            env.values().all(|v| !v.contains("s3cret")),
            "a credential leaked"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_script_is_killed_with_its_children() {
    let w = World::new(fleet()).await;
    std::fs::write(
        w.dir.path().join("hang.sh"),
        "#!/bin/sh\nsleep 60 &\necho $! > child.pid\nsleep 60\n",
    )
    .unwrap();
    chmod_x(&w.dir.path().join("hang.sh"));
    let plan = r#"
plan "p" {
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
    pre     = script("hang.sh", timeout = 1s)
  }
}"#;
    let t0 = std::time::Instant::now();
    let (report, _) = w.run(plan, "p").await;
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert!(report.tasks[0]
        .error
        .as_deref()
        .unwrap()
        .contains("killed at its timeout"));
    let pid = std::fs::read_to_string(w.dir.path().join("child.pid")).unwrap();
    // The background child went with its process group (give the kernel a moment to reap).
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    for _ in 0..50 {
        if !alive(&pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(&pid), "the script's child survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_write_outside_the_store() {
    let w = World::new(
        FleetFile::new()
            .set("backup_file_size", "4KiB")
            .device(DeviceEntry::new("../../etc").domains(&["default", "a/../../b", ".."])),
    )
    .await;
    let plan = r#"
plan "p" {
  activity secure_backup {
    devices = "*"
    cert    = "backup-cert"
  }
  activity export_domain {
    devices = "*"
    domains = "*"
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.status, RunStatus::Completed, "{report:#?}");
    // Everything written is inside the store, and nothing beside it appeared.
    let outside: Vec<String> = files_below(w.dir.path())
        .into_iter()
        .filter(|f| !f.starts_with("store/"))
        .collect();
    assert_eq!(outside, ["plan.dpplan", "pw"]);
    let inside = files_below(&w.store());
    assert!(
        inside.iter().all(|f| f.starts_with("%2E.%2F..%2Fetc/")),
        "{inside:?}"
    );
    assert!(
        inside
            .iter()
            .any(|f| f.contains("/domain/a%2F..%2F..%2Fb/")),
        "{inside:?}"
    );
    assert!(
        inside.iter().any(|f| f.contains("/domain/%2E./")),
        "{inside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_validation_outcomes_end_the_run_before_any_task() {
    let w = World::new(fleet()).await;
    let activity = r#"
plan "p" {
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
  }
}"#;
    // Backups disabled.
    let (r, _) = w
        .run(
            &format!("settings {{ backups_enabled = false }}\n{activity}"),
            "p",
        )
        .await;
    assert_eq!(r.status, RunStatus::BackupsDisabled);
    assert!(r.tasks.is_empty());
    // The store must be a mounted remote filesystem: a temporary directory is not.
    let (r, _) = w
        .run(
            &format!("store \"store\" {{ require_remote = true }}\n{activity}"),
            "p",
        )
        .await;
    assert_eq!(r.status, RunStatus::StoreNotMounted);
    // The message says which filesystem it found, as the mount table names it.
    let found = dpplan::engine::fsinfo::mount_of(&w.store()).unwrap();
    let error = r.error.as_deref().unwrap();
    assert!(
        error.contains(&format!(
            "on a local filesystem ({}, mounted at",
            found.fstype
        )) && error.contains("not a mounted remote one"),
        "{error}"
    );
    // More free space required than any disk has.
    let (r, _) = w
        .run(
            &format!("store \"store\" {{ min_free = 1000000TiB }}\n{activity}"),
            "p",
        )
        .await;
    assert_eq!(r.status, RunStatus::StoreOutOfSpace);
    // A store that does not exist.
    let (r, _) = w
        .run(&format!("store \"no-such-dir\" {{}}\n{activity}"), "p")
        .await;
    assert_eq!(r.status, RunStatus::StoreNotMounted);
    assert_eq!(w.state("QA1").ops.get("SecureBackup"), None);
}

/// A device quiesce on an appliance with only the `default` domain: QuiesceDP does not touch
/// `default` (SOMA.md), so nothing shows a state to wait for; the quiesce is accepted and the
/// task goes on, instead of waiting out timeout + grace and failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_with_only_default_is_quiesced_without_waiting() {
    let w = World::new(
        // The simulator's own device state (in /sim/state, not in DomainStatus) settles at
        // once, so the final check sees it released.
        FleetFile::new()
            .set("backup_file_size", "8KiB")
            .set("quiesce_delay", "0s")
            .set("unquiesce_delay", "0s")
            .domains(&["default"])
            .devices(&["SOLO"]),
    )
    .await;
    let plan = r#"
settings { quiesce_grace = 5s }
plan "p" {
  activity secure_backup {
    devices = "SOLO"
    cert    = "backup-cert"
    quiesce = 60s
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    let s = w.state("SOLO");
    assert_eq!(s.ops.get("QuiesceDP"), Some(&1));
    assert_eq!(s.ops.get("UnquiesceDP"), Some(&1));
    w.assert_clean();
}
