//! Every recorded device response in tests/fixtures/soma, through the client's real code path
//! (an HTTP server on loopback answering with the file), parses to the right value or error.
//! Payload fixtures also go through the streaming decoder in chunks of every awkward size.

use crate::support::golden::Golden;
use crate::support::{canned_client, canned_client_recording, fixture, root, Received};
use base64::Engine as _;
use dpplan::appliance::payload::decode_document;
use dpplan::appliance::{Appliance, ApplianceError, ErrorKind, QuiesceState};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The base64 text inside `<dp:file ...>` of a fixture, decoded independently.
fn inline_payload(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    let start = text.find("<dp:file").unwrap();
    let start = start + text[start..].find('>').unwrap() + 1;
    let end = text.find("</dp:file>").unwrap();
    let b64: String = text[start..end].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn result_text(e: &ApplianceError) -> &str {
    match &e.kind {
        ErrorKind::Result(text) => text,
        other => panic!("expected a dp:result error, got {other:?}"),
    }
}

/// The one request body `received` holds, as text.
fn only_request(received: &Received) -> String {
    let bodies = received.lock().unwrap();
    assert_eq!(bodies.len(), 1, "requests sent: {}", bodies.len());
    String::from_utf8(bodies[0].clone()).unwrap()
}

/// `dp:result OK` is success; the request named the action and its arguments.
#[tokio::test]
async fn secure_backup_ok() {
    let (client, received) = canned_client_recording("SecureBackup_ok.xml").await;
    let r = client.secure_backup("backup-cert", "temporary:///b/").await;
    assert!(r.is_ok(), "{r:?}");
    let sent = only_request(&received);
    for part in [
        "<SecureBackup>",
        "<cert>backup-cert</cert>",
        "<destination>temporary:///b/</destination>",
    ] {
        assert!(sent.contains(part), "{part} not in {sent}");
    }
}

#[tokio::test]
async fn secure_backup_error() {
    let client = canned_client("SecureBackup_error.xml").await;
    let e = client
        .secure_backup("backup-cert", "temporary:///b/")
        .await
        .unwrap_err();
    assert_eq!(result_text(&e), "Error creating secure backup.");
    assert_eq!(e.device(), "FIXTURE");
    assert_eq!(e.op(), "do-action SecureBackup");
    assert!(!e.is_transient());
}

#[tokio::test]
async fn domain_status_list() {
    let client = canned_client("domain_status_list.xml").await;
    let domains = client.domains().await.unwrap();
    let summary: Vec<_> = domains
        .iter()
        .map(|d| (d.name.as_str(), d.save_needed, d.quiesce_state.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("default", false, QuiesceState::Normal),
            ("test", true, QuiesceState::Normal)
        ]
    );
}

#[tokio::test]
async fn status_class_list_firmware() {
    let client = canned_client("status_class_list.xml").await;
    let firmware = client.firmware().await.unwrap();
    assert_eq!(firmware.class, "FirmwareVersion3");
    assert_eq!(firmware.serial, "0000001");
    assert_eq!(firmware.version, "IDG.2018.4.1.7");
    assert_eq!(firmware.build, "312001");
    assert_eq!(firmware.build_date, "2019/08/09 15:50:38");
    assert_eq!(firmware.delivery_type, "LTS");
    assert_eq!(firmware.machine_type, "n/a");
    assert_eq!(firmware.model_type, "n/a");
}

#[tokio::test]
async fn status_class_list_filesystem_and_domains() {
    let client = canned_client("status_class_list.xml").await;
    assert_eq!(client.free_temporary().await.unwrap(), 44862 * 1024 * 1024);
    let names: Vec<_> = client
        .domains()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["default", "test"]);
}

