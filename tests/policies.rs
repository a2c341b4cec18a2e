//! Recovery policies driven by injected faults (DESIGN.md 2.3): continue, retry (transient
//! only, with exponential backoff), stop, rollback, halt; and quiesce timeouts.
//!
//! Those with hook scripts run against the simulator on real time; the others against
//! scripted appliances on paused tokio time (tests/support/world.rs), so a 90 s quiesce
//! timeout or a 15 s backoff passes at once and the order of events is the script's.

use crate::engine::{files_below, World};
use crate::support::appliance::{FakeAppliance, Fault, FaultKind};
use crate::support::fleet::{qa, DeviceEntry, SimFault};
use crate::support::records::attempts;
use crate::support::world::PausedWorld;
use dpplan::appliance::QuiesceTarget;
use dpplan::store::{Record, RunStatus, StepOutcome, TaskStatus};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_records_the_failure_and_goes_on() {
    let w = World::new(qa(&["QA1"])).await;
    std::fs::write(
        w.dir.path().join("fail.sh"),
        "#!/bin/sh\necho nope >&2\nexit 3\n",
    )
    .unwrap();
    chmod_x(&w.dir.path().join("fail.sh"));
    let plan = r#"
plan "p" {
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
    pre     = script("fail.sh")
    on_failure { pre_script = continue }
  }
}"#;
    let (report, journal) = w.run(plan, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Warning, "{report:#?}");
    assert_eq!(report.status, RunStatus::Warning);
    let records = journal.records(report.run);
    assert_eq!(
        attempts(&records, 1, "pre_script"),
        [(1, StepOutcome::Failed)]
    );
    assert_eq!(
        attempts(&records, 1, "backup"),
        [(1, StepOutcome::Succeeded)]
    );
    assert!(!report.tasks[0].files.is_empty());
    // The script's output went to the activity log.
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Log { message, .. } if message.contains("nope"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_still_unquiesces_and_runs_the_post_script() {
    let w = World::new(qa(&[]).device(DeviceEntry::new("QA1").fault(
        SimFault::new("SecureBackup", "error-text").set("text", "Error creating secure backup."),
    )))
    .await;
    std::fs::write(
        w.dir.path().join("post.sh"),
        "#!/bin/sh\necho \"$DPPLAN_STATUS\" > post-ran\n",
    )
    .unwrap();
    chmod_x(&w.dir.path().join("post.sh"));
    let plan = r#"
plan "p" {
  on_failure = stop
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
    quiesce = 60s
    post    = script("post.sh")
  }
}"#;
    let (report, journal) = w.run(plan, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert_eq!(report.status, RunStatus::Failed);
    let records = journal.records(report.run);
    assert_eq!(
        attempts(&records, 1, "unquiesce"),
        [(1, StepOutcome::Succeeded)]
    );
    assert_eq!(
        attempts(&records, 1, "post_script"),
        [(1, StepOutcome::Succeeded)]
    );
    assert_eq!(
        std::fs::read_to_string(w.dir.path().join("post-ran"))
            .unwrap()
            .trim(),
        "FAILED"
    );
    w.assert_clean();
    assert!(files_below(&w.store()).is_empty());
}

const CHECKED_KIND: &str = r#"
kind backup_then_check per device {
  action = "SECURE_BACKUP"
  param quiesce : duration = 60s
  param check   : script
  step validate  = dp.validate(device, quiesce = quiesce, cert = "backup-cert")
  step quiesce   = dp.quiesce(device, timeout = quiesce)
  step backup    = dp.secure_backup(device, cert = "backup-cert") undo store.discard()
  step check     = run(check)
  step unquiesce = dp.unquiesce(device, timeout = quiesce) always
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_removes_the_files_then_runs_the_always_steps() {
    let w = World::new(qa(&["QA1"])).await;
    std::fs::write(w.dir.path().join("check.sh"), "#!/bin/sh\nexit 1\n").unwrap();
    chmod_x(&w.dir.path().join("check.sh"));
    let plan = format!(
        r#"{CHECKED_KIND}
plan "p" {{
  activity backup_then_check {{
    devices = "QA1"
    check   = script("check.sh")
    on_failure {{ check = rollback }}
  }}
}}"#
    );
    let (report, journal) = w.run(&plan, "p").await;
    assert_eq!(
        report.tasks[0].status,
        TaskStatus::RolledBack,
        "{report:#?}"
    );
    assert_eq!(report.status, RunStatus::Failed);
    let records = journal.records(report.run);
    assert_eq!(
        attempts(&records, 1, "backup.undo"),
        [(1, StepOutcome::Succeeded)]
    );
    assert!(attempts(&records, 1, "backup").contains(&(0, StepOutcome::Undone)));
    assert_eq!(
        attempts(&records, 1, "unquiesce"),
        [(1, StepOutcome::Succeeded)]
    );
    // The undo ran before the unquiesce.
    let pos = |step: &str| {
        records
            .iter()
            .position(|r| matches!(r, Record::StepIntent { step: s, .. } if s == step))
            .unwrap()
    };
    assert!(pos("backup.undo") < pos("unquiesce"));
    assert!(
        files_below(&w.store()).is_empty(),
        "{:?}",
        files_below(&w.store())
    );
    w.assert_clean();
}

const BACKUP_QA1_RETRIED: &str = r#"
plan "p" {
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
    on_failure { backup = retry(3, backoff = 10s, max_backoff = 15s) then stop }
  }
}"#;

#[tokio::test(start_paused = true)]
async fn retry_succeeds_on_the_third_attempt_with_exponential_backoff() {
    let w = PausedWorld::new([
        FakeAppliance::new("QA1").fault(Fault::on("SecureBackup", FaultKind::Http500).times(2))
    ]);
    let (report, journal) = w.run(BACKUP_QA1_RETRIED, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    let records = journal.records(report.run);
    assert_eq!(
        attempts(&records, 1, "backup"),
        [
            (1, StepOutcome::Failed),
            (2, StepOutcome::Failed),
            (3, StepOutcome::Succeeded)
        ]
    );
    // Backoff 10s, then 20s capped at 15s: the attempts' intents are that far apart (the
    // failed attempts themselves take no time), to the timer's millisecond.
    let intents: Vec<chrono::DateTime<chrono::Utc>> = records
        .iter()
        .filter_map(|r| match r {
            Record::StepIntent { step, at, .. } if step == "backup" => Some(*at),
            _ => None,
        })
        .collect();
    let gap = |i: usize| (intents[i + 1] - intents[i]).to_std().unwrap();
    for (i, want) in [(0, 10), (1, 15)] {
        let want = Duration::from_secs(want);
        assert!(
            gap(i) >= want && gap(i) < want + Duration::from_millis(10),
            "backoff {i}: {:?}",
            gap(i)
        );
    }
    assert_eq!(w.device("QA1").ops("SecureBackup"), 3);
    w.assert_clean();
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_is_not_retried() {
    let w = PausedWorld::new([FakeAppliance::new("QA1").fault(Fault::on(
        "SecureBackup",
        FaultKind::ErrorText("Error creating secure backup.".into()),
    ))]);
    let (report, journal) = w.run(BACKUP_QA1_RETRIED, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed);
    assert!(report.tasks[0]
        .error
        .as_deref()
        .unwrap()
        .contains("Error creating secure backup."));
    assert_eq!(
        attempts(&journal.records(report.run), 1, "backup"),
        [(1, StepOutcome::Failed)]
    );
    assert_eq!(w.device("QA1").ops("SecureBackup"), 1);
}

#[tokio::test(start_paused = true)]
async fn halt_cancels_tasks_not_started_and_lets_running_ones_finish() {
    // QA1's validate takes 300 ms, QA2's backup 900 ms: QA2 has started when QA1's backup
    // fails and halts, and is still backing up then; QA3 waits for a slot and never starts.
    let w = PausedWorld::new([
        FakeAppliance::new("QA1")
            .fault(Fault::on(
                "get-config",
                FaultKind::Delay(Duration::from_millis(300)),
            ))
            .fault(Fault::on(
                "SecureBackup",
                FaultKind::ErrorText("Error creating secure backup.".into()),
            )),
        FakeAppliance::new("QA2").fault(Fault::on(
            "SecureBackup",
            FaultKind::Delay(Duration::from_millis(900)),
        )),
        FakeAppliance::new("QA3"),
    ]);
    let plan = r#"
settings { max_parallel = 2 }
plan "p" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    on_failure { backup = halt }
  }
}"#;
    let (report, _) = w.run(plan, "p").await;
    let st: Vec<TaskStatus> = report.tasks.iter().map(|t| t.status).collect();
    assert_eq!(
        st,
        [
            TaskStatus::Failed,
            TaskStatus::Succeeded,
            TaskStatus::Cancelled
        ],
        "{report:#?}"
    );
    assert!(report.tasks[2].error.as_deref().unwrap().contains("halted"));
    assert_eq!(w.device("QA3").ops("SecureBackup"), 0);
    assert_eq!(w.device("QA2").ops("SecureBackup"), 1);
    assert_eq!(report.status, RunStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_quiesce_that_never_completes_fails_and_is_released() {
    let w = PausedWorld::new([
        FakeAppliance::new("QA1").fault(Fault::on("QuiesceDP", FaultKind::NeverQuiesce)),
        FakeAppliance::new("QA2")
            .fault(Fault::on("QuiesceDP", FaultKind::NeverQuiesce))
            .fault(Fault::on("UnquiesceDP", FaultKind::NeverUnquiesce).times(10)),
    ]);
    let plan = r#"
settings { quiesce_grace = 30s }
plan "p" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    quiesce = 60s
  }
}"#;
    let (report, journal) = w.run(plan, "p").await;
    let records = journal.records(report.run);
    assert_eq!(report.tasks[0].status, TaskStatus::Failed, "{report:#?}");
    assert!(report.tasks[0]
        .error
        .as_deref()
        .unwrap()
        .contains("not quiesced within 90s"));
    // QA1: the unquiesce was issued, the device is normal again.
    assert!(w.device("QA1").ops("UnquiesceDP") >= 1);
    w.device("QA1").assert_clean();
    assert_eq!(
        attempts(&records, 1, "unquiesce"),
        [(1, StepOutcome::Succeeded)]
    );
    // QA2 never unquiesces either: the unquiesce step gives up after timeout + grace.
    assert_eq!(report.tasks[1].status, TaskStatus::Failed);
    assert_eq!(
        attempts(&records, 2, "unquiesce"),
        [(1, StepOutcome::Failed)]
    );
    assert_eq!(
        w.device("QA2").quiesce_state_now(&QuiesceTarget::Device),
        dpplan::appliance::QuiesceState::Unquiescing
    );
    // QA2 waited 90s for its quiesce, then 90s for its unquiesce (tokio time, none of it
    // real), reading the state at most a second apart and backing off to that.
    assert!(w.elapsed() >= Duration::from_secs(180), "{:?}", w.elapsed());
    let reads: Vec<tokio::time::Instant> = w
        .device("QA2")
        .log()
        .into_iter()
        .filter(|(_, op)| op == "DomainStatus")
        .map(|(at, _)| at)
        .collect();
    let gaps: Vec<Duration> = reads.windows(2).map(|p| p[1] - p[0]).collect();
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(1010)),
        "{gaps:?}"
    );
    assert!(
        (170..200).contains(&reads.len()),
        "{} state reads in 180 s",
        reads.len()
    );
}

pub fn chmod_x(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}
