//! The client against the simulator over real sockets (127.0.0.1, ephemeral ports): every
//! operation of the Appliance trait, the full secure-backup and export sequences checked
//! against the deterministic content, and every fault kind ending in the right typed error.

use crate::support::{canned_keep_alive, fixture, http_config, http_get};
use dpplan::appliance::{
    Appliance, ApplianceError, ConnectionConfig, ErrorKind, QuiesceState, QuiesceTarget, SomaClient,
};
use dpplan::sim::{self, content, Fleet, RunningFleet, SimState};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn start(toml: &str) -> RunningFleet {
    sim::serve(&Fleet::parse(toml).unwrap(), LOCAL, false)
        .await
        .unwrap()
}

fn config(fleet: &RunningFleet, name: &str) -> ConnectionConfig {
    let d = fleet.device(name).unwrap();
    http_config(name, d.addr, &d.user, &d.password)
}

fn client(fleet: &RunningFleet, name: &str) -> SomaClient {
    SomaClient::new(config(fleet, name)).unwrap()
}

/// `GET /sim/state` over HTTP, as outside tests read it.
async fn state(fleet: &RunningFleet, name: &str) -> SimState {
    let d = fleet.device(name).unwrap();
    let body = http_get(d.addr, "/sim/state").await;
    let state: SimState = serde_json::from_slice(&body).unwrap();
    assert_eq!(Some(&state), d.state().as_ref());
    state
}

/// Polls until the quiesce state is `want` (the simulator's delays are short in tests).
async fn wait_for(client: &SomaClient, target: &QuiesceTarget, want: QuiesceState) {
    for _ in 0..200 {
        if client.quiesce_state(target).await.unwrap() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{target:?} never reached {want:?}");
}

const QA1: &str = r#"
[defaults]
quiesce_delay = "100ms"
unquiesce_delay = "50ms"
backup_file_size = "300KiB"

[[device]]
name = "QA1"
domains = ["default", "DOMAIN1", "DOMAIN2"]
unsaved = ["DOMAIN2"]
serial = "QA1-0001"
"#;

#[tokio::test]
async fn facts_and_status() {
    let fleet = start(QA1).await;
    let qa1 = client(&fleet, "QA1");
    qa1.probe().await.unwrap();
    let firmware = qa1.firmware().await.unwrap();
    assert_eq!(firmware.class, "FirmwareVersion3");
    assert_eq!(firmware.version, "IDG.10.5.0.12");
    assert_eq!(firmware.build, "354871");
    assert_eq!(firmware.machine_type, "8436");
    assert_eq!(firmware.model_type, "52X");
    assert_eq!(firmware.serial, "QA1-0001");
    let domains = qa1.domains().await.unwrap();
    let summary: Vec<_> = domains
        .iter()
        .map(|d| (d.name.as_str(), d.save_needed))
        .collect();
    assert_eq!(
        summary,
        [("default", false), ("DOMAIN1", false), ("DOMAIN2", true)]
    );
    assert!(domains
        .iter()
        .all(|d| d.quiesce_state == QuiesceState::Normal));
    assert_eq!(qa1.free_temporary().await.unwrap(), 4096 << 20);
    assert!(qa1.certificate_exists("backup-cert").await.unwrap());
    assert!(!qa1.certificate_exists("other-cert").await.unwrap());

    qa1.save_config("DOMAIN2").await.unwrap();
    assert!(qa1.domains().await.unwrap().iter().all(|d| !d.save_needed));
    let e = qa1.save_config("NOPE").await.unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Result(text) if text.contains("NOPE")),
        "{e:?}"
    );

    let s = state(&fleet, "QA1").await;
    // probe (the firmware, kept: `firmware()` makes no request), domains x2, filesystem.
    assert_eq!(s.ops.get("get-status"), Some(&4));
    assert_eq!(s.ops.get("get-config"), Some(&2));
    assert_eq!(s.ops.get("SaveConfig"), Some(&2));
    assert!(s.domains.iter().all(|d| !d.save_needed));
    fleet.shutdown().await;
}

