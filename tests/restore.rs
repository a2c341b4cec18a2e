//! Restores through the binary against the simulator over sockets: export, change, `diff`,
//! `restore --dry-run` (nothing changes), `restore --yes` (the digest comes back, the
//! checkpoint goes), an import the appliance refuses (ROLLED_BACK, the digest as before), a
//! secure restore (validate, restore, wait, clean up), restore drills, the catalogue, and a
//! kill during an import or a secure restore followed by `resume`.

use crate::engine::World;
use crate::support::fleet::{DeviceEntry, FleetFile, SimFault};
use crate::support::{Ran, Test};

/// QA1 with DOMAIN1 and DOMAIN2; restores come back after 300 ms.
fn fleet(qa1: impl FnOnce(DeviceEntry) -> DeviceEntry) -> FleetFile {
    FleetFile::new()
        .set("backup_file_size", "64KiB")
        .set("restore_downtime", "300ms")
        .domains(&["default", "DOMAIN1", "DOMAIN2"])
        .device(qa1(DeviceEntry::new("QA1")))
}

const PLANS: &str = r#"
plan "exports" {
  activity export_domain {
    devices = "QA1"
    domains = "DOMAIN1"
  }
}

plan "everything" {
  activity export_domain {
    devices = "QA1"
    domains = all
  }
}

plan "secure" {
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
  }
}

plan "drill" {
  on_failure = continue

  activity secure_restore_drill {
    devices = "QA1"
    cred    = "backup-cred"
  }

  activity restore_drill {
    devices = "QA1"
    domains = "DOMAIN1"
  }
}
"#;

/// A directory with the plan file `p.dpplan` for `w` (the state file beside it).
fn setup(w: &World) -> Test {
    let text = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\n{PLANS}",
        w.store().display(),
        w.inventory().replace(
            "file(\"pw\")",
            &format!("file(\"{}\")", w.dir.path().join("pw").display())
        )
    );
    Test::new().file("p.dpplan", &text)
}

