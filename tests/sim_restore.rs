//! The simulator's side of restore, over real sockets with hand-written SOMA envelopes: the
//! configuration exports carry, administrator changes and the digests `/sim/state` shows,
//! do-import (dry run, apply, overwrite off, the `import-error` fault), checkpoints (and
//! `checkpoint-full`), set-file, SecureRestore's checks and its restart, SaveConfig.

use crate::support::fleet::{DeviceEntry, FleetFile, SimFault};
use crate::support::{http_get, http_post};
use base64::Engine as _;
use dpplan::sim::domain::{default_config, Config, Object};
use dpplan::sim::request::{read, Element};
use dpplan::sim::{self, DomainView, Fleet, RunningFleet, SimState};
use sha1::Digest as _;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn start(fleet: FleetFile) -> RunningFleet {
    let fleet = Fleet::parse(&fleet.to_string()).unwrap();
    sim::serve(&fleet, IpAddr::V4(Ipv4Addr::LOCALHOST), false)
        .await
        .unwrap()
}

/// QA1 (and QA2) with `default`, DOMAIN1 and DOMAIN2 (unsaved).
fn fleet() -> FleetFile {
    FleetFile::new()
        .set("backup_file_size", "4KiB")
        .domains(&["default", "DOMAIN1", "DOMAIN2"])
        .device(DeviceEntry::new("QA1").unsaved(&["DOMAIN2"]))
        .device(DeviceEntry::new("QA2"))
}

/// Sends `operation` in `domain` to `device`; the answer's text.
async fn soma(fleet: &RunningFleet, device: &str, domain: &str, operation: &str) -> String {
    let d = fleet.device(device).unwrap();
    let body = format!(
        "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body>\
         <dp:request domain=\"{domain}\" xmlns:dp=\"http://www.datapower.com/schemas/management\">\
         {operation}</dp:request></env:Body></env:Envelope>"
    );
    let auth = Some((d.user.as_str(), d.password.as_str()));
    let (status, answer) = http_post(d.addr, "/service/mgmt/current", auth, body.into()).await;
    assert_eq!(status, 200, "{operation}");
    String::from_utf8(answer).unwrap()
}

/// The first element named `name` under `e`, depth first.
fn find<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    if e.name == name {
        return Some(e);
    }
    e.children.iter().find_map(|c| find(c, name))
}

/// Every element named `name` under `e`.
fn all<'a>(e: &'a Element, name: &str, out: &mut Vec<&'a Element>) {
    if e.name == name {
        out.push(e);
    }
    for c in &e.children {
        all(c, name, out);
    }
}

/// `OK`, or the error text of a `dp:result` (either shape).
fn result(answer: &str) -> String {
    let root = read(answer.as_bytes()).unwrap();
    let r = find(&root, "result").unwrap_or_else(|| panic!("no dp:result in {answer}"));
    match find(r, "log-event") {
        Some(event) => event.text.trim().to_string(),
        None => r.text.trim().to_string(),
    }
}

async fn action(fleet: &RunningFleet, device: &str, domain: &str, action: &str) -> String {
    let answer = soma(
        fleet,
        device,
        domain,
        &format!("<dp:do-action>{action}</dp:do-action>"),
    )
    .await;
    result(&answer)
}

/// The ZIP of a do-export.
async fn export(fleet: &RunningFleet, device: &str, domain: &str, persisted: bool) -> Vec<u8> {
    let answer = soma(
        fleet,
        device,
        domain,
        &format!(
            "<dp:do-export format=\"ZIP\" all-files=\"true\" persisted=\"{persisted}\">\
             <dp:user-comment>test</dp:user-comment>\
             <dp:object class=\"all-classes\" name=\"all-objects\" ref-objects=\"true\" ref-files=\"true\"/>\
             </dp:do-export>"
        ),
    )
    .await;
    let root = read(answer.as_bytes()).unwrap();
    B64.decode(find(&root, "file").unwrap().text.trim())
        .unwrap()
}