#[tokio::test]
async fn firmware_falls_back_to_older_classes() {
    let fleet = start(
        "[[device]]\nname = \"OLD\"\nfirmware = \"IDG.2018.4.1.7\"\nfirmware_class = \"FirmwareVersion2\"\n",
    )
    .await;
    let old = client(&fleet, "OLD");
    let firmware = old.firmware().await.unwrap();
    assert_eq!(firmware.class, "FirmwareVersion2");
    assert_eq!(firmware.version, "IDG.2018.4.1.7");
    assert_eq!(state(&fleet, "OLD").await.ops.get("get-status"), Some(&2));
    fleet.shutdown().await;
}

#[tokio::test]
async fn quiesce_and_unquiesce_domain_and_device() {
    let fleet = start(QA1).await;
    let qa1 = client(&fleet, "QA1");
    let d1 = QuiesceTarget::Domain("DOMAIN1".into());
    qa1.quiesce(&d1, Duration::from_secs(60)).await.unwrap();
    wait_for(&qa1, &d1, QuiesceState::Quiesced).await;
    let s = state(&fleet, "QA1").await;
    assert_eq!(s.domains[1].quiesce_state, "quiesced");
    assert_eq!(s.domains[2].quiesce_state, "");
    qa1.unquiesce(&d1).await.unwrap();
    wait_for(&qa1, &d1, QuiesceState::Normal).await;

    qa1.quiesce(&QuiesceTarget::Device, Duration::from_secs(60))
        .await
        .unwrap();
    wait_for(&qa1, &QuiesceTarget::Device, QuiesceState::Quiesced).await;
    let s = state(&fleet, "QA1").await;
    assert_eq!(s.device_quiesce_state, "quiesced");
    assert_eq!(
        s.domains[0].quiesce_state, "",
        "device quiesce leaves default alone"
    );
    qa1.unquiesce(&QuiesceTarget::Device).await.unwrap();
    wait_for(&qa1, &QuiesceTarget::Device, QuiesceState::Normal).await;

    let e = qa1
        .quiesce(
            &QuiesceTarget::Domain("NOPE".into()),
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Result(_)), "{e:?}");
    let s = state(&fleet, "QA1").await;
    assert_eq!(s.device_quiesce_state, "");
    for (op, n) in [
        ("DomainQuiesce", 2),
        ("DomainUnquiesce", 1),
        ("QuiesceDP", 1),
        ("UnquiesceDP", 1),
    ] {
        assert_eq!(s.ops.get(op), Some(&n), "{op}");
    }
    fleet.shutdown().await;
}

/// The manifest's checksum of `file`.
fn manifest_checksum(manifest: &str, file: &str) -> String {
    let at = manifest
        .find(&format!("<filename>{file}</filename>"))
        .unwrap();
    let rest = &manifest[at..];
    let start = rest.find("<checksum>").unwrap() + "<checksum>".len();
    let end = rest.find("</checksum>").unwrap();
    rest[start..end].to_string()
}

