//! What real appliances answer, as other tools recorded it: old firmware that is slow to
//! probe, SOAP Faults sent with HTTP 500, DomainStatus without QuiesceState. Through the
//! binary against the simulator; the probe's time limits in process on paused time.

use crate::engine::World;
use crate::support::appliance::{FakeAppliance, Fault, FaultKind};
use crate::support::fleet::{DeviceEntry, FleetFile, SimFault};
use crate::support::world::PausedWorld;
use crate::support::Test;
use dpplan::engine::RunOptions;
use dpplan::store::TaskStatus;
use std::time::Duration;

fn plan(w: &World, activity: &str) -> String {
    w.plan_file("", &format!("plan \"p\" {{\n{activity}\n}}\n"))
}

async fn run(w: &World, activity: &str) -> (i32, serde_json::Value) {
    let t = Test::new()
        .file("p.dpplan", &plan(w, activity))
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let v = serde_json::from_str(&ran.stdout).unwrap_or_else(|_| panic!("{}", ran.stderr));
    (ran.status, v)
}

/// A fleet of small backups (4 KiB files), its devices added by each test.
fn small() -> FleetFile {
    FleetFile::new().set("backup_file_size", "4KiB")
}

const BACKUP: &str =
    "  activity secure_backup {\n    devices = \"OLD\"\n    cert = \"backup-cert\"\n  }";

/// An old appliance answers FirmwareVersion3 and FirmwareVersion2 with a Fault, and only
/// FirmwareVersion: it is probed (three firmware classes, then the domains) and backed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_appliance_is_probed_through_its_firmware_classes() {
    let w = World::new(
        small().device(
            DeviceEntry::new("OLD")
                .set("firmware_class", "FirmwareVersion")
                .domains(&["default", "D1"]),
        ),
    )
    .await;
    let activity = "  activity export_domain {\n    devices = \"OLD\"\n    domains = \"D1\"\n  }";
    let (status, v) = run(&w, activity).await;
    assert_eq!(status, 0, "{v}");
    assert_eq!(v["tasks"][0]["status"], "SUCCEEDED", "{v}");
    assert_eq!(w.state("OLD").ops.get("get-status").copied(), Some(4 + 1));
}

const EXPORT_OLD: &str = r#"
plan "p" {
  activity export_domain {
    devices = "OLD"
    domains = "DOMAIN1"
  }
}"#;

/// Each of the probe's four requests of an old appliance may take up to its `timeout`: a
/// probe of 10.4 s is slow, not down. The probe used to give up after a fixed 10 s
/// ("device not available") whatever the device's `timeout` (60 s by default). On paused
/// time: the 10.4 s pass at once.
#[tokio::test(start_paused = true)]
async fn a_slow_old_appliance_is_probed_within_its_own_timeout() {
    let w = PausedWorld::new([FakeAppliance::new("OLD").fault(Fault::on(
        "probe",
        FaultKind::Delay(Duration::from_millis(10_400)),
    ))]);
    let (report, _) = w.run(EXPORT_OLD, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    assert!(w.elapsed() >= Duration::from_millis(10_400));
}

/// The probe's limit is four times the device's `timeout` when that is longer than the
/// run's least probe time (10 s), and no more: with `timeout = 2s`, 10.4 s is too long.
#[tokio::test(start_paused = true)]
async fn a_probe_longer_than_its_limit_makes_the_device_unavailable() {
    let w = PausedWorld::new([FakeAppliance::new("OLD").fault(Fault::on(
        "probe",
        FaultKind::Delay(Duration::from_millis(10_400)),
    ))]);
    let (report, _) = w
        .run_full(EXPORT_OLD, "p", "timeout = 2s", RunOptions::default(), None)
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Skipped, "{report:#?}");
    let error = report.tasks[0].error.as_deref().unwrap();
    assert!(
        error.contains("did not finish within 10s: 4 requests of at most 2s each"),
        "{error}"
    );
    // With `timeout = 3s` the limit is 12 s: the same probe is in time.
    let (report, _) = w
        .run_full(EXPORT_OLD, "p", "timeout = 3s", RunOptions::default(), None)
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
}

/// SOAP 1.1 lets a Fault come with HTTP 500. It is a Fault all the same: the firmware
/// classes fall back, and a step's Fault reads as one (not "HTTP 500: <?xml ...", retried
/// as transient).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_sent_with_http_500_is_a_fault() {
    let w = World::new(
        small().device(
            DeviceEntry::new("OLD")
                .set("firmware_class", "FirmwareVersion2")
                .set_raw("fault_http500", "true")
                .fault(SimFault::new("SecureBackup", "soap-fault").times(1)),
        ),
    )
    .await;
    let (status, v) = run(&w, BACKUP).await;
    assert_eq!(status, 1, "{v}");
    let task = &v["tasks"][0];
    // Probed (FirmwareVersion2 after a Fault for 3), then the backup's Fault, not retried.
    assert_eq!(task["status"], "FAILED", "{v}");
    let error = task["error"].as_str().unwrap();
    assert!(
        error.contains("SOAP fault env:Client: Internal Error (from client)"),
        "{error}"
    );
    assert!(
        !error.contains("<?xml") && !error.contains("HTTP 500"),
        "{error}"
    );
    assert_eq!(w.state("OLD").ops.get("SecureBackup"), Some(&1));
    w.assert_clean();
}

/// Firmware older than quiesce reports no QuiesceState: a quiesce used to wait out its
/// timeout and grace (65 s a task, some 200 polls) before failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_quiesce_state_fails_at_once() {
    let w = World::new(
        small().device(
            DeviceEntry::new("OLD")
                .set_raw("no_quiesce_state", "true")
                .domains(&["default", "D1"]),
        ),
    )
    .await;
    let started = std::time::Instant::now();
    let activity = "  activity export_domain {\n    devices = \"OLD\"\n    domains = \"D1\"\n    quiesce = 60s\n  }";
    let (status, v) = run(&w, activity).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(status, 1, "{v}");
    let error = v["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("does not report quiesce states"), "{error}");
    // Nothing was quiesced.
    assert_eq!(w.state("OLD").ops.get("DomainQuiesce"), None);
}

/// A Fault body sent with 500 is a Fault; with 401 it is still refused credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_decides_between_a_fault_and_refused_credentials() {
    use dpplan::appliance::{Appliance, ErrorKind, SomaClient};
    let fault = b"<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body><env:Fault><faultcode>env:Client</faultcode><faultstring>Internal Error (from client)</faultstring></env:Fault></env:Body></env:Envelope>".to_vec();
    let at500 = crate::support::canned_status("500 Internal Server Error", fault.clone()).await;
    let client = SomaClient::new(crate::support::http_config("F", at500, "u", "p")).unwrap();
    let e = client.domains().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Fault { .. }), "{e:?}");
    assert!(!e.is_transient());
    let at401 = crate::support::canned_status("401 Unauthorized", fault).await;
    let client = SomaClient::new(crate::support::http_config("F", at401, "u", "p")).unwrap();
    let e = client.domains().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e:?}");
}