fn zip_entry(zip: &[u8], name: &str) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut out = Vec::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// The configuration an export ZIP carries, read as the contract describes it; also checks
/// each file's `src` entry and `hash`.
fn exported_config(zip: &[u8], domain: &str) -> Config {
    let xml = zip_entry(zip, "export.xml");
    let root = read(&xml).unwrap();
    assert_eq!(root.name, "datapower-configuration");
    assert_eq!(root.attr("version"), Some("3"));
    assert_eq!(
        root.child("export-details").unwrap().child_text("domain"),
        domain
    );
    let configuration = root.child("configuration").unwrap();
    assert_eq!(configuration.attr("domain"), Some(domain));
    let mut config = Config::default();
    for o in &configuration.children {
        config.put(Object {
            class: o.name.clone(),
            name: o.attr("name").unwrap().to_string(),
            properties: o
                .children
                .iter()
                .map(|p| (p.name.clone(), p.text.clone()))
                .collect(),
        });
    }
    for f in root.child("files").unwrap().children_named("file") {
        let bytes = zip_entry(zip, f.attr("src").unwrap());
        assert_eq!(f.attr("location"), Some("local"));
        assert_eq!(
            f.attr("hash").unwrap(),
            B64.encode(sha1::Sha1::digest(&bytes)),
            "{:?}",
            f.attr("name")
        );
        config
            .files
            .insert(f.attr("name").unwrap().to_string(), bytes.into());
    }
    config
}

async fn view(fleet: &RunningFleet, device: &str, domain: &str) -> DomainView {
    let d = fleet.device(device).unwrap();
    let state: SimState = serde_json::from_slice(&http_get(d.addr, "/sim/state").await).unwrap();
    state
        .domains
        .into_iter()
        .find(|v| v.name == domain)
        .unwrap()
}

/// `POST /sim/devices/{device}/domains/{domain}/change`: status and JSON.
async fn change(
    fleet: &RunningFleet,
    device: &str,
    domain: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let d = fleet.device("QA1").unwrap();
    let path = format!("/sim/devices/{device}/domains/{domain}/change");
    let (status, answer) = http_post(d.addr, &path, None, body.as_bytes().to_vec()).await;
    let json = serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn import_op(zip: &[u8], dry_run: bool, overwrite: bool) -> String {
    format!(
        "<dp:do-import source-type=\"ZIP\" dry-run=\"{dry_run}\" overwrite-files=\"{overwrite}\" \
         overwrite-objects=\"{overwrite}\" rewrite-local-ip=\"false\">\
         <dp:input-file>{}</dp:input-file></dp:do-import>",
        B64.encode(zip)
    )
}

/// `(class or file name, name, status)` of the import answer's imported-objects and
/// imported-files, and `(name, status or result)` of its cfg-results and file-results.
fn import_rows(answer: &str, element: &str, status: &str) -> Vec<(String, String)> {
    let root = read(answer.as_bytes()).unwrap();
    let mut found = Vec::new();
    all(&root, element, &mut found);
    found
        .iter()
        .map(|e| {
            let name = e.attr("name").unwrap_or("").to_string();
            (name, e.attr(status).unwrap_or("").to_string())
        })
        .collect()
}

fn status_of<'a>(rows: &'a [(String, String)], name: &str) -> &'a str {
    &rows.iter().find(|(n, _)| n == name).unwrap().1
}

#[tokio::test]
async fn exports_carry_the_configuration_in_the_contract_shape() {
    let fleet = start(fleet()).await;
    let zip = export(&fleet, "QA1", "DOMAIN1", true).await;
    let config = exported_config(&zip, "DOMAIN1");
    assert_eq!(config, default_config("QA1", "DOMAIN1"));
    let fw = &config.objects[&("XMLFirewallService".into(), "DOMAIN1-fw".into())];
    assert_eq!(fw[0], ("mAdminState".into(), "enabled".into()));
    assert!(fw.iter().any(|(k, _)| k == "LocalPort"));
    assert!(config.files.contains_key("local:///dp-DOMAIN1.xsl"));
    assert!(config.files.contains_key("local:///routes/DOMAIN1.xml"));
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(config.digest(), v.digest);
    assert_eq!(v.digest, v.saved_digest);

    // DOMAIN2 has unsaved changes: the running export has one more object.
    let saved = exported_config(&export(&fleet, "QA1", "DOMAIN2", true).await, "DOMAIN2");
    let running = exported_config(&export(&fleet, "QA1", "DOMAIN2", false).await, "DOMAIN2");
    assert_eq!(running.objects.len(), saved.objects.len() + 1);
    let v = view(&fleet, "QA1", "DOMAIN2").await;
    assert!(v.save_needed);
    assert_eq!(
        (running.digest(), saved.digest()),
        (v.digest, v.saved_digest)
    );

    // The all-domains backup keeps its shape: one persisted export per domain.
    let answer = soma(
        &fleet,
        "QA1",
        "default",
        "<dp:do-backup format=\"ZIP\" persisted=\"true\"><dp:domain name=\"all-domains\"/></dp:do-backup>",
    )
    .await;
    let root = read(answer.as_bytes()).unwrap();
    let all = B64
        .decode(find(&root, "file").unwrap().text.trim())
        .unwrap();
    let inner = zip_entry(&all, "DOMAIN2.zip");
    assert_eq!(exported_config(&inner, "DOMAIN2"), saved);
    fleet.shutdown().await;
}