#[tokio::test]
async fn secure_backup_sequence_downloads_the_deterministic_content() {
    use sha1::Digest as _;
    let fleet = start(QA1).await;
    // As the engine holds it.
    let qa1: Arc<dyn Appliance> = Arc::new(client(&fleet, "QA1"));
    assert_eq!(qa1.device(), "QA1");
    let dir = "temporary:///dpplan-7-3/";
    qa1.secure_backup("backup-cert", dir).await.unwrap();
    let mut files = Vec::new();
    for _ in 0..100 {
        files = qa1.list_directory(dir).await.unwrap();
        if files.iter().any(|f| f.name == "backupmanifest.xml") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, sim::device::SECURE_BACKUP_FILES);
    // 8 archives of 300 KiB and the manifest: FreeTemporary (whole MiB) drops by 3.
    assert_eq!(qa1.free_temporary().await.unwrap(), (4096 - 3) << 20);

    let local = tempfile::tempdir().unwrap();
    let manifest_path = local.path().join("backupmanifest.xml");
    qa1.download(&format!("{dir}backupmanifest.xml"), &manifest_path)
        .await
        .unwrap();
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    assert!(manifest.contains("<serial-number>QA1-0001</serial-number>"));
    for file in files.iter().filter(|f| f.name.ends_with(".tgz")) {
        assert_eq!(file.size, 300 * 1024);
        assert_eq!(file.path, format!("{dir}{}", file.name));
        let dest = local.path().join(&file.name);
        let got = qa1.download(&file.path, &dest).await.unwrap();
        let expected = content::expected_bytes("QA1", &file.name, file.size);
        assert_eq!(std::fs::read(&dest).unwrap(), expected, "{}", file.name);
        assert_eq!(got.size, file.size);
        assert_eq!(
            got.sha256,
            content::expected_sha256("QA1", &file.name, file.size)
        );
        let sha1 = hex::encode(sha1::Sha1::digest(&expected));
        assert_eq!(manifest_checksum(&manifest, &file.name), sha1);
    }
    let s = state(&fleet, "QA1").await;
    assert_eq!(s.temporary_files.len(), 9);
    assert!(s
        .temporary_files
        .contains(&"temporary:///dpplan-7-3/config.tgz".to_string()));
    assert_eq!(s.ops.get("get-file"), Some(&9));
    assert_eq!(s.ops.get("SecureBackup"), Some(&1));

    qa1.remove_directory(dir).await.unwrap();
    assert!(qa1.list_directory(dir).await.unwrap().is_empty());
    assert!(state(&fleet, "QA1").await.temporary_files.is_empty());
    assert_eq!(qa1.free_temporary().await.unwrap(), 4096 << 20);
    let e = qa1.remove_directory(dir).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Result(_)), "{e:?}");
    let e = qa1
        .download(&format!("{dir}config.tgz"), &local.path().join("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Result(text) if text == "Cannot read the specified file"),
        "{e:?}"
    );
    assert!(!local.path().join("x").exists());
    fleet.shutdown().await;
}

#[tokio::test]
async fn secure_backup_failures_carry_the_appliance_text() {
    let fleet = start(
        r#"
[[device]]
name = "NOMODE"
secure_backup_mode = false
[[device]]
name = "FULL"
free_temporary_mb = 1
backup_file_size = "1MiB"
[[device]]
name = "OK"
"#,
    )
    .await;
    for (device, cert) in [
        ("NOMODE", "backup-cert"),
        ("FULL", "backup-cert"),
        ("OK", "unknown-cert"),
    ] {
        let e = client(&fleet, device)
            .secure_backup(cert, "temporary:///b/")
            .await
            .unwrap_err();
        match &e.kind {
            ErrorKind::Result(text) => {
                assert_eq!(
                    (e.device.as_str(), e.op.as_str()),
                    (device, "do-action SecureBackup")
                );
                assert_eq!(text, "Error creating secure backup.");
            }
            other => panic!("{device}: {other:?}"),
        }
        assert!(!e.is_transient());
        assert!(state(&fleet, device).await.temporary_files.is_empty());
    }
    fleet.shutdown().await;
}