#[tokio::test]
async fn filestore_all_list() {
    let client = canned_client("filestore_all_list.xml").await;
    let files = client.list_directory("local:///upload/").await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "test-existing-file.txt");
    assert_eq!(files[0].path, "local:///upload/test-existing-file.txt");
    assert_eq!(files[0].size, 12);
    assert_eq!(files[0].modified, "2020-02-10 05:51:47");
    // A location's own files, a nested empty directory, and a directory that is not there.
    let logs = client.list_directory("logtemp:").await.unwrap();
    let names: Vec<_> = logs.iter().map(|f| (f.name.as_str(), f.size)).collect();
    assert_eq!(names, [("default-log", 12190), ("default-log-xml", 51588)]);
    assert!(client
        .list_directory("local:///upload/test-existing-dir")
        .await
        .unwrap()
        .is_empty());
    assert!(client
        .list_directory("temporary:///dpplan-1/")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn filestore_layout_list() {
    let client = canned_client("filestore_layout_list.xml").await;
    assert!(client
        .list_directory("temporary:")
        .await
        .unwrap()
        .is_empty());
    assert!(client.list_directory("config:").await.unwrap().is_empty());
}

#[tokio::test]
async fn export_soap() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("export.zip");
    let client = canned_client("export.soap").await;
    let got = client
        .export_domain("test", true, "fixture", &dest)
        .await
        .unwrap();
    let expected = inline_payload("export.soap");
    let written = std::fs::read(&dest).unwrap();
    assert_eq!(written, expected);
    assert!(written.starts_with(b"PK\x03\x04"));
    assert_eq!(got.size, expected.len() as u64);
    assert_eq!(got.sha256, hex::encode(Sha256::digest(&expected)));
    let zip = zip::ZipArchive::new(std::io::Cursor::new(written)).unwrap();
    assert!(zip.file_names().any(|n| n == "export.xml"));
}

#[tokio::test]
async fn get_file_with_name_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("example-context.js");
    let client = canned_client("get_file_gatewayscript_example_context.xml").await;
    let got = client
        .download("store:///gatewayscript/example-context.js", &dest)
        .await
        .unwrap();
    let written = std::fs::read(&dest).unwrap();
    assert_eq!(
        written,
        inline_payload("get_file_gatewayscript_example_context.xml")
    );
    assert!(String::from_utf8(written)
        .unwrap()
        .starts_with("/*\n  Licensed Materials"));
    assert_eq!(got.size, 693);
}

#[tokio::test]
async fn get_file_not_base64_is_an_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("b64-err-file.txt");
    let client = canned_client("get_file_gatewayscript_nonb64.xml").await;
    let e = client
        .download("store:///gatewayscript/b64-err-file.txt", &dest)
        .await
        .unwrap_err();
    assert!(matches!(e.kind, ErrorKind::InvalidBase64(_)), "{e:?}");
    assert!(!e.is_transient());
    assert!(!dest.exists());
}

#[tokio::test]
async fn get_file_missing() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("missing");
    let client = canned_client("non_existing_resource.xml").await;
    let e = client
        .download("temporary:///nope", &dest)
        .await
        .unwrap_err();
    assert_eq!(result_text(&e), "Cannot read the specified file");
    assert_eq!(e.op(), "get-file");
    assert!(!dest.exists());
}

#[tokio::test]
async fn set_file_ok() {
    let (client, received) = canned_client_recording("update_file.xml").await;
    let r = client.save_config("default").await;
    assert!(r.is_ok(), "{r:?}");
    let sent = only_request(&received);
    assert!(sent.contains("<SaveConfig"), "{sent}");
    assert!(sent.contains("domain=\"default\""), "{sent}");
}

#[tokio::test]
async fn authentication_failure() {
    let client = canned_client("update_file_existing_dir.xml").await;
    let e = client.probe().await.unwrap_err();
    assert!(matches!(&e.kind, ErrorKind::Auth(text) if text == "Authentication failure"));
    assert!(!e.is_transient());
}

#[tokio::test]
async fn exec_config_ok() {
    let (client, received) = canned_client_recording("ExecConfig_ok.xml").await;
    let r = client.remove_directory("temporary:///x").await;
    assert!(r.is_ok(), "{r:?}");
    let sent = only_request(&received);
    assert!(sent.contains("<RemoveDir>"), "{sent}");
    assert!(sent.contains("temporary:///x"), "{sent}");
}