#[tokio::test]
async fn changes_alter_the_digest_and_save_config_saves_them() {
    let fleet = start(fleet()).await;
    let before = view(&fleet, "QA1", "DOMAIN1").await;
    let (status, first) = change(&fleet, "QA1", "DOMAIN1", "").await;
    assert_eq!(status, 200);
    assert_ne!(first["digest"], before.digest.as_str());
    assert_eq!(first["saved_digest"], before.digest.as_str());
    assert_eq!(first["save_needed"], true);
    let (_, second) = change(&fleet, "QA1", "DOMAIN1", "").await;
    assert_ne!(
        second["digest"], first["digest"],
        "each change is a new value"
    );
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(second["digest"], v.digest.as_str());
    assert!(v.save_needed);
    let status = soma(
        &fleet,
        "QA1",
        "DOMAIN1",
        "<dp:get-status class=\"DomainStatus\"/>",
    )
    .await;
    assert!(status.contains("<SaveNeeded>on</SaveNeeded>"), "{status}");

    // A named change: the running export shows it.
    let body =
        r#"{"class": "XMLManager", "name": "default", "property": "CacheSize", "value": "512"}"#;
    let (status, _) = change(&fleet, "QA1", "DOMAIN1", body).await;
    assert_eq!(status, 200);
    let running = exported_config(&export(&fleet, "QA1", "DOMAIN1", false).await, "DOMAIN1");
    let manager = &running.objects[&("XMLManager".into(), "default".into())];
    assert!(manager.contains(&("CacheSize".into(), "512".into())));

    assert_eq!(change(&fleet, "QA1", "NOPE", "").await.0, 404);
    assert_eq!(change(&fleet, "QA9", "DOMAIN1", "").await.0, 404);
    assert_eq!(
        change(&fleet, "QA1", "DOMAIN1", "{\"colour\": 1}").await.0,
        400
    );

    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", "<SaveConfig/>").await,
        "OK"
    );
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(v.saved_digest, v.digest);
    assert!(!v.save_needed);
    let saved = exported_config(&export(&fleet, "QA1", "DOMAIN1", true).await, "DOMAIN1");
    assert_eq!(saved.digest(), v.digest);
    fleet.shutdown().await;
}

