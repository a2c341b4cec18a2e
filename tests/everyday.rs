//! The holes an administrator falls into in the first hour, each through the binary: script
//! paths from any directory, `when` on post scripts, configuration mistakes that must not
//! look like outages, mistyped names, and messages that say which device and plan line.

use crate::engine::World;
use crate::support::fleet::{qa, FleetFile, SimFault};
use crate::support::Test;
use std::path::Path;

/// One healthy device and one with domains, quick to back up.
fn fleet() -> FleetFile {
    qa(&["QA1", "MUC-PRD-GW2"]).set("quiesce_delay", "50ms")
}

async fn blocking(t: Test) -> crate::support::Ran {
    tokio::task::spawn_blocking(move || t.run()).await.unwrap()
}

/// The inventory of `w` with the password read from `secret` (an `env()` or `file()` call).
fn inventory(w: &World, secret: &str) -> String {
    w.inventory().replace("file(\"pw\")", secret)
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A plan file `work/fleet.dpplan` under the world's directory with pre/post plan scripts
/// that record their working directory; returns the plan's directory.
fn scripted_plan(w: &World, plan_attrs: &str) -> std::path::PathBuf {
    let work = w.dir.path().join("work");
    write_script(
        &work.join("scripts/pre-plan.sh"),
        "pwd > pre-plan.ran\necho \"$DPPLAN_HOOK\" >> pre-plan.ran",
    );
    write_script(
        &work.join("scripts/post-plan.sh"),
        "pwd > post-plan.ran\necho \"$DPPLAN_STATUS\" >> post-plan.ran",
    );
    write_script(&work.join("scripts/fail.sh"), "exit 3");
    let pw = w.dir.path().join("pw");
    let text = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n{plan_attrs}\n  activity secure_backup {{\n    devices = \"QA1\"\n    cert = \"backup-cert\"\n  }}\n}}\n",
        w.store().display(),
        inventory(w, &format!("file(\"{}\")", pw.display())),
    );
    std::fs::write(work.join("fleet.dpplan"), text).unwrap();
    work
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_run_in_the_plan_directory_whatever_the_plan_path() {
    let w = World::new(fleet()).await;
    let work = scripted_plan(
        &w,
        "  pre_plan = script(\"scripts/pre-plan.sh\")\n  post_plan = script(\"scripts/post-plan.sh\")",
    );
    let abs = work.join("fleet.dpplan").display().to_string();
    let cases = [
        (work.clone(), "fleet.dpplan".to_string()),
        (work.clone(), "./fleet.dpplan".to_string()),
        (w.dir.path().to_path_buf(), "work/fleet.dpplan".to_string()),
        (w.dir.path().to_path_buf(), abs.clone()),
        (std::env::temp_dir(), abs),
    ];
    for (cwd, path) in cases {
        let _ = std::fs::remove_file(work.join("pre-plan.ran"));
        let _ = std::fs::remove_file(work.join("post-plan.ran"));
        let t = Test::new()
            .cwd(&cwd)
            .args(["run", path.as_str(), "--quiet", "--json"]);
        let ran = blocking(t).await;
        assert_eq!(
            ran.status,
            0,
            "from {} with {path}: {}{}",
            cwd.display(),
            ran.stdout,
            ran.stderr
        );
        assert_eq!(ran.json()["status"], "COMPLETED");
        let pre = std::fs::read_to_string(work.join("pre-plan.ran")).unwrap();
        let post = std::fs::read_to_string(work.join("post-plan.ran")).unwrap();
        let dir = std::fs::canonicalize(&work).unwrap();
        assert_eq!(pre, format!("{}\npre_plan\n", dir.display()), "{path}");
        assert_eq!(post, format!("{}\nCOMPLETED\n", dir.display()), "{path}");
    }
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_plan_when_failed_skips_a_completed_run_and_runs_after_a_failed_pre_plan() {
    let w = World::new(fleet()).await;
    let work = scripted_plan(
        &w,
        "  post_plan = script(\"scripts/post-plan.sh\", when = failed)",
    );
    let state = w.dir.path().join("state.redb").display().to_string();
    let t = Test::new()
        .cwd(&work)
        .args(["run", "fleet.dpplan", "--quiet", "--state", &state]);
    blocking(t).await.status(0);
    assert!(
        !work.join("post-plan.ran").exists(),
        "post_plan with when = failed ran on a COMPLETED run"
    );
    let t = Test::new().cwd(&work).args(["log", "1", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("post_plan: not run: its `when` does not match the run's outcome (COMPLETED)");

    // A failing pre-plan script: the post-plan script still runs (the plan's `finally`).
    scripted_plan(
        &w,
        "  pre_plan = script(\"scripts/fail.sh\")\n  post_plan = script(\"scripts/post-plan.sh\", when = failed)",
    );
    let t = Test::new()
        .cwd(&work)
        .args(["run", "fleet.dpplan", "--quiet", "--json"]);
    let ran = blocking(t).await.status(1);
    assert_eq!(ran.json()["status"], "FAILED");
    let post = std::fs::read_to_string(work.join("post-plan.ran")).unwrap();
    assert!(post.ends_with("FAILED\n"), "{post}");

    // `when = succeeded` on a failed run: not run.
    std::fs::remove_file(work.join("post-plan.ran")).unwrap();
    scripted_plan(
        &w,
        "  pre_plan = script(\"scripts/fail.sh\")\n  post_plan = script(\"scripts/post-plan.sh\", when = succeeded)",
    );
    let t = Test::new()
        .cwd(&work)
        .args(["run", "fleet.dpplan", "--quiet"]);
    blocking(t).await.status(1);
    assert!(!work.join("post-plan.ran").exists());
}

#[test]
fn when_where_it_has_no_meaning_is_an_error() {
    let plan = r#"import "std/datapower"
inventory {
  device "QA1" { host = "qa1" password = env("HOME") }
}
plan "p" {
  pre_plan = script("pre.sh", when = failed)
  activity secure_backup {
    devices = "QA1"
    cert = "c"
    pre = script("pre.sh", when = succeeded)
    post = script("pre.sh", when = failed)
  }
}
"#;
    let ran = Test::new()
        .file("p.dpplan", plan)
        .script("pre.sh", "#!/bin/sh\n")
        .args(["check", "p.dpplan", "--format", "json"])
        .run()
        .status(1);
    let v = ran.json();
    let diags: Vec<(String, u64)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let dp40: Vec<u64> = diags
        .iter()
        .filter(|(c, _)| c == "DP0040")
        .map(|(_, l)| *l)
        .collect();
    // pre_plan and the activity's `pre`, not its `post`.
    assert_eq!(dp40, [6, 10], "{}", ran.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_or_file_ends_the_run_invalid_config_before_any_appliance() {
    let w = World::new(fleet()).await;
    let plan = |secret: &str, extra: &str| {
        format!(
            "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"QA1\"\n    cert = \"backup-cert\"\n    quiesce = 60s\n  }}\n}}\n",
            w.store().display(),
            inventory(&w, secret).replace("tls      = false", &format!("tls      = false\n{extra}")),
        )
    };
    // check only warns: CI lacks the secrets.
    let t = Test::new()
        .file("p.dpplan", &plan("env(\"DPPLAN_TEST_UNSET_PW\")", ""))
        .args(["check", "p.dpplan"]);
    blocking(t)
        .await
        .status(0)
        .stderr_has("DP0041")
        .stderr_has("environment variable `DPPLAN_TEST_UNSET_PW` is not set");

    let t = Test::new()
        .file("p.dpplan", &plan("env(\"DPPLAN_TEST_UNSET_PW\")", ""))
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = blocking(t).await.status(1);
    let v = ran.json();
    assert_eq!(v["status"], "INVALID_CONFIG", "{}", ran.stdout);
    let error = v["error"].as_str().unwrap();
    assert!(
        error.contains("DPPLAN_TEST_UNSET_PW") && error.contains("p.dpplan:"),
        "{error}"
    );
    assert!(v["tasks"].as_array().unwrap().is_empty());

    let t = Test::new()
        .file("p.dpplan", &plan("file(\"no-such-pw\")", ""))
        .args(["run", "p.dpplan", "--quiet"]);
    blocking(t)
        .await
        .status(1)
        .stderr_has("INVALID_CONFIG")
        .stderr_has("no-such-pw");

    let pw = w.dir.path().join("pw").display().to_string();
    let t = Test::new()
        .file(
            "p.dpplan",
            &plan(
                &format!("file(\"{pw}\")"),
                "    tls_ca = \"certs/missing-ca.pem\"",
            ),
        )
        .args(["run", "p.dpplan", "--quiet"]);
    blocking(t)
        .await
        .status(1)
        .stderr_has("INVALID_CONFIG")
        .stderr_has("missing-ca.pem");
    // Nothing was touched: no backup, no quiesce.
    assert_eq!(std::fs::read_dir(w.store()).unwrap().count(), 0);
    assert_eq!(w.state("QA1").device_quiesce_state, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_the_devices_tasks_instead_of_skipping_them() {
    let w = World::new(fleet()).await;
    std::fs::write(w.dir.path().join("wrong"), "not-the-password\n").unwrap();
    let text = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity export_domain {{\n    devices = \"QA1\"\n    domains = \"DOMAIN*\"\n  }}\n}}\n",
        w.store().display(),
        inventory(
            &w,
            &format!("file(\"{}\")", w.dir.path().join("wrong").display())
        ),
    );
    let t = Test::new()
        .file("p.dpplan", &text)
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = blocking(t).await.status(1);
    let v = ran.json();
    assert_eq!(v["status"], "FAILED");
    let task = &v["tasks"][0];
    assert_eq!(task["status"], "FAILED", "{}", ran.stdout);
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .starts_with("authentication failed for user admin on QA1"),
        "{task}"
    );
}

#[test]
fn a_mistyped_device_name_or_zone_is_an_error_with_a_suggestion() {
    let plan = r#"import "std/datapower"
inventory {
  defaults { password = env("HOME") }
  device "MUC-PRD-GW2" { host = "gw2" }
  device "FRA-PRD-GW1" { host = "gw1" }
}
plan "p" {
  window { from = 22:00  to = 04:00  tz = "Europe/Pariss" }
  activity secure_backup {
    devices = ["FRA-PRD-*", "MUC-PROD-GW2"]
    cert = "c"
  }
}
plan "q" {
  window { from = 22:00  to = 04:00  tz = "Europe/berlin" }
  activity secure_backup {
    devices = "NEW-*"
    cert = "c"
  }
}
"#;
    Test::new()
        .file("p.dpplan", plan)
        .args(["check", "p.dpplan"])
        .run()
        .status(1)
        .stderr_has("DP0039")
        .stderr_has("no device is named `MUC-PROD-GW2`")
        .stderr_has("did you mean `MUC-PRD-GW2`?")
        .stderr_has("did you mean `Europe/Paris`?")
        .stderr_has("did you mean `Europe/Berlin`?")
        // A pattern that matches nothing stays a warning.
        .stderr_has("DP0024");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_device_is_named_with_its_inventory_line() {
    let w = World::new(fleet()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pw = w.dir.path().join("pw").display().to_string();
    let text = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\ninventory {{\n  defaults {{ user = \"admin\" password = file(\"{pw}\") tls = false }}\n  device \"GONE\" {{ host = \"127.0.0.1\" port = {port} }}\n}}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"GONE\"\n    cert = \"c\"\n  }}\n}}\n",
        w.store().display(),
    );
    let state = w.dir.path().join("state.redb").display().to_string();
    let t = Test::new()
        .file("p.dpplan", &text)
        .args(["run", "p.dpplan", "--json", "--quiet", "--state", &state]);
    let ran = blocking(t).await;
    let v = ran.json();
    let error = v["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("GONE"), "{error}");
    assert!(error.contains("cannot connect"), "{error}");
    assert!(error.contains("inventory entry p.dpplan:5:"), "{error}");
    // The activity log has the skip reason too.
    let t = Test::new().args(["log", "1", "--task", "1", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("skipped: device not available: GONE");
}

/// A plan backing up every QA device with `window` (may be empty) and settings.
fn qa_plan(w: &World, window: &str) -> String {
    let pw = w.dir.path().join("pw").display().to_string();
    format!(
        "import \"std/datapower\"\nsettings {{ max_parallel = 1 }}\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n{window}\n  activity secure_backup {{\n    devices = \"QA*\"\n    cert = \"backup-cert\"\n    quiesce = 60s\n  }}\n}}\n",
        w.store().display(),
        inventory(w, &format!("file(\"{pw}\")")),
    )
}

/// A window that is closed now: it opens two hours from now, for an hour (UTC).
fn closed_window() -> String {
    use chrono::Timelike;
    let h = chrono::Utc::now().hour();
    format!(
        "  window {{\n    from = {:02}:00\n    to = {:02}:00\n    tz = \"UTC\"\n  }}",
        (h + 2) % 24,
        (h + 3) % 24
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_manual_run_keeps_ignoring_the_window() {
    let w = World::new(qa_fleet("50ms")).await;
    let state = w.dir.path().join("state.redb").display().to_string();
    let plan = w.dir.path().join("p.dpplan");
    std::fs::write(&plan, qa_plan(&w, &closed_window())).unwrap();
    let plan = plan.display().to_string();
    // The run dies (like kill -9) after the third step result, mid-way through its tasks.
    let t = Test::new().env("DPPLAN_FAILPOINT", "after-result:5").args([
        "run",
        &plan,
        "--ignore-window",
        "--quiet",
        "--state",
        &state,
    ]);
    let crashed = blocking(t).await;
    assert_ne!(crashed.status, 0, "{}", crashed.stderr);
    // Without its password file the resume refuses and leaves the run as it is.
    let pw = w.dir.path().join("pw");
    std::fs::rename(&pw, w.dir.path().join("pw.away")).unwrap();
    let t = Test::new().args(["resume", "--quiet", "--state", &state]);
    blocking(t)
        .await
        .status(1)
        .stderr_has("cannot read password file")
        .stderr_has("the run is left as it is");
    std::fs::rename(w.dir.path().join("pw.away"), &pw).unwrap();
    let t = Test::new().args(["resume", "--json", "--quiet", "--state", &state]);
    let ran = blocking(t).await;
    let v = ran.json();
    assert_eq!(v["status"], "COMPLETED", "{}{}", ran.stdout, ran.stderr);
    for t in v["tasks"].as_array().unwrap() {
        assert_eq!(t["status"], "SUCCEEDED", "{t}");
    }
    let t = Test::new().args(["log", "1", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("started by ")
        .stdout_has("--ignore-window")
        .stdout_has("the maintenance window is ignored, as when the run started");
    w.assert_clean();

    // Without --ignore-window the window is honoured: OUTSIDE_WINDOW, nothing runs.
    let t = Test::new().args(["run", &plan, "--quiet", "--json", "--state", &state]);
    let ran = blocking(t).await.status(1);
    assert_eq!(ran.json()["status"], "OUTSIDE_WINDOW");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_runs_again_only_what_did_not_succeed() {
    let w = World::new(qa_fleet("50ms").edit("QA2", |d| {
        d.fault(SimFault::new("get-file", "soap-fault").times(1))
    }))
    .await;
    let state = w.dir.path().join("state.redb").display().to_string();
    let plan = w.dir.path().join("p.dpplan");
    std::fs::write(&plan, qa_plan(&w, "")).unwrap();
    let plan = plan.display().to_string();
    let t = Test::new().args(["run", &plan, "--quiet", "--json", "--state", &state]);
    let ran = blocking(t).await.status(1);
    let statuses: Vec<String> = ran.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} {}", t["device"], t["status"]))
        .collect();
    assert_eq!(
        statuses,
        [
            "\"QA1\" \"SUCCEEDED\"",
            "\"QA2\" \"FAILED\"",
            "\"QA3\" \"SUCCEEDED\""
        ]
    );
    // The log is the audit trail: each attempt's start and end, with its duration.
    let t = Test::new().args(["log", "1", "--task", "2", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("validate   started (attempt 1)")
        .stdout_has("validate   succeeded (attempt 1 after ")
        .stdout_has("quiesce of QA2 issued")
        .stdout_has("QA2 quiesced (confirmed after ")
        .stdout_has("failed (attempt 1 after ")
        .stdout_has("task FAILED");
    // The plan file changes (or goes): retry reads only the stored run.
    std::fs::write(&plan, "this is not a plan").unwrap();
    let t = Test::new().args(["retry", "1", "--quiet", "--json", "--state", &state]);
    let ran = blocking(t).await.status(0);
    let v = ran.json();
    assert_eq!(v["run"], 2);
    assert_eq!(v["status"], "COMPLETED");
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{v}");
    assert_eq!(tasks[0]["device"], "QA2");
    let t = Test::new().args(["log", "2", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("retries 1 task(s) of run 1");
    // Nothing left to retry in run 2; a chosen task is run again on request.
    let t = Test::new().args(["retry", "2", "--quiet", "--state", &state]);
    blocking(t).await.status(1).stderr_has("nothing to retry");
    let t = Test::new().args([
        "retry", "1", "--task", "3", "--quiet", "--json", "--state", &state,
    ]);
    let v = blocking(t).await.status(0).json();
    assert_eq!(v["tasks"][0]["device"], "QA3");
    assert_eq!(v["tasks"].as_array().unwrap().len(), 1);
    let t = Test::new().args(["retry", "1", "--task", "9", "--state", &state]);
    blocking(t).await.status(1).stderr_has("no task 9");
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_devices_narrows_a_run_to_some_devices() {
    let w = World::new(qa_fleet("50ms")).await;
    let plan = w.dir.path().join("p.dpplan");
    std::fs::write(&plan, qa_plan(&w, "")).unwrap();
    let plan = plan.display().to_string();
    let t = Test::new().args(["run", &plan, "--quiet", "--json", "--devices", "QA1,QA3"]);
    let v = blocking(t).await.status(0).json();
    let devices: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["QA1", "QA3"]);
    assert_eq!(v["tasks"][1]["id"], 2);
    assert!(w.state("QA2").ops.is_empty(), "QA2 was contacted");
    let t = Test::new().args(["run", &plan, "--quiet", "--devices", "QA9"]);
    blocking(t)
        .await
        .status(2)
        .stderr_has("--devices QA9 matches no device of plan p");
}

/// Starts `dpplan run` of a QA plan on `w` in the background, stderr captured.
fn spawn_run(w: &World, state: &str) -> std::process::Child {
    let plan = w.dir.path().join("p.dpplan");
    std::fs::write(&plan, qa_plan(w, "")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["run", plan.to_str().unwrap(), "--state", state])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (up to 20 s) until QA1 is quiescing or quiesced.
async fn until_qa1_quiesces(w: &World) {
    for _ in 0..400 {
        if !w
            .state("QA1")
            .domains
            .iter()
            .all(|d| d.quiesce_state.is_empty())
            || !w.state("QA1").device_quiesce_state.is_empty()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("QA1 never quiesced");
}

fn interrupt(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_ends_with_its_resume_command_and_no_running_task() {
    let w = World::new(slow_qa1_fleet()).await;
    let state = w.dir.path().join("state.redb").display().to_string();
    let child = spawn_run(&w, &state);
    until_qa1_quiesces(&w).await;
    interrupt(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("run 1: INTERRUPTED; `dpplan resume 1` continues it"),
        "{stderr}"
    );
    let table = &stderr[stderr.find("ID  ").expect("a final table")..];
    assert!(!table.contains("RUNNING"), "{table}");
    assert!(table.contains("PENDING"), "{table}");
    // Nor does any page show a task running in the interrupted run.
    for page in [
        vec!["show", "1", "--activity", "1"],
        vec!["show", "1", "--json"],
    ] {
        let mut a = page.clone();
        a.extend(["--state", state.as_str()]);
        let out = Test::new().args(a).run().status(0).stdout;
        assert!(!out.contains("RUNNING"), "{out}");
    }
    // The graceful interrupt released QA1.
    w.assert_clean();
    let t = Test::new().args(["log", "1", "--state", &state]);
    blocking(t)
        .await
        .status(0)
        .stdout_has("interrupted: no new step started")
        .stdout_has("QA1 unquiesced (confirmed after");
    let t = Test::new().args(["resume", "--quiet", "--json", "--state", &state]);
    let v = blocking(t).await.status(0).json();
    assert_eq!(v["status"], "COMPLETED");
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_exit_names_what_is_left_quiesced() {
    let w = World::new(slow_qa1_fleet()).await;
    let state = w.dir.path().join("state.redb").display().to_string();
    let child = spawn_run(&w, &state);
    until_qa1_quiesces(&w).await;
    interrupt(&child);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    interrupt(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("left quiesced (or quiescing): QA1;")
            && stderr.contains("`dpplan resume 1` releases them"),
        "{stderr}"
    );
    let t = Test::new().args(["resume", "--quiet", "--json", "--state", &state]);
    let v = blocking(t).await.status(0).json();
    assert_eq!(v["status"], "COMPLETED");
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_runs_store_from_any_directory() {
    let w = World::new(fleet()).await;
    scripted_plan(&w, "");
    let state = w.dir.path().join("state.redb").display().to_string();
    let t = Test::new().cwd(w.dir.path()).args([
        "run",
        "work/fleet.dpplan",
        "--quiet",
        "--state",
        &state,
    ]);
    blocking(t).await.status(0);
    let t = Test::new()
        .cwd(&std::env::temp_dir())
        .args(["verify", "1", "--state", &state]);
    blocking(t).await.status(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_exit_leaves_no_hook_script_running() {
    let w = World::new(fleet()).await;
    let work = scripted_plan(&w, "  pre_plan = script(\"scripts/slow.sh\")");
    write_script(
        &work.join("scripts/slow.sh"),
        "echo $$ > slow.pid\nsleep 30\ntouch slow.finished",
    );
    let state = w.dir.path().join("state.redb").display().to_string();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["run", "fleet.dpplan", "--quiet", "--state", &state])
        .current_dir(&work)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = work.join("slow.pid");
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|p| p.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let script_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    interrupt(&child);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    interrupt(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("killed 1 running hook script"), "{stderr}");
    let pid = rustix::process::Pid::from_raw(script_pid).unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if rustix::process::test_kill_process(pid).is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(gone, "the hook script {script_pid} outlived dpplan");
}

/// A narrowed run needs only its devices' secrets; a plan path that is not UTF-8 is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_run_needs_only_its_own_secrets() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new(qa_fleet("50ms")).await;
    let text = qa_plan(&w, "").replace(
        "  device \"QA3\" {",
        "  device \"QA3\" { password = env(\"DPPLAN_TEST_NOT_SET\") ",
    );
    assert!(text.contains("DPPLAN_TEST_NOT_SET"), "{text}");
    let name = std::ffi::OsStr::from_bytes(b"plan-\xff.dpplan");
    std::fs::write(w.dir.path().join(name), &text).unwrap();
    let state = w.dir.path().join("state.redb");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .arg("run")
        .arg(name)
        .args(["--quiet", "--json", "--devices", "QA1", "--state"])
        .arg(&state)
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The whole plan does need it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .arg("run")
        .arg(name)
        .args(["--quiet", "--state"])
        .arg(&state)
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("INVALID_CONFIG"));
}

/// [`qa_fleet`] where only QA1 is slow to quiesce (1.5 s): long enough to interrupt a run
/// while QA1 is quiescing, without making the resume wait as long for QA2 and QA3.
fn slow_qa1_fleet() -> FleetFile {
    qa_fleet("50ms").edit("QA1", |d| d.set("quiesce_delay", "1500ms"))
}

/// QA1, QA2 and QA3, each with a domain, quiescing in `quiesce_delay`.
fn qa_fleet(quiesce_delay: &str) -> FleetFile {
    qa(&["QA1", "QA2", "QA3"]).set("quiesce_delay", quiesce_delay)
}