/// Every kind of request the client sends, byte for byte as it reaches the appliance,
/// compared with tests/golden/requests/ (`DPPLAN_BLESS=1` rewrites them). The answer is a
/// plain `dp:result OK`, so calls that wanted more fail after sending: only what was sent
/// matters here.
#[tokio::test]
async fn every_request_matches_its_golden_file() {
    use dpplan::appliance::QuiesceTarget;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let golden = root().join("tests/golden/requests");
    let mut g = Golden::new();
    let domain = QuiesceTarget::Domain("DOMAIN1".into());
    macro_rules! case {
        ($name:expr, $client:ident => $call:expr) => {{
            let ($client, received) = canned_client_recording("ExecConfig_ok.xml").await;
            let _ = $call;
            let bodies = received.lock().unwrap().clone();
            if bodies.is_empty() {
                g.fail(format!("{}: nothing sent", $name));
            }
            let text: Vec<String> = bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            g.check(
                &golden.join(concat!($name, ".xml")),
                $name,
                &text.join("\n"),
            );
        }};
    }
    case!("probe", c => c.probe().await);
    case!("firmware", c => c.firmware().await);
    case!("domains", c => c.domains().await);
    case!("free-temporary", c => c.free_temporary().await);
    case!("certificate-exists", c => c.certificate_exists("backup-cert").await);
    case!("quiesce-device", c => c.quiesce(&QuiesceTarget::Device, Duration::from_secs(90)).await);
    case!("quiesce-domain", c => c.quiesce(&domain, Duration::from_secs(30)).await);
    case!("unquiesce-device", c => c.unquiesce(&QuiesceTarget::Device).await);
    case!("unquiesce-domain", c => c.unquiesce(&domain).await);
    case!("save-config", c => c.save_config("DOMAIN1").await);
    case!("secure-backup", c => c.secure_backup("backup-cert", "temporary:///dpplan-1-2/").await);
    case!("list-directory", c => c.list_directory("temporary:///dpplan-1-2/").await);
    case!("download", c => c.download("temporary:///dpplan-1-2/config.tgz", &dest).await);
    case!("remove-directory", c => c.remove_directory("temporary:///dpplan-1-2").await);
    case!("export-domain-persisted", c => c.export_domain("DOMAIN1", true, "dpplan run 1", &dest).await);
    case!("export-domain-running", c => c.export_domain("DOMAIN1", false, "dpplan run 1", &dest).await);
    case!("export-all", c => c.export_all("dpplan run 1", &dest).await);
    g.assert_all();
}

#[tokio::test]
async fn exec_config_error_log() {
    let client = canned_client("ExecConfig_error.xml").await;
    let e = client.remove_directory("temporary:///x").await.unwrap_err();
    assert_eq!(
        result_text(&e),
        "Unable to execute local:/config-err.cfg - must be text file."
    );
}

fn decode_in_chunks(name: &str, chunk: usize, dest: &Path) -> Result<Vec<u8>, ErrorKind> {
    let xml = std::fs::read(fixture(name)).unwrap();
    decode_document(&xml, dest, chunk, false).map(|d| {
        let bytes = std::fs::read(dest).unwrap();
        assert_eq!(d.size, bytes.len() as u64);
        assert_eq!(d.sha256, hex::encode(Sha256::digest(&bytes)));
        bytes
    })
}

#[test]
fn payload_fixtures_decode_the_same_in_any_chunking() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    for name in ["export.soap", "get_file_gatewayscript_example_context.xml"] {
        let expected = inline_payload(name);
        for chunk in [1, 2, 3, 5, 7, 64, 1000, 1 << 20] {
            assert_eq!(
                decode_in_chunks(name, chunk, &dest).unwrap(),
                expected,
                "{name} {chunk}"
            );
        }
    }
    for chunk in [1, 3, 4096] {
        let e = decode_in_chunks("get_file_gatewayscript_nonb64.xml", chunk, &dest).unwrap_err();
        assert!(matches!(e, ErrorKind::InvalidBase64(_)), "{e:?}");
        assert!(!dest.exists());
        let e = decode_in_chunks("non_existing_resource.xml", chunk, &dest).unwrap_err();
        assert!(
            matches!(&e, ErrorKind::Result(text) if text == "Cannot read the specified file"),
            "{e:?}"
        );
    }
}

#[test]
fn every_fixture_is_covered() {
    let covered = [
        "ExecConfig_error.xml",
        "ExecConfig_ok.xml",
        "SecureBackup_error.xml",
        "SecureBackup_ok.xml",
        "domain_status_list.xml",
        "export.soap",
        "filestore_all_list.xml",
        "filestore_layout_list.xml",
        "get_file_gatewayscript_example_context.xml",
        "get_file_gatewayscript_nonb64.xml",
        "non_existing_resource.xml",
        "status_class_list.xml",
        "update_file.xml",
        "update_file_existing_dir.xml",
    ];
    let dir = fixture("");
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".xml") || n.ends_with(".soap"))
        .collect();
    present.sort();
    assert_eq!(present, covered);
}