fn zip_entry(zip_bytes: &[u8], name: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).unwrap();
    let mut entry = archive.by_name(name).unwrap();
    let mut out = Vec::new();
    entry.read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn export_sequences_give_valid_zips() {
    let fleet = start(QA1).await;
    let qa1 = client(&fleet, "QA1");
    let local = tempfile::tempdir().unwrap();
    let persisted = local.path().join("DOMAIN2-persisted.zip");
    let running = local.path().join("DOMAIN2-nonpersisted.zip");
    let domains = qa1.domains().await.unwrap();
    let d2 = domains.iter().find(|d| d.name == "DOMAIN2").unwrap();
    assert!(
        d2.save_needed,
        "SaveNeeded decides that both exports are taken"
    );
    let a = qa1
        .export_domain("DOMAIN2", true, "run 1 task 2", &persisted)
        .await
        .unwrap();
    let b = qa1
        .export_domain("DOMAIN2", false, "run 1 task 2", &running)
        .await
        .unwrap();
    assert_ne!(a.sha256, b.sha256, "the running configuration differs");
    for (path, flag) in [(&persisted, "true"), (&running, "false")] {
        let bytes = std::fs::read(path).unwrap();
        let xml = String::from_utf8(zip_entry(&bytes, "export.xml")).unwrap();
        assert!(xml.contains("<device-name>QA1</device-name>"), "{xml}");
        assert!(xml.contains("<domain>DOMAIN2</domain>"));
        assert!(xml.contains("<firmware-version>IDG.10.5.0.12</firmware-version>"));
        assert!(xml.contains("<comment>run 1 task 2</comment>"));
        assert!(xml.contains(&format!("<persisted>{flag}</persisted>")));
    }
    let all = local.path().join("all-domains.zip");
    let got = qa1.export_all("run 1", &all).await.unwrap();
    let bytes = std::fs::read(&all).unwrap();
    assert_eq!(got.size, bytes.len() as u64);
    for domain in ["default", "DOMAIN1", "DOMAIN2"] {
        let inner = zip_entry(&bytes, &format!("{domain}.zip"));
        let xml = String::from_utf8(zip_entry(&inner, "export.xml")).unwrap();
        assert!(xml.contains(&format!("<domain>{domain}</domain>")));
    }
    let e = qa1
        .export_domain("NOPE", true, "", &local.path().join("n.zip"))
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Result(_)), "{e:?}");
    let s = state(&fleet, "QA1").await;
    assert_eq!(
        (s.ops.get("do-export"), s.ops.get("do-backup")),
        (Some(&3), Some(&1))
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn export_without_temporary_space_is_an_error() {
    let fleet = start("[[device]]\nname = \"FULL\"\nfree_temporary_mb = 0\n").await;
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("all.zip");
    let e = client(&fleet, "FULL")
        .export_all("", &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Result(text) if text.contains("empty")),
        "{e:?}"
    );
    assert!(!dest.exists());
    fleet.shutdown().await;
}

/// A device whose every `op` request after `after` gets `kind` once.
fn faulty(op: &str, kind: &str, extra: &str) -> String {
    format!(
        "[[device]]\nname = \"F\"\ndomains = [\"default\", \"D\"]\nquiesce_delay = \"50ms\"\n\
         unquiesce_delay = \"50ms\"\nbackup_file_size = \"200KiB\"\n\
         [[device.fault]]\nop = \"{op}\"\nkind = \"{kind}\"\n{extra}\n"
    )
}

/// Secure backup in place, then `get-file` of config.tgz into a temporary directory.
async fn fetch_one(
    fleet: &RunningFleet,
    cfg: ConnectionConfig,
) -> (Result<(), ApplianceError>, bool) {
    let c = SomaClient::new(cfg).unwrap();
    c.secure_backup("backup-cert", "temporary:///f/")
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("config.tgz");
    let result = c
        .download("temporary:///f/config.tgz", &dest)
        .await
        .map(|_| ());
    let _ = fleet;
    (result, dest.exists())
}