#[tokio::test]
async fn import_dry_run_reports_then_import_restores_the_exported_configuration() {
    let fleet = start(fleet()).await;
    let zip = export(&fleet, "QA1", "DOMAIN1", true).await;
    let exported = view(&fleet, "QA1", "DOMAIN1").await.digest;
    change(&fleet, "QA1", "DOMAIN1", "").await;
    let extra =
        r#"{"class": "LogTarget", "name": "extra-log", "property": "Type", "value": "file"}"#;
    change(&fleet, "QA1", "DOMAIN1", extra).await;
    let changed = view(&fleet, "QA1", "DOMAIN1").await.digest;

    let answer = soma(&fleet, "QA1", "DOMAIN1", &import_op(&zip, true, true)).await;
    let root = read(answer.as_bytes()).unwrap();
    let results = find(&root, "import-results").unwrap();
    assert_eq!(results.attr("domain"), Some("DOMAIN1"));
    let details = results.child("export-details").unwrap();
    assert_eq!(details.child_text("device-name"), "QA1");
    assert!(!details.child_text("current-date").is_empty());
    let objects = import_rows(&answer, "object", "status");
    assert_eq!(status_of(&objects, "DOMAIN1-fw"), "modified");
    assert_eq!(status_of(&objects, "DOMAIN1-mpgw"), "exists");
    assert_eq!(objects.len(), 4);
    let files = import_rows(&answer, "file", "status");
    assert_eq!(status_of(&files, "local:///dp-DOMAIN1.xsl"), "same");
    let cfg = import_rows(&answer, "cfg-result", "status");
    assert!(cfg.iter().all(|(_, s)| s == "SUCCESS"), "{cfg:?}");
    assert_eq!(
        view(&fleet, "QA1", "DOMAIN1").await.digest,
        changed,
        "a dry run changes nothing"
    );

    // Applied: the exported objects come back; the object the export lacks stays.
    let answer = soma(&fleet, "QA1", "DOMAIN1", &import_op(&zip, false, true)).await;
    let cfg = import_rows(&answer, "cfg-result", "status");
    assert!(cfg.iter().all(|(_, s)| s == "SUCCESS"), "{cfg:?}");
    let results = import_rows(&answer, "file-result", "result");
    assert!(results.iter().all(|(_, r)| r == "OK"), "{results:?}");
    let running = exported_config(&export(&fleet, "QA1", "DOMAIN1", false).await, "DOMAIN1");
    assert!(running
        .objects
        .contains_key(&("LogTarget".into(), "extra-log".into())));
    let mut without_extra = running.clone();
    without_extra
        .objects
        .remove(&("LogTarget".into(), "extra-log".into()));
    assert_eq!(without_extra.digest(), exported);
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(v.digest, running.digest());
    assert!(
        v.save_needed,
        "an import changes the running configuration only"
    );

    // Into another domain: its objects are new there (the XML manager exists everywhere).
    let answer = soma(&fleet, "QA1", "DOMAIN2", &import_op(&zip, false, true)).await;
    let objects = import_rows(&answer, "object", "status");
    for (name, status) in &objects {
        let want = if name == "default" { "exists" } else { "new" };
        assert_eq!(status, want, "{name}");
    }

    // What is not an export ZIP.
    let bad = |content: &str| {
        format!("<dp:do-import source-type=\"ZIP\" dry-run=\"true\"><dp:input-file>{content}</dp:input-file></dp:do-import>")
    };
    let answer = soma(&fleet, "QA1", "DOMAIN1", &bad("***")).await;
    assert_eq!(
        result(&answer),
        "Import failed: the input file is not valid base64."
    );
    let answer = soma(&fleet, "QA1", "DOMAIN1", &bad(&B64.encode("not a zip"))).await;
    assert_eq!(
        result(&answer),
        "Import failed: the input file is not a ZIP archive."
    );
    let inner = zip_entry(&zip, "local/dp-DOMAIN1.xsl");
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "x.xsl",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
    std::io::Write::write_all(&mut writer, &inner).unwrap();
    let no_export = writer.finish().unwrap().into_inner();
    let answer = soma(&fleet, "QA1", "DOMAIN1", &bad(&B64.encode(no_export))).await;
    assert_eq!(
        result(&answer),
        "Import failed: the archive has no export.xml."
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn import_with_overwrite_off_leaves_what_exists() {
    let fleet = start(fleet()).await;
    let zip = export(&fleet, "QA1", "DOMAIN1", true).await;
    change(&fleet, "QA1", "DOMAIN1", "").await;
    let set = format!(
        "<dp:set-file name=\"local:///dp-DOMAIN1.xsl\">{}</dp:set-file>",
        B64.encode("<changed/>")
    );
    assert_eq!(result(&soma(&fleet, "QA1", "DOMAIN1", &set).await), "OK");
    let changed = view(&fleet, "QA1", "DOMAIN1").await.digest;
    let get = soma(
        &fleet,
        "QA1",
        "DOMAIN1",
        "<dp:get-file name=\"local:///dp-DOMAIN1.xsl\"/>",
    )
    .await;
    assert!(get.contains(&B64.encode("<changed/>")), "{get}");

    let answer = soma(&fleet, "QA1", "DOMAIN1", &import_op(&zip, false, false)).await;
    let objects = import_rows(&answer, "object", "status");
    assert!(objects.iter().all(|(_, s)| s == "exists"), "{objects:?}");
    let files = import_rows(&answer, "file", "status");
    assert_eq!(status_of(&files, "local:///dp-DOMAIN1.xsl"), "same");
    let results = import_rows(&answer, "file-result", "result");
    assert_eq!(status_of(&results, "local:///dp-DOMAIN1.xsl"), "ignored");
    let cfg = import_rows(&answer, "cfg-result", "status");
    assert!(cfg.iter().all(|(_, s)| s == "SUCCESS"), "{cfg:?}");
    assert_eq!(view(&fleet, "QA1", "DOMAIN1").await.digest, changed);
    fleet.shutdown().await;
}

#[tokio::test]
async fn an_import_error_applies_all_but_one_object_and_a_rollback_undoes_it() {
    let fleet = start(fleet().edit("QA1", |d| {
        d.fault(SimFault::new("do-import", "import-error").set("text", "Validation failed"))
    }))
    .await;
    let zip = export(&fleet, "QA1", "DOMAIN1", true).await;
    let exported = view(&fleet, "QA1", "DOMAIN1").await.digest;
    change(&fleet, "QA1", "DOMAIN1", "").await;
    let manager =
        r#"{"class": "XMLManager", "name": "default", "property": "CacheSize", "value": "1"}"#;
    change(&fleet, "QA1", "DOMAIN1", manager).await;
    let before = view(&fleet, "QA1", "DOMAIN1").await.digest;
    let save = "<SaveCheckpoint><ChkName>before-import</ChkName></SaveCheckpoint>";
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", save).await, "OK");

    // Dry runs are not affected.
    let answer = soma(&fleet, "QA1", "DOMAIN1", &import_op(&zip, true, true)).await;
    assert!(!answer.contains("ERROR"), "{answer}");

    let answer = soma(&fleet, "QA1", "DOMAIN1", &import_op(&zip, false, true)).await;
    let root = read(answer.as_bytes()).unwrap();
    let mut cfg = Vec::new();
    all(&root, "cfg-result", &mut cfg);
    let failed: Vec<_> = cfg
        .iter()
        .filter(|c| c.attr("status") == Some("ERROR"))
        .collect();
    assert_eq!(failed.len(), 1, "{answer}");
    assert_eq!(failed[0].attr("class"), Some("XMLManager"));
    assert_eq!(failed[0].text.trim(), "Validation failed");
    let partial = view(&fleet, "QA1", "DOMAIN1").await.digest;
    assert_ne!(partial, before, "the other objects were applied");
    assert_ne!(partial, exported, "the failed object was not");

    let rollback = "<RollbackCheckpoint><ChkName>before-import</ChkName></RollbackCheckpoint>";
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", rollback).await, "OK");
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(
        (v.digest.as_str(), v.saved_digest.as_str()),
        (before.as_str(), before.as_str())
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn checkpoints_save_roll_back_and_remove_three_at_most() {
    let fleet =
        start(fleet().edit("QA2", |d| d.fault(SimFault::new("*", "checkpoint-full")))).await;
    let save = |n: &str| format!("<SaveCheckpoint><ChkName>{n}</ChkName></SaveCheckpoint>");
    let at_c1 = view(&fleet, "QA1", "DOMAIN1").await.digest;
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", &save("c1")).await, "OK");
    change(&fleet, "QA1", "DOMAIN1", "").await;
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", &save("c2")).await, "OK");
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", &save("c2")).await,
        "Cannot save checkpoint: checkpoint 'c2' already exists"
    );
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", &save("c3")).await, "OK");
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", &save("c4")).await,
        "Cannot save checkpoint: maximum number of checkpoints (3) reached"
    );
    assert_eq!(
        view(&fleet, "QA1", "DOMAIN1").await.checkpoints,
        ["c1", "c2", "c3"]
    );
    assert!(
        view(&fleet, "QA1", "DOMAIN2").await.checkpoints.is_empty(),
        "per domain"
    );

    let rollback =
        |n: &str| format!("<RollbackCheckpoint><ChkName>{n}</ChkName></RollbackCheckpoint>");
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", &rollback("nope")).await,
        "Cannot roll back: checkpoint 'nope' does not exist"
    );
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", &rollback("c1")).await,
        "OK"
    );
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(
        (v.digest.as_str(), v.saved_digest.as_str()),
        (at_c1.as_str(), at_c1.as_str())
    );

    let remove = |n: &str| format!("<RemoveCheckpoint><ChkName>{n}</ChkName></RemoveCheckpoint>");
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", &remove("c2")).await, "OK");
    assert_eq!(
        view(&fleet, "QA1", "DOMAIN1").await.checkpoints,
        ["c1", "c3"]
    );
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", &remove("c2")).await,
        "Cannot remove checkpoint: checkpoint 'c2' does not exist"
    );
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", &save("c4")).await, "OK");

    // checkpoint-full: refused once, with nothing saved yet; other actions pass by.
    assert_eq!(
        action(&fleet, "QA2", "DOMAIN1", "<SaveConfig/>").await,
        "OK"
    );
    assert_eq!(
        action(&fleet, "QA2", "DOMAIN1", &save("c1")).await,
        "Cannot save checkpoint: maximum number of checkpoints (3) reached"
    );
    assert_eq!(action(&fleet, "QA2", "DOMAIN1", &save("c1")).await, "OK");
    fleet.shutdown().await;
}