/// Runs the binary in `dir` with `args` (the state file `st.redb` there).
fn dpplan(dir: &std::path::Path, args: &[&str]) -> Ran {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend([
        "--state".to_string(),
        dir.join("st.redb").display().to_string(),
    ]);
    Test::new().cwd(dir).args(all).run()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn domain(w: &World, name: &str) -> dpplan::sim::DomainView {
    w.state("QA1")
        .domains
        .into_iter()
        .find(|d| d.name == name)
        .unwrap()
}

/// An administrator's change to QA1's DOMAIN1, through the simulator's endpoint: the new digest.
async fn change(w: &World) -> String {
    let d = w.fleet.device("QA1").unwrap();
    let (status, answer) = crate::support::http_post(
        d.addr,
        "/sim/devices/QA1/domains/DOMAIN1/change",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    v["digest"].as_str().unwrap().to_string()
}

/// A fleet whose QA1 is `qa1`, run 1 of plan `plan` done against it: the world, the test
/// directory (held by the `Test`) and its path.
async fn after(
    qa1: impl FnOnce(DeviceEntry) -> DeviceEntry,
    plan: &'static str,
) -> (World, Test, std::path::PathBuf) {
    let w = World::new(fleet(qa1)).await;
    let t = setup(&w);
    let dir = t.path().to_path_buf();
    let d = dir.clone();
    blocking(move || dpplan(&d, &["run", "p.dpplan", "--plan", plan, "--quiet"]).status(0)).await;
    (w, t, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_domain_is_diffed_dry_run_restored_and_restored() {
    let (w, _t, dir) = after(|d| d, "exports").await;
    let exported = domain(&w, "DOMAIN1");
    let changed = change(&w).await;
    assert_ne!(changed, exported.digest);

    // A second export takes the saved configuration (as before: diff exits 0) and, the change
    // being unsaved, the running one too: diff against it shows the change (exit 1).
    let d = dir.clone();
    let store = w.store();
    let (same, diff) = blocking(move || {
        dpplan(&d, &["run", "p.dpplan", "--plan", "exports", "--quiet"]).status(0);
        let folder = store.join("QA1/domain/DOMAIN1");
        let mut names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        let first = folder.join(
            names
                .iter()
                .find(|n| n.ends_with("-persisted.zip"))
                .unwrap(),
        );
        let running = folder.join(
            names
                .iter()
                .find(|n| n.ends_with("-nonpersisted.zip"))
                .unwrap(),
        );
        (
            dpplan(&d, &["diff", "1:QA1:DOMAIN1", "2:QA1:DOMAIN1", "--json"]),
            dpplan(
                &d,
                &["diff", first.to_str().unwrap(), running.to_str().unwrap()],
            ),
        )
    })
    .await;
    let same = same.status(0).json();
    assert_eq!(same["objects_changed"].as_array().unwrap().len(), 0);
    let diff = diff.status(1).stdout_has("~ object XMLFirewallService");
    assert!(
        diff.stdout.contains("    - ") && diff.stdout.contains("    + "),
        "{}",
        diff.stdout
    );
    // --live: the backup against the domain's running configuration, a fresh export.
    let d = dir.clone();
    blocking(move || dpplan(&d, &["diff", "1:QA1:DOMAIN1", "--live"]))
        .await
        .status(1)
        .stdout_has("QA1:DOMAIN1 (running)")
        .stdout_has("~ object XMLFirewallService");

    // The dry run lists the change and changes nothing.
    let d = dir.clone();
    let dry = blocking(move || {
        dpplan(
            &d,
            &[
                "restore",
                "p.dpplan",
                "--device",
                "QA1",
                "--domain",
                "DOMAIN1",
                "--from",
                "1",
                "--dry-run",
                "--quiet",
            ],
        )
    })
    .await
    .status(0);
    assert!(dry.stdout.contains("modified"), "{}", dry.stdout);
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    let after_dry = domain(&w, "DOMAIN1");
    assert_eq!(after_dry.digest, changed);
    assert!(
        after_dry.checkpoints.is_empty(),
        "{:?}",
        after_dry.checkpoints
    );

    // Without a terminal, a restore that changes the device needs --yes.
    let d = dir.clone();
    blocking(move || {
        dpplan(
            &d,
            &[
                "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1",
            ],
        )
    })
    .await
    .status(2)
    .stderr_has("--yes");

    let d = dir.clone();
    let done = blocking(move || {
        dpplan(
            &d,
            &[
                "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--from", "1",
                "--yes", "--quiet",
            ],
        )
    })
    .await
    .status(0);
    assert!(done.stdout.contains("import"), "{}", done.stdout);
    let restored = domain(&w, "DOMAIN1");
    assert_eq!(
        restored.digest, exported.digest,
        "the export's configuration is back"
    );
    assert_eq!(restored.saved_digest, exported.digest, "and saved");
    assert!(
        restored.checkpoints.is_empty(),
        "{:?}",
        restored.checkpoints
    );
    let d = dir.clone();
    blocking(move || dpplan(&d, &["diff", "1:QA1:DOMAIN1", "--live"]))
        .await
        .status(0)
        .stdout_has("no differences");

    // The task page records both imports, per object.
    let d = dir.clone();
    let page = blocking(move || dpplan(&d, &["show", "4", "--task", "1", "--json"]))
        .await
        .status(0)
        .json();
    let steps: Vec<&str> = page["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["dry_run", "import"]);
    assert!(page["imports"][0]["dry_run"].as_bool().unwrap());
    assert_eq!(page["imports"][0]["counts"]["modified"], 1);
    assert!(page["imports"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["status"] == "modified"));

    // The catalogue lists both exports.
    let d = dir.clone();
    let store = w.store().display().to_string();
    let cat = blocking(move || dpplan(&d, &["backups", "--store", &store, "--json"]))
        .await
        .status(0)
        .json();
    let rows = cat["backups"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{cat}");
    assert!(rows
        .iter()
        .all(|r| r["kind"] == "EXPORT_DOMAIN" && r["check"] == "ok"));
    assert_eq!(rows[0]["run"], 1);
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_import_is_rolled_back_to_the_checkpoint() {
    let (w, _t, dir) = after(
        |d| d.fault(SimFault::new("do-import", "import-error")),
        "exports",
    )
    .await;
    let changed = change(&w).await;
    let before = domain(&w, "DOMAIN1");
    assert_eq!(before.digest, changed);
    let d = dir.clone();
    let ran = blocking(move || {
        dpplan(
            &d,
            &[
                "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--yes", "--json",
                "--quiet",
            ],
        )
    })
    .await;
    let v = ran.json();
    assert_eq!(v["tasks"][0]["status"], "ROLLED_BACK", "{v}");
    assert!(
        v["tasks"][0]["error"].as_str().unwrap().contains("refused"),
        "{v}"
    );
    let after = domain(&w, "DOMAIN1");
    assert_eq!(
        after.digest, before.digest,
        "rolled back to the pre-restore configuration"
    );
    assert!(after.checkpoints.is_empty(), "{:?}", after.checkpoints);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_restore_validates_restores_waits_and_cleans_up_and_drills_pass() {
    let (w, _t, dir) = after(|d| d, "secure").await;
    let d = dir.clone();
    blocking(move || dpplan(&d, &["run", "p.dpplan", "--plan", "exports", "--quiet"]).status(0))
        .await;
    let backed_up = domain(&w, "DOMAIN1");
    change(&w).await;

    // The drills: every latest backup would restore, and nothing changed.
    let d = dir.clone();
    let drill = blocking(move || {
        dpplan(
            &d,
            &["run", "p.dpplan", "--plan", "drill", "--json", "--quiet"],
        )
    })
    .await
    .status(0)
    .json();
    let statuses: Vec<&str> = drill["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["SUCCEEDED", "SUCCEEDED"], "{drill}");
    assert_eq!(drill["status"], "COMPLETED");
    assert_ne!(
        domain(&w, "DOMAIN1").digest,
        backed_up.digest,
        "a drill changes nothing"
    );
    // The catalogue says which backups the drill read, and that they would restore.
    let d = dir.clone();
    let store = w.store().display().to_string();
    let cat = blocking(move || dpplan(&d, &["backups", "--store", &store, "--json"]))
        .await
        .status(0)
        .json();
    let drilled: Vec<(&str, &str)> = cat["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap(),
                b["last_drill"]["status"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        drilled,
        [
            ("EXPORT_DOMAIN", "SUCCEEDED"),
            ("SECURE_BACKUP", "SUCCEEDED")
        ],
        "{cat}"
    );
    assert_eq!(cat["backups"][0]["last_drill"]["run"], 3);
    w.assert_clean();

    let d = dir.clone();
    let v = blocking(move || {
        dpplan(
            &d,
            &[
                "restore",
                "p.dpplan",
                "--device",
                "QA1",
                "--cred",
                "backup-cred",
                "--yes",
                "--json",
                "--quiet",
            ],
        )
    })
    .await
    .status(0)
    .json();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["tasks"][0]["status"], "SUCCEEDED", "{v}");
    assert_eq!(domain(&w, "DOMAIN1").digest, backed_up.digest);
    let ops = w.state("QA1").ops;
    assert!(
        ops.get("SecureRestore").copied().unwrap_or(0) >= 2,
        "{ops:?}"
    );
    w.assert_clean();
    let run = v["run"].to_string();
    let d = dir.clone();
    blocking(move || dpplan(&d, &["log", &run]))
        .await
        .status(0)
        .stdout_has("answers again");
}

/// Kills the restore at `failpoint`, resumes it, and checks the end state is the one an
/// uninterrupted restore reaches.
async fn killed_and_resumed(failpoint: &'static str, secure: bool) {
    let plan = if secure { "secure" } else { "exports" };
    let (w, _t, dir) = after(|d| d, plan).await;
    let backed_up = domain(&w, "DOMAIN1");
    change(&w).await;
    let mut args = vec!["restore", "p.dpplan", "--device", "QA1", "--yes", "--quiet"];
    if secure {
        args.extend(["--cred", "backup-cred"]);
    } else {
        args.extend(["--domain", "DOMAIN1"]);
    }
    let d = dir.clone();
    let killed = blocking(move || {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--state".into(), d.join("st.redb").display().to_string()]);
        Test::new()
            .cwd(&d)
            .env("DPPLAN_FAILPOINT", failpoint)
            .args(all)
            .run()
    })
    .await;
    assert_ne!(
        killed.status, 0,
        "the failpoint killed it: {}",
        killed.stderr
    );
    let d = dir.clone();
    let resumed = blocking(move || dpplan(&d, &["resume", "--json", "--quiet"]))
        .await
        .status(0)
        .json();
    assert!(
        resumed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "SUCCEEDED"),
        "{resumed}"
    );
    let after = domain(&w, "DOMAIN1");
    assert_eq!(after.digest, backed_up.digest);
    assert!(after.checkpoints.is_empty(), "{:?}", after.checkpoints);
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_an_import_resumes_to_the_same_end() {
    killed_and_resumed("after-import", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_a_secure_restore_resumes_to_the_same_end() {
    killed_and_resumed("after-secure-restore", true).await;
}

/// A checkpoint saved on QA1's DOMAIN1 by someone else (raw SOMA).
async fn save_checkpoint(w: &World, name: &str) {
    let d = w.fleet.device("QA1").unwrap();
    let body = format!(
        "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body>\
         <dp:request domain=\"DOMAIN1\" xmlns:dp=\"http://www.datapower.com/schemas/management\">\
         <dp:do-action><SaveCheckpoint><ChkName>{name}</ChkName></SaveCheckpoint></dp:do-action>\
         </dp:request></env:Body></env:Envelope>"
    );
    let auth = Some((d.user.as_str(), d.password.as_str()));
    let (status, answer) =
        crate::support::http_post(d.addr, "/service/mgmt/current", auth, body.into()).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&answer).contains("OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_domain_makes_room_by_removing_the_oldest_dpplan_checkpoint_only() {
    // SaveCheckpoints: the administrator's (goes through), the first restore's (full), the
    // administrator's second (goes through), the second restore's (full), its retry.
    let full = |after| {
        SimFault::new("SaveCheckpoint", "checkpoint-full")
            .after(after)
            .times(1)
    };
    let (w, _t, dir) = after(|d| d.fault(full(1)).fault(full(3)), "exports").await;
    change(&w).await;
    save_checkpoint(&w, "before-upgrade").await;
    let restore = [
        "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--yes", "--json",
        "--quiet",
    ];

    // Full, and no checkpoint of dpplan's to remove: the administrator's stays, nothing changes.
    let before = domain(&w, "DOMAIN1");
    let d = dir.clone();
    let v = blocking(move || dpplan(&d, &restore)).await.json();
    assert_eq!(v["tasks"][0]["status"], "FAILED", "{v}");
    assert!(
        v["tasks"][0]["error"]
            .as_str()
            .unwrap()
            .contains("maximum number of checkpoints"),
        "{v}"
    );
    let after = domain(&w, "DOMAIN1");
    assert_eq!(after.digest, before.digest);
    assert_eq!(after.checkpoints, ["before-upgrade"]);

    // With an old dpplan checkpoint there: it makes room, and the restore goes through.
    save_checkpoint(&w, "dpplan-1-9").await;
    let d = dir.clone();
    let v = blocking(move || dpplan(&d, &restore))
        .await
        .status(0)
        .json();
    let run = v["run"].to_string();
    assert_eq!(v["tasks"][0]["status"], "SUCCEEDED", "{v}");
    let after = domain(&w, "DOMAIN1");
    assert_ne!(after.digest, before.digest);
    assert_eq!(
        after.checkpoints,
        ["before-upgrade"],
        "only dpplan's own were removed"
    );
    let d = dir.clone();
    blocking(move || dpplan(&d, &["log", &run]))
        .await
        .status(0)
        .stdout_has("removed checkpoint dpplan-1-9 to make room");
}

/// `dpplan restore` with its standard input on a terminal answering `answer`: exit status,
/// stdout and stderr.
fn restore_on_terminal(dir: &std::path::Path, answer: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (mut master, slave) = crate::support::pty(24, 100);
    // Typed ahead: the terminal holds the line until the question reads it.
    master.write_all(answer.as_bytes()).unwrap();
    let state = dir.join("st.redb");
    let out = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args([
            "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--quiet",
        ])
        .arg("--state")
        .arg(&state)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    drop(master);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_restore_shows_the_dry_run_and_asks_first() {
    let (w, _t, dir) = after(|d| d, "exports").await;
    let exported = domain(&w, "DOMAIN1");
    let changed = change(&w).await;

    let d = dir.clone();
    let (code, stdout, stderr) = blocking(move || restore_on_terminal(&d, "n\n")).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("modified"),
        "the dry run's table first: {stdout}"
    );
    assert!(
        stderr.contains("Restore domain DOMAIN1 of QA1? [y/N]"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert_eq!(domain(&w, "DOMAIN1").digest, changed);

    let d = dir.clone();
    let (code, _, stderr) = blocking(move || restore_on_terminal(&d, "y\n")).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(domain(&w, "DOMAIN1").digest, exported.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_a_path_and_from_a_run_that_wrote_nothing() {
    let (w, _t, dir) = after(|d| d, "exports").await;
    let exported = domain(&w, "DOMAIN1");
    change(&w).await;
    let folder = w.store().join("QA1/domain/DOMAIN1");
    let zip = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-persisted.zip"))
        .unwrap();
    let zip = zip.display().to_string();
    let d = dir.clone();
    blocking(move || {
        dpplan(
            &d,
            &[
                "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--from", &zip,
                "--yes", "--quiet",
            ],
        )
    })
    .await
    .status(0);
    assert_eq!(domain(&w, "DOMAIN1").digest, exported.digest);

    // Run 2 (the restore) wrote no export: validate says so and nothing changes.
    change(&w).await;
    let before = domain(&w, "DOMAIN1");
    let d = dir.clone();
    let v = blocking(move || {
        dpplan(
            &d,
            &[
                "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--from", "2",
                "--yes", "--json", "--quiet",
            ],
        )
    })
    .await
    .status(1)
    .json();
    let error = v["tasks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("run 2 wrote no export of QA1/DOMAIN1"),
        "{error}"
    );
    assert_eq!(domain(&w, "DOMAIN1").digest, before.digest);
}

/// A restore plan run by `dpplan serve`: the API's task JSON and the dashboard's task page
/// show the import, object by object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_a_restore_and_its_pages_show_the_import() {
    use crate::serve::{finished, post, Serve, TOKEN};
    let w = World::new(fleet(|d| d)).await;
    let t = setup(&w);
    let dir = t.path().to_path_buf();
    let plan = std::fs::read_to_string(dir.join("p.dpplan")).unwrap();
    let restore = "\nplan \"restore\" {\n  activity import_domain {\n    devices = \"QA1\"\n    domains = \"DOMAIN1\"\n  }\n}\n";
    std::fs::write(dir.join("p.dpplan"), format!("{plan}{restore}")).unwrap();
    let d = dir.clone();
    let s = blocking(move || Serve::start(&d, "p.dpplan", None)).await;
    let u = s.url.clone();
    let (code, body) = post(&format!("{u}/api/plans/exports/runs"), Some(TOKEN), "{}").await;
    assert_eq!(code, 202, "{body}");
    let page = finished(&s, body["run"].as_u64().unwrap()).await;
    assert_eq!(page["run"]["status"], "COMPLETED", "{page}");
    let exported = domain(&w, "DOMAIN1");
    change(&w).await;

    let (code, body) = post(&format!("{u}/api/plans/restore/runs"), Some(TOKEN), "{}").await;
    assert_eq!(code, 202, "{body}");
    let run = body["run"].as_u64().unwrap();
    let page = finished(&s, run).await;
    assert_eq!(page["run"]["status"], "COMPLETED", "{page}");
    assert_eq!(domain(&w, "DOMAIN1").digest, exported.digest);

    let (code, task) = crate::serve::get(&format!("{u}/api/runs/{run}/tasks/1")).await;
    assert_eq!(code, 200);
    let steps: Vec<&str> = task["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["dry_run", "import"], "{task}");
    let html = crate::serve::client()
        .get(format!("{u}/runs/{run}/tasks/1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("Import: dry_run (dry run)"), "{html}");
    assert!(html.contains("XMLFirewallService"), "{html}");
    assert!(html.contains("modified"), "{html}");
}

/// A domain restored from an all-domains export (the domain's own export inside it), and
/// diffed from one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_restores_from_an_all_domains_export() {
    let (w, _t, dir) = after(|d| d, "everything").await;
    let exported = domain(&w, "DOMAIN1");
    change(&w).await;
    let d = dir.clone();
    let (same, v) = blocking(move || {
        (
            dpplan(&d, &["diff", "1:QA1:DOMAIN1", "1:QA1:DOMAIN1"]),
            dpplan(
                &d,
                &[
                    "restore", "p.dpplan", "--device", "QA1", "--domain", "DOMAIN1", "--yes",
                    "--json", "--quiet",
                ],
            ),
        )
    })
    .await;
    same.status(0).stdout_has("no differences");
    let v = v.status(0).json();
    assert_eq!(v["tasks"][0]["status"], "SUCCEEDED", "{v}");
    assert_eq!(domain(&w, "DOMAIN1").digest, exported.digest);
    w.assert_clean();
}