#[tokio::test]
async fn fault_reset_is_a_transient_connection_loss() {
    let fleet = start(&faulty("get-status", "reset", "")).await;
    let c = client(&fleet, "F");
    let e = c.domains().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::ConnectionLost { .. }), "{e:?}");
    assert!(e.is_transient());
    assert_eq!(e.device(), "F");
    c.domains().await.unwrap();
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_http500_is_transient() {
    let fleet = start(&faulty("*", "http500", "")).await;
    let e = client(&fleet, "F").probe().await.unwrap_err();
    assert!(
        matches!(e.kind, ErrorKind::Http { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_soap_fault_is_permanent() {
    let fleet = start(&faulty("SecureBackup", "soap-fault", "")).await;
    let e = client(&fleet, "F")
        .secure_backup("backup-cert", "temporary:///x/")
        .await
        .unwrap_err();
    match &e.kind {
        ErrorKind::Fault { code, text } => {
            assert_eq!(
                (code.as_str(), text.as_str()),
                ("env:Client", "Internal Error (from client)")
            );
            assert_eq!(e.op, "do-action SecureBackup");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_transient());
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_auth_failure_and_wrong_password() {
    let fleet = start(&faulty("get-status", "auth-failure", "")).await;
    let e = client(&fleet, "F").probe().await.unwrap_err();
    assert!(matches!(&e.kind, ErrorKind::Auth(text) if text == "Authentication failure"));
    assert!(!e.is_transient());
    let mut cfg = config(&fleet, "F");
    cfg.password = "wrong".into();
    let e = SomaClient::new(cfg).unwrap().probe().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Auth(_)), "{e:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_delay_past_the_request_timeout_is_a_transient_timeout() {
    let fleet = start(&faulty("get-status", "delay", "delay = \"3s\"")).await;
    let mut cfg = config(&fleet, "F");
    cfg.request_timeout = Duration::from_millis(300);
    let c = SomaClient::new(cfg).unwrap();
    let e = c.domains().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());
    c.domains().await.unwrap();
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_truncate_is_a_permanent_truncated_response() {
    let fleet = start(&faulty("get-file", "truncate", "")).await;
    let (result, exists) = fetch_one(&fleet, config(&fleet, "F")).await;
    let e = result.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e:?}");
    assert!(!e.is_transient());
    assert!(!exists, "the partial file is removed");
    fleet.shutdown().await;

    let fleet = start(&faulty("get-status", "truncate", "")).await;
    let e = client(&fleet, "F").domains().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Truncated { .. }), "{e:?}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_bad_base64_is_permanent_and_leaves_no_file() {
    let fleet = start(&faulty("*", "bad-base64", "")).await;
    let (result, exists) = fetch_one(&fleet, config(&fleet, "F")).await;
    let e = result.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidBase64(_)), "{e:?}");
    assert!(!e.is_transient());
    assert!(!exists);
    assert_eq!(state(&fleet, "F").await.faults_remaining, 0);
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_error_text_is_the_appliance_text() {
    let fleet = start(&faulty(
        "do-export",
        "error-text",
        "text = \"Appliance busy\"",
    ))
    .await;
    let local = tempfile::tempdir().unwrap();
    let e = client(&fleet, "F")
        .export_domain("D", true, "", &local.path().join("d.zip"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e.kind, ErrorKind::Result(text) if text == "Appliance busy"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "F: do-export: Appliance busy");
    assert!(!e.is_transient());
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_never_quiesce_and_never_unquiesce() {
    let fleet = start(&faulty("DomainQuiesce", "never-quiesce", "")).await;
    let c = client(&fleet, "F");
    let d = QuiesceTarget::Domain("D".into());
    c.quiesce(&d, Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.quiesce_state(&d).await.unwrap(), QuiesceState::Quiescing);
    c.unquiesce(&d).await.unwrap();
    wait_for(&c, &d, QuiesceState::Normal).await;
    // The fault was used up: the next quiesce completes.
    c.quiesce(&d, Duration::from_secs(60)).await.unwrap();
    wait_for(&c, &d, QuiesceState::Quiesced).await;
    fleet.shutdown().await;

    let fleet = start(&faulty("UnquiesceDP", "never-unquiesce", "")).await;
    let c = client(&fleet, "F");
    c.quiesce(&QuiesceTarget::Device, Duration::from_secs(60))
        .await
        .unwrap();
    wait_for(&c, &QuiesceTarget::Device, QuiesceState::Quiesced).await;
    c.unquiesce(&QuiesceTarget::Device).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.quiesce_state(&QuiesceTarget::Device).await.unwrap(),
        QuiesceState::Unquiescing
    );
    assert_eq!(state(&fleet, "F").await.device_quiesce_state, "unquiescing");
    fleet.shutdown().await;
}

#[tokio::test]
async fn fault_after_and_times_count_matching_requests() {
    let fleet = start(&faulty("get-status", "http500", "after = 1\ntimes = 2")).await;
    let c = client(&fleet, "F");
    assert_eq!(state(&fleet, "F").await.faults_remaining, 2);
    c.probe().await.unwrap();
    c.certificate_exists("backup-cert").await.unwrap(); // not a get-status: not counted
    assert!(c.probe().await.is_err());
    assert!(c.probe().await.is_err());
    c.probe().await.unwrap();
    let s = state(&fleet, "F").await;
    assert_eq!(s.faults_remaining, 0);
    assert_eq!(s.ops.get("get-status"), Some(&4));
    fleet.shutdown().await;
}

#[tokio::test]
async fn device_down_refuses_connections() {
    let fleet = start("[[device]]\nname = \"TEST9\"\ndown = true\n").await;
    assert!(fleet.device("TEST9").unwrap().state().is_none());
    let e = client(&fleet, "TEST9").probe().await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Connect { .. }), "{e:?}");
    assert!(e.is_transient());
    // The root cause and the address, not the HTTP stack's layers of wrapping.
    let addr = fleet.device("TEST9").unwrap().addr;
    assert!(e.text().ends_with(&format!("({addr})")), "{}", e.text());
    assert!(e.text().contains("refused"), "{}", e.text());
    assert!(!e.text().contains("error sending request"), "{}", e.text());
    // The message is the device, the operation and the kind; the connection's own error
    // stays reachable as the source.
    assert_eq!(
        e.to_string(),
        format!(
            "TEST9: get-status FirmwareVersion3: cannot connect: {}",
            e.text()
        )
    );
    let cause = std::error::Error::source(&e).expect("the connection error as the source");
    assert!(
        cause.to_string().contains("error sending request"),
        "{cause}"
    );
    fleet.shutdown().await;
}

/// Every kind displays as `DEVICE: OP: ` and its own words, as the CLI has always printed
/// them; only connection and file errors have a source.
#[test]
fn appliance_errors_display_device_op_and_kind() {
    let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
    let cases = [
        (
            ErrorKind::connection_lost("reset"),
            "connection lost: reset",
        ),
        (ErrorKind::timeout("no answer"), "timed out: no answer"),
        (
            ErrorKind::Http {
                status: 503,
                text: "busy".into(),
            },
            "HTTP 503: busy",
        ),
        (
            ErrorKind::Auth("Authentication failure".into()),
            "Authentication failure",
        ),
        (
            ErrorKind::Fault {
                code: "env:Client".into(),
                text: "bad".into(),
            },
            "SOAP fault env:Client: bad",
        ),
        (ErrorKind::Result("Appliance busy".into()), "Appliance busy"),
        (
            ErrorKind::InvalidBase64("at 3".into()),
            "invalid base64 payload: at 3",
        ),
        (
            ErrorKind::truncated("ends early"),
            "truncated response: ends early",
        ),
        (
            ErrorKind::Malformed("no dp:response".into()),
            "unexpected response: no dp:response",
        ),
        (ErrorKind::TooLarge("over 10 bytes".into()), "over 10 bytes"),
        (ErrorKind::io("/x: denied", io()), "/x: denied"),
        (
            ErrorKind::config("CA file /ca.pem: gone"),
            "invalid connection settings: CA file /ca.pem: gone",
        ),
    ];
    for (kind, words) in cases {
        let has_source = matches!(kind, ErrorKind::Io { .. });
        let e = kind.at("DP1", "do-action SaveConfig");
        assert_eq!(e.to_string(), format!("DP1: do-action SaveConfig: {words}"));
        assert_eq!(std::error::Error::source(&e).is_some(), has_source, "{e:?}");
    }
}

#[tokio::test]
async fn tls_with_the_generated_ca() {
    let fleet = sim::serve(
        &Fleet::parse("[[device]]\nname = \"S\"\n").unwrap(),
        LOCAL,
        true,
    )
    .await
    .unwrap();
    let local = tempfile::tempdir().unwrap();
    let ca = local.path().join("ca.pem");
    std::fs::write(&ca, fleet.ca_pem.as_ref().unwrap()).unwrap();
    let mut cfg = config(&fleet, "S");
    cfg.tls = true;
    let trusted = ConnectionConfig {
        tls_ca: Some(ca.clone()),
        ..cfg.clone()
    };
    SomaClient::new(trusted).unwrap().probe().await.unwrap();
    let insecure = ConnectionConfig {
        insecure: true,
        ..cfg.clone()
    };
    SomaClient::new(insecure).unwrap().probe().await.unwrap();
    let e = SomaClient::new(cfg.clone())
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Tls { .. }), "{e:?}");
    assert!(!e.is_transient());
    let missing = ConnectionConfig {
        tls_ca: Some(local.path().join("none.pem")),
        ..cfg
    };
    let e = SomaClient::new(missing).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Config { .. }), "{e:?}");
    assert!(fleet
        .inventory(Some(Path::new("/x/ca.pem")))
        .contains("tls_ca   = \"/x/ca.pem\""));
    fleet.shutdown().await;
}