/// SecureBackup of `device` into `dir`, each file read back with get-file: `(name, bytes)`.
async fn secure_backup(fleet: &RunningFleet, device: &str, dir: &str) -> Vec<(String, Vec<u8>)> {
    let backup = format!(
        "<SecureBackup><cert>backup-cert</cert><destination>temporary:///{dir}/</destination>\
         <include-iscsi>off</include-iscsi><include-raid>off</include-raid></SecureBackup>"
    );
    assert_eq!(action(fleet, device, "default", &backup).await, "OK");
    let mut files = Vec::new();
    for name in sim::device::SECURE_BACKUP_FILES {
        let get = format!("<dp:get-file name=\"temporary:///{dir}/{name}\"/>");
        let answer = soma(fleet, device, "default", &get).await;
        let root = read(answer.as_bytes()).unwrap();
        let bytes = B64
            .decode(find(&root, "file").unwrap().text.trim())
            .unwrap();
        files.push((name.to_string(), bytes));
    }
    files
}

async fn upload(fleet: &RunningFleet, device: &str, dir: &str, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let set = format!(
            "<dp:set-file name=\"temporary:///{dir}/{name}\">{}</dp:set-file>",
            B64.encode(bytes)
        );
        assert_eq!(
            result(&soma(fleet, device, "default", &set).await),
            "OK",
            "{name}"
        );
    }
}