#[tokio::test]
async fn larger_file_streams_through() {
    let fleet = start("[[device]]\nname = \"BIG\"\nbackup_file_size = \"20MiB\"\n").await;
    let c = client(&fleet, "BIG");
    c.secure_backup("backup-cert", "temporary:///big/")
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let got = c
        .download("temporary:///big/root.tgz", &local.path().join("root.tgz"))
        .await
        .unwrap();
    assert_eq!(got.size, 20 << 20);
    assert_eq!(
        got.sha256,
        content::expected_sha256("BIG", "root.tgz", 20 << 20)
    );
    fleet.shutdown().await;
}

#[test]
fn inventory_matches_the_fleet() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let fleet = start(
            "[[device]]\nname = \"QA1\"\n[[device]]\nname = \"QA-2\"\npassword = \"s3\"\n[[device]]\nname = \"T9\"\ndown = true\n",
        )
        .await;
        let text = fleet.inventory(None);
        for d in &fleet.devices {
            assert!(
                text.contains(&format!("device \"{}\" {{ host = \"127.0.0.1\"  port = {}", d.name, d.addr.port())),
                "{text}"
            );
        }
        assert!(text.contains("password = env(\"DPPLAN_SIM_PASSWORD_QA_2\")"));
        assert!(text.contains("tls      = false"));
        fleet.shutdown().await;
    });
}

#[tokio::test]
async fn a_cancelled_download_leaves_no_file() {
    let fleet = start(
        "[[device]]\nname = \"C\"\nbackup_file_size = \"256MiB\"\n\
         [[device.fault]]\nop = \"get-file\"\nkind = \"delay\"\ndelay = \"2s\"\n",
    )
    .await;
    let c = Arc::new(client(&fleet, "C"));
    c.secure_backup("backup-cert", "temporary:///c/")
        .await
        .unwrap();
    let local = tempfile::tempdir().unwrap();
    let dest = local.path().join("root.tgz");
    // Cancelled while waiting for the answer (the first get-file is delayed).
    let waited = tokio::time::timeout(
        Duration::from_millis(100),
        c.download("temporary:///c/root.tgz", &dest),
    )
    .await;
    assert!(waited.is_err());
    assert!(!dest.exists());
    // Cancelled while the payload streams.
    let task = {
        let (c, dest) = (Arc::clone(&c), dest.clone());
        tokio::spawn(async move { c.download("temporary:///c/root.tgz", &dest).await })
    };
    for _ in 0..500 {
        if std::fs::metadata(&dest)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        std::fs::metadata(&dest).unwrap().len() > 0,
        "the download started"
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!dest.exists());
    fleet.shutdown().await;
}

#[tokio::test]
async fn kept_alive_connections_are_reused_and_a_closed_one_is_replaced() {
    let answer = std::fs::read(fixture("domain_status_list.xml")).unwrap();
    let (addr, accepted) = canned_keep_alive(answer, 2).await;
    let c = SomaClient::new(http_config("K", addr, "admin", "admin")).unwrap();
    for n in 1..=5 {
        let domains = c
            .domains()
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert!(!domains.is_empty());
        // Let the server's close arrive while the connection sits in the pool.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two requests per connection: 5 requests on 3 connections, none reported as lost.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A `down` device refuses connections, and its port stays its own while the fleet lives:
/// no other listener (another fleet, a test's server) can take it and answer in its place.
#[tokio::test]
async fn a_down_devices_port_refuses_and_is_not_taken_by_others() {
    let fleet = start(
        "[defaults]\nuser = \"admin\"\npassword = \"p\"\n[[device]]\nname = \"UP\"\n[[device]]\nname = \"DOWN\"\ndown = true\n",
    )
    .await;
    let addr = fleet.device("DOWN").unwrap().addr;
    assert_ne!(addr.port(), 0);
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let taken = tokio::net::TcpListener::bind(addr).await.unwrap_err();
    assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
    fleet.shutdown().await;
    // Given back with the fleet.
    drop(tokio::net::TcpListener::bind(addr).await.unwrap());
}