fn restore(cred: &str, dir: &str, validate: &str) -> String {
    format!(
        "<SecureRestore><cred>{cred}</cred><source>temporary:///{dir}/</source>\
         <validate>{validate}</validate></SecureRestore>"
    )
}

#[tokio::test]
async fn uploads_and_secure_restore_checks() {
    let fleet = start(fleet()).await;
    let files = secure_backup(&fleet, "QA1", "b1").await;
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            "<RemoveDir><Dir>temporary:///b1</Dir></RemoveDir>"
        )
        .await,
        "OK"
    );
    upload(&fleet, "QA1", "up/r1", &files).await;
    let state = fleet.device("QA1").unwrap().state().unwrap();
    assert!(
        state
            .temporary_files
            .contains(&"temporary:///up/r1/config.tgz".to_string()),
        "{:?}",
        state.temporary_files
    );
    let listing = soma(
        &fleet,
        "QA1",
        "default",
        "<dp:get-filestore location=\"temporary:\"/>",
    )
    .await;
    assert!(
        listing.contains("<directory name=\"temporary:/up/r1\">"),
        "{listing}"
    );
    assert!(
        listing.contains("<file name=\"backupmanifest.xml\">"),
        "{listing}"
    );
    // What was uploaded reads back the same.
    let answer = soma(
        &fleet,
        "QA1",
        "default",
        "<dp:get-file name=\"temporary:///up/r1/cert.tgz\"/>",
    )
    .await;
    let root = read(answer.as_bytes()).unwrap();
    assert_eq!(
        B64.decode(find(&root, "file").unwrap().text.trim())
            .unwrap(),
        files[1].1
    );

    let before = fleet.device("QA1").unwrap().state().unwrap();
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "up/r1", "on")
        )
        .await,
        "OK"
    );
    let after = fleet.device("QA1").unwrap().state().unwrap();
    assert_eq!(before.domains, after.domains, "validation changes nothing");
    assert_eq!(
        action(&fleet, "QA1", "default", &restore("nope", "up/r1", "on")).await,
        "Secure restore failed: identification credential 'nope' not found."
    );
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "missing", "on")
        )
        .await,
        "Secure restore failed: no backupmanifest.xml in temporary:///missing/."
    );

    // One archive altered, same size: its checksum no longer matches.
    let mut bad = files.clone();
    bad[2].1[0] ^= 0xff;
    upload(&fleet, "QA1", "r2", &bad).await;
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "r2", "on")
        )
        .await,
        "Secure restore failed: config.tgz does not match its checksum."
    );
    // One archive missing.
    upload(&fleet, "QA1", "r3", &files[..8]).await;
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "r3", "on")
        )
        .await,
        "Secure restore failed: store.tgz is missing."
    );
    // Another appliance's backup.
    let theirs = secure_backup(&fleet, "QA2", "b2").await;
    upload(&fleet, "QA1", "r4", &theirs).await;
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "r4", "on")
        )
        .await,
        "Secure restore failed: the backup is of appliance QA2-0001, this appliance is QA1-0001."
    );
    let bad64 = "<dp:set-file name=\"temporary:///x/y\">*not base64*</dp:set-file>";
    assert_eq!(
        result(&soma(&fleet, "QA1", "default", bad64).await),
        "Cannot write the file: invalid base64 content."
    );
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            "<RemoveDir><Dir>temporary:///up</Dir></RemoveDir>"
        )
        .await,
        "OK"
    );
    let state = fleet.device("QA1").unwrap().state().unwrap();
    assert!(!state
        .temporary_files
        .iter()
        .any(|f| f.starts_with("temporary:///up/")));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_secure_restore_restarts_the_device_with_the_backed_up_configuration() {
    let fleet = start(fleet().edit("QA1", |d| d.set("restore_downtime", "600ms"))).await;
    change(&fleet, "QA1", "DOMAIN1", "").await;
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", "<SaveConfig/>").await,
        "OK"
    );
    let backed_up = view(&fleet, "QA1", "DOMAIN1").await.saved_digest;
    let backed_up2 = view(&fleet, "QA1", "DOMAIN2").await.saved_digest;
    let files = secure_backup(&fleet, "QA1", "b1").await;
    upload(&fleet, "QA1", "r1", &files).await;

    // Later changes, saved, and a checkpoint: the restore undoes them all.
    change(&fleet, "QA1", "DOMAIN1", "").await;
    assert_eq!(
        action(&fleet, "QA1", "DOMAIN1", "<SaveConfig/>").await,
        "OK"
    );
    let save = "<SaveCheckpoint><ChkName>c1</ChkName></SaveCheckpoint>";
    assert_eq!(action(&fleet, "QA1", "DOMAIN1", save).await, "OK");
    assert_ne!(view(&fleet, "QA1", "DOMAIN1").await.saved_digest, backed_up);

    let addr = fleet.device("QA1").unwrap().addr;
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            &restore("backup-cred", "r1", "off")
        )
        .await,
        "OK"
    );
    let down_at = Instant::now();
    let refused = tokio::net::TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(fleet.device("QA1").unwrap().state().unwrap().down);
    // Back after the downtime, on the same port.
    let back = loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break down_at.elapsed();
        }
        assert!(
            down_at.elapsed() < Duration::from_secs(10),
            "never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(back >= Duration::from_millis(450), "down only {back:?}");
    let status = soma(
        &fleet,
        "QA1",
        "default",
        "<dp:get-status class=\"FirmwareVersion3\"/>",
    )
    .await;
    assert!(status.contains("<Serial>QA1-0001</Serial>"), "{status}");
    let v = view(&fleet, "QA1", "DOMAIN1").await;
    assert_eq!(
        (v.digest.as_str(), v.saved_digest.as_str()),
        (backed_up.as_str(), backed_up.as_str())
    );
    assert!(v.checkpoints.is_empty());
    let v2 = view(&fleet, "QA1", "DOMAIN2").await;
    assert_eq!(
        (v2.digest.as_str(), v2.saved_digest.as_str()),
        (backed_up2.as_str(), backed_up2.as_str())
    );
    assert!(!v2.save_needed, "the unsaved change is gone");
    // The uploaded directory can be cleaned up afterwards.
    assert_eq!(
        action(
            &fleet,
            "QA1",
            "default",
            "<RemoveDir><Dir>temporary:///r1</Dir></RemoveDir>"
        )
        .await,
        "OK"
    );
    fleet.shutdown().await;
}
