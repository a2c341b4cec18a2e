//! Faults and hostile input end in a clear error and lose nothing: names from the fleet that
//! sanitise alike, names that look like dpplan's temporary files.

use crate::engine::World;
use crate::support::fleet::{DeviceEntry, FleetFile, SimFault};
use crate::support::Test;

/// Two devices whose names sanitise alike, with domains that do too.
fn odd_names() -> FleetFile {
    FleetFile::new()
        .set("backup_file_size", "4KiB")
        .domains(&["default", "a/b", "a_b", "..", "日本", ".dpplan-tmp-x"])
        .devices(&["QA 1", "QA_1"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_sanitise_alike_get_their_own_files() {
    let w = World::new(odd_names()).await;
    let plan = w.plan_file("", "plan \"p\" {\n  activity secure_backup {\n    devices = \"QA*\"\n    cert = \"backup-cert\"\n  }\n  activity export_domain {\n    devices = \"QA 1\"\n    domains = \"*\"\n  }\n}\n");
    let t = Test::new()
        .file("p.dpplan", &plan)
        .args(["run", "p.dpplan", "--json", "--quiet"]);
    let ran = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    let v = ran.json();
    assert_eq!(v["status"], "COMPLETED", "{}", ran.stdout);
    let mut files: Vec<String> = Vec::new();
    for t in v["tasks"].as_array().unwrap() {
        for f in t["files"].as_array().unwrap() {
            files.push(f.as_str().unwrap().to_string());
        }
    }
    // 2 secure backups of 10 files each (9 + manifest? the listing) and 6 exports.
    let exports: Vec<&String> = files.iter().filter(|f| f.ends_with(".zip")).collect();
    assert_eq!(exports.len(), 6, "{files:#?}");
    let unique: std::collections::BTreeSet<&String> = files.iter().collect();
    assert_eq!(
        unique.len(),
        files.len(),
        "two tasks wrote one file: {files:#?}"
    );
    // Every recorded file is on disk after the run (the end-of-run sweep kept them all).
    for f in &files {
        assert!(w.store().join(f).is_file(), "{f} is gone");
    }
    assert!(
        files.iter().any(|f| f.starts_with("QA%201/"))
            && files.iter().any(|f| f.starts_with("QA_1/")),
        "{files:#?}"
    );
    w.assert_clean();
}

/// A device with a domain named with terminal control sequences.
fn control_names() -> FleetFile {
    FleetFile::new()
        .set("backup_file_size", "4KiB")
        .domains(&["default", "evil\u{1b}]0;pwned\u{7}\u{1b}[31mred\u{0}nul"])
        .devices(&["QA1"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_text_reaches_the_terminal_escaped() {
    let w = World::new(control_names()).await;
    let pw = w.dir.path().join("pw").display().to_string();
    let state = w.dir.path().join("state.redb").display().to_string();
    let plan = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity export_domain {{\n    devices = \"QA1\"\n    domains = \"evil*\"\n  }}\n}}\n",
        w.store().display(),
        w.inventory().replace("file(\"pw\")", &format!("file(\"{pw}\")")),
    );
    let dir = w.dir.path().to_path_buf();
    std::fs::write(dir.join("p.dpplan"), &plan).unwrap();
    let mut outputs = vec![
        Test::new()
            .cwd(&dir)
            .args(["plan", "p.dpplan"])
            .run()
            .stdout,
    ];
    let ran = Test::new()
        .cwd(&dir)
        .args(["run", "p.dpplan", "--state", &state])
        .run();
    outputs.push(ran.stderr);
    for args in [
        vec!["show", "1", "--activity", "1"],
        vec!["show", "1", "--task", "1"],
        vec!["log", "1"],
    ] {
        let mut a = args.clone();
        a.extend(["--state", state.as_str()]);
        outputs.push(Test::new().args(a).run().stdout);
    }
    for out in &outputs {
        assert!(
            !out.contains('\u{1b}') && !out.contains('\0') && !out.contains('\u{7}'),
            "raw control characters: {out:?}"
        );
    }
    assert!(
        outputs[0].contains("evil\\x1b]0;pwned\\x07"),
        "{}",
        outputs[0]
    );
    assert!(
        outputs.iter().skip(2).any(|o| o.contains("\\x00nul")),
        "{outputs:?}"
    );
}

/// Backups hold keys and password maps: files 0600 and folders 0700 whatever the umask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(odd_names()).await;
    let plan = w.plan_file("", "plan \"p\" {\n  activity secure_backup {\n    devices = \"QA_1\"\n    cert = \"backup-cert\"\n  }\n  activity export_domain {\n    devices = \"QA_1\"\n    domains = \"a_b\"\n  }\n}\n");
    std::fs::write(w.dir.path().join("p.dpplan"), plan).unwrap();
    // A permissive umask, as a shell's 022 or worse.
    let script = format!(
        "umask 000; exec {} run p.dpplan --quiet",
        env!("CARGO_BIN_EXE_dpplan")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(w.dir.path())
        .env("DPPLAN_STATE", w.dir.path().join("state.redb"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 0;
    let mut stack = vec![w.store().join("QA_1")];
    while let Some(p) = stack.pop() {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        if p.is_dir() {
            assert_eq!(mode, 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{}", p.display());
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen} files");
    // The state file and its owner record too.
    for f in ["state.redb", "state.redb.owner"] {
        let mode = std::fs::metadata(w.dir.path().join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
}

/// Cron runs never see `check`: a run repeats the plain-HTTP and insecure-TLS warnings, even
/// with --quiet, and records them in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_repeats_its_safety_warnings() {
    let w = World::new(odd_names()).await;
    let pw = w.dir.path().join("pw").display().to_string();
    let state = w.dir.path().join("state.redb").display().to_string();
    let plan = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"QA_1\"\n    cert = \"backup-cert\"\n  }}\n}}\n",
        w.store().display(),
        w.inventory().replace("file(\"pw\")", &format!("file(\"{pw}\")")),
    );
    std::fs::write(w.dir.path().join("p.dpplan"), plan).unwrap();
    let dir = w.dir.path().to_path_buf();
    let t = Test::new()
        .cwd(&dir)
        .args(["run", "p.dpplan", "--quiet", "--state", &state]);
    tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .stderr_has(
            "warning DP0034: tls = false sends credentials and backups in plain HTTP (p.dpplan:",
        );
    Test::new()
        .args(["log", "1", "--state", &state])
        .run()
        .status(0)
        .stdout_has("warning DP0034: tls = false");
}

const CLEAN: &str = "import \"std/datapower\"\n\ninventory {\n  device \"QA1\" { host = \"qa1\" password = env(\"DP_PASSWORD\") }\n}\n\nplan \"p\" {\n  activity secure_backup {\n    devices = \"QA1\"\n    cert    = \"c\"\n  }\n}\n";

#[test]
fn check_refuses_what_is_not_a_plan_file_without_hanging() {
    Test::new()
        .args(["check", "/dev/zero"])
        .run()
        .status(1)
        .stderr_has("DP0043")
        .stderr_has("not a regular file (a device)");
    let t = Test::new().file("ok.dpplan", CLEAN);
    let fifo = t.path().join("pipe.dpplan");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    t.args(["check", fifo.to_str().unwrap()])
        .run()
        .status(1)
        .stderr_has("not a regular file (a FIFO)");
    // Invalid UTF-8 is named as such, not as a missing import; a byte-order mark is fine.
    let t = Test::new();
    std::fs::write(t.path().join("latin1.dpplan"), b"plan \"caf\xe9\" {}\n").unwrap();
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend_from_slice(CLEAN.as_bytes());
    std::fs::write(t.path().join("bom.dpplan"), bom).unwrap();
    t.args(["check", "latin1.dpplan"])
        .run()
        .status(1)
        .stderr_has("DP0043")
        .stderr_has("not UTF-8 text (invalid byte at offset 9)");
    Test::new()
        .file("x", "")
        .args(["fmt", "-"])
        .stdin("plan \"p\" {}\n")
        .run()
        .status(0);
}

#[test]
fn check_of_directories_ends_and_an_empty_one_fails() {
    let t = Test::new().file("plans/ok.dpplan", CLEAN);
    std::fs::create_dir_all(t.path().join("empty")).unwrap();
    std::os::unix::fs::symlink("..", t.path().join("plans/loop")).unwrap();
    let dir = t.path().to_path_buf();
    Test::new()
        .cwd(&dir)
        .args(["check", "plans"])
        .run()
        .status(0)
        .stderr_has("1 file checked: no problems");
    Test::new()
        .cwd(&dir)
        .args(["check", "empty"])
        .run()
        .status(1)
        .stderr_has("no .dpplan files in empty");
}

#[test]
fn many_mistakes_on_one_line_give_bounded_output() {
    let attrs: String = (0..20_000).map(|i| format!("x{i} = 1 ")).collect();
    let plan = format!("settings {{ {attrs} }}\n");
    let ran = Test::new()
        .file("p.dpplan", &plan)
        .args(["check", "p.dpplan"])
        .run()
        .status(1)
        .stderr_has("... and 19950 more in p.dpplan")
        .stderr_has("20000 errors");
    // Linear in the file, not in the file times its mistakes.
    assert!(
        ran.stderr.len() < 4 * plan.len(),
        "{} bytes",
        ran.stderr.len()
    );
}

#[test]
fn fmt_keeps_links_and_writes_through_them() {
    use std::os::unix::fs::MetadataExt;
    let messy = CLEAN.replace("  activity", "      activity");
    let t = Test::new().file("real/p.dpplan", &messy);
    let dir = t.path().to_path_buf();
    std::os::unix::fs::symlink("real/p.dpplan", dir.join("link.dpplan")).unwrap();
    std::fs::write(dir.join("real/h.dpplan"), &messy).unwrap();
    std::fs::hard_link(dir.join("real/h.dpplan"), dir.join("h2.dpplan")).unwrap();
    Test::new()
        .cwd(&dir)
        .args(["fmt", "link.dpplan", "h2.dpplan"])
        .run()
        .status(0);
    assert!(std::fs::symlink_metadata(dir.join("link.dpplan"))
        .unwrap()
        .file_type()
        .is_symlink());
    let canonical = dpplan::syntax::format(CLEAN).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("real/p.dpplan")).unwrap(),
        canonical
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("real/h.dpplan")).unwrap(),
        canonical
    );
    assert_eq!(std::fs::metadata(dir.join("h2.dpplan")).unwrap().nlink(), 2);
}

#[test]
fn fmt_of_stdin_that_is_not_utf8_is_bad_input() {
    let t = Test::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["fmt", "-"])
        .current_dir(t.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"plan \"\xff\" {}\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
}

/// One device with one application domain.
fn one_domain() -> FleetFile {
    // Quick quiesces: the simulator's default (2 s each way) made each of its tests wait 4 s.
    FleetFile::new()
        .set("quiesce_delay", "50ms")
        .set("unquiesce_delay", "50ms")
        .domains(&["default", "DOMAIN1"])
        .devices(&["QA1"])
}

fn download_plan(w: &World, settings: &str, device_attrs: &str, domains: &str) -> String {
    let pw = w.dir.path().join("pw").display().to_string();
    format!(
        "import \"std/datapower\"\nsettings {{ {settings} }}\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity export_domain {{\n    devices = \"QA1\"\n    domains = \"{domains}\"\n    quiesce = 60s\n  }}\n}}\n",
        w.store().display(),
        w.inventory()
            .replace("file(\"pw\")", &format!("file(\"{pw}\")"))
            .replace("tls      = false", &format!("tls      = false\n    {device_attrs}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_past_max_export_size_fails_and_leaves_nothing() {
    let w = World::new(one_domain()).await;
    let v = run_plan(
        &w,
        &download_plan(&w, "max_export_size = 100B", "", "DOMAIN1"),
        &[],
    )
    .await
    .status(1)
    .json();
    let error = v["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("larger than 100 bytes"), "{error}");
    // No partial export in the store; the domain is released.
    let leftovers: Vec<_> = walk(&w.store());
    assert!(
        leftovers
            .iter()
            .all(|f| !f.ends_with(".zip") && !f.contains("dpplan-tmp")),
        "{leftovers:?}"
    );
    w.assert_clean();
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// QA1, whose first `times` exports hang for 20 s.
fn hanging_export(times: u32) -> FleetFile {
    FleetFile::new()
        .set("quiesce_delay", "50ms")
        .set("unquiesce_delay", "50ms")
        .domains(&["default", "DOMAIN1"])
        .device(
            DeviceEntry::new("QA1").fault(
                SimFault::new("do-export", "delay")
                    .times(times)
                    .set("delay", "20s"),
            ),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_has_a_deadline_and_the_domain_is_released() {
    let w = World::new(hanging_export(5)).await;
    let started = std::time::Instant::now();
    let v = run_plan(
        &w,
        &download_plan(&w, "", "download_timeout = 1s", "DOMAIN1"),
        &[],
    )
    .await
    .status(1)
    .json();
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let error = v["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("within 1s (download_timeout)"), "{error}");
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_stops_a_download_and_releases_the_domain() {
    let w = World::new(hanging_export(1)).await;
    let state = w.dir.path().join("state.redb").display().to_string();
    std::fs::write(
        w.dir.path().join("p.dpplan"),
        download_plan(&w, "", "", "DOMAIN1"),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(["run", "p.dpplan", "--json", "--quiet", "--state", &state])
        .current_dir(w.dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the export is asked for (the domain is quiesced by then).
    for _ in 0..200 {
        if w.state("QA1").ops.contains_key("do-export") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "INTERRUPTED", "{v}");
    assert_eq!(v["tasks"][0]["status"], "PENDING", "{v}");
    w.assert_clean();
    let t = Test::new().args(["log", "1", "--state", &state]);
    tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .stdout_has("the download was stopped by an interrupt; resume does this step again");
    // The resume exports again (the hang was once) and releases the domain again.
    let t = Test::new().args(["resume", "--json", "--quiet", "--state", &state]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["tasks"][0]["files"].as_array().unwrap().len(), 1);
    w.assert_clean();
}

/// Three devices of 100 domains each, quick: 300 small exports.
fn many_exports_fleet() -> FleetFile {
    let domains: Vec<String> = (0..100).map(|i| format!("D{i}")).collect();
    let mut names = vec!["default"];
    names.extend(domains.iter().map(String::as_str));
    FleetFile::new()
        .set("quiesce_delay", "0ms")
        .set("unquiesce_delay", "0ms")
        .domains(&names)
        .devices(&["A", "B", "C"])
}

/// A full disk under the state file (its size capped with `ulimit -f`, writes past it fail
/// with EFBIG): the run ends with a clear error, releases what it holds, and `resume`
/// finishes it once the file can grow again. It used to hang forever, deaf to SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_state_file_ends_the_run_and_resume_finishes_it() {
    let w = World::new(many_exports_fleet()).await;
    // 24 tasks at a time: the run passes its state file's limit in a second, not ten.
    let plan = w.plan_file("settings { max_parallel = 24 }\n", "plan \"p\" {\n  activity export_domain {\n    devices = \"*\"\n    domains = \"D*\"\n    quiesce = 60s\n  }\n}\n");
    std::fs::write(w.dir.path().join("p.dpplan"), plan).unwrap();
    let state = w.dir.path().join("state.redb").display().to_string();
    // 2100 blocks of 512 bytes: enough to create the state file, not to hold this run.
    let script = format!(
        "trap '' XFSZ; ulimit -f 2100; exec {} run p.dpplan --quiet --state {state}",
        env!("CARGO_BIN_EXE_dpplan")
    );
    let dir = w.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["120", "sh", "-c", &script])
            .current_dir(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("File too large")
            && stderr.contains("cannot record anything more and stopped")
            && stderr.contains("`dpplan resume 1` finishes it"),
        "{stderr}"
    );
    assert!(!stderr.contains("state file: state file:"), "{stderr}");
    w.assert_clean();
    let t = Test::new().args(["resume", "--quiet", "--json", "--state", &state]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    assert_eq!(v["status"], "COMPLETED");
    let zips = walk(&w.store())
        .iter()
        .filter(|f| f.ends_with(".zip"))
        .count();
    assert_eq!(zips, 300);
    w.assert_clean();
}

/// One rule for exit codes: 1 for bad input and failed work, 3 only for a bug in dpplan.
#[test]
fn a_damaged_state_file_or_unknown_run_is_exit_1_everywhere() {
    let t = Test::new().file("p.dpplan", CLEAN);
    let state = t.path().join("bad.redb");
    std::fs::write(&state, vec![0x5au8; 64 * 1024]).unwrap();
    let state = state.display().to_string();
    let dir = t.path().to_path_buf();
    for args in [
        vec!["runs"],
        vec!["show", "1"],
        vec!["log", "1"],
        vec!["verify", "1"],
        vec!["resume", "1", "--no-wait"],
        vec!["run", "p.dpplan", "--no-wait"],
    ] {
        let mut a = args.clone();
        a.extend(["--state", state.as_str()]);
        let ran = Test::new().cwd(&dir).args(&a).run();
        assert_eq!(ran.status, 1, "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.contains("error:"), "{args:?}: {}", ran.stderr);
    }
    // An unknown run, with a good state file.
    let good = Test::new().file("p.dpplan", CLEAN);
    let ok_state = good.path().join("ok.redb").display().to_string();
    dpplan::store::RedbStore::open(std::path::Path::new(&ok_state)).unwrap();
    for args in [
        vec!["show", "99"],
        vec!["resume", "99"],
        vec!["log", "99"],
        vec!["retry", "99"],
    ] {
        let mut a = args.clone();
        a.extend(["--state", ok_state.as_str()]);
        let ran = Test::new().args(&a).run();
        assert_eq!(ran.status, 1, "{args:?}: {}", ran.stderr);
    }
}

/// A secure backup whose download fails leaves nothing on the appliance: its backup used to
/// stay in the small `temporary:` after the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_secure_backup_download_leaves_nothing_on_the_appliance() {
    let fleet = FleetFile::new().set("backup_file_size", "4KiB").device(
        DeviceEntry::new("QA1").fault(SimFault::new("get-file", "truncate").after(2).times(1)),
    );
    let w = World::new(fleet).await;
    let plan = w.plan_file("", "plan \"p\" {\n  activity secure_backup {\n    devices = \"QA1\"\n    cert = \"backup-cert\"\n  }\n}\n");
    let t = Test::new()
        .file("p.dpplan", &plan)
        .args(["run", "p.dpplan", "--quiet", "--json"]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(1)
        .json();
    assert_eq!(v["tasks"][0]["status"], "FAILED", "{v}");
    let s = w.state("QA1");
    assert!(s.temporary_files.is_empty(), "{:?}", s.temporary_files);
    assert!(walk(&w.store()).is_empty(), "{:?}", walk(&w.store()));
}

/// A task runner that panics (a bug) ends the run INTERRUPTED with the bug named, instead of
/// the others waiting for it forever; `resume` completes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_runner_ends_the_run_interrupted() {
    let w = World::new(one_domain()).await;
    let state = w.dir.path().join("state.redb").display().to_string();
    std::fs::write(
        w.dir.path().join("p.dpplan"),
        download_plan(&w, "", "", "DOMAIN1"),
    )
    .unwrap();
    let dir = w.dir.path().to_path_buf();
    let t = Test::new()
        .cwd(&dir)
        .env("DPPLAN_FAILPOINT", "panic-after-intent:2")
        .args(["run", "p.dpplan", "--quiet", "--json", "--state", &state]);
    let ran = tokio::task::spawn_blocking(move || t.run()).await.unwrap();
    assert_eq!(ran.status, 4, "{}", ran.stderr);
    let v = ran.json();
    assert_eq!(v["status"], "INTERRUPTED");
    assert!(
        v["error"].as_str().unwrap().contains("a bug in dpplan"),
        "{v}"
    );
    let t = Test::new().args(["resume", "--quiet", "--json", "--state", &state]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    assert_eq!(v["status"], "COMPLETED");
    w.assert_clean();
}

/// Writes `plan` as `p.dpplan` in the world's directory and runs it there (`--quiet --json`,
/// the world's state file), with `env` set.
async fn run_plan(w: &World, plan: &str, env: &[(&str, &str)]) -> crate::support::Ran {
    std::fs::write(w.dir.path().join("p.dpplan"), plan).unwrap();
    let state = w.dir.path().join("state.redb").display().to_string();
    let mut t = Test::new().cwd(w.dir.path());
    for (k, v) in env {
        t = t.env(k, *v);
    }
    let t = t.args(["run", "p.dpplan", "--quiet", "--json", "--state", &state]);
    tokio::task::spawn_blocking(move || t.run()).await.unwrap()
}

/// One device, 4 KiB backup files, every answer after 100 ms (so requests asked together
/// are seen together), and `extra` (faults).
fn slow_device(file_size: &str, extra: &str) -> String {
    format!(
        "[defaults]\nuser = \"admin\"\npassword = \"s3cret\"\nbackup_file_size = \"{file_size}\"\nlatency = \"100ms\"\n[[device]]\nname = \"QA1\"\n{extra}"
    )
}

const RETRIED_BACKUP: &str = "plan \"p\" {\n  activity secure_backup {\n    devices = \"QA1\"\n    cert = \"backup-cert\"\n    on_failure { backup = retry(1, backoff = 100ms) then stop }\n  }\n}\n";

/// A secure backup's files download together, at most three at once. When one of them fails
/// (here the sixth request for a file is reset), the others stop, no partial file is left in
/// the store or on the appliance, and the step's retry takes the whole backup again: one
/// complete directory whose manifest lists the files in the appliance's order, each with
/// its size and checksum, recorded in the journal in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backups_files_download_together_and_a_failure_retries_the_whole_backup() {
    use dpplan::store::{Record, StepOutcome, TaskStatus};
    let w = World::new(&slow_device(
        "4KiB",
        "[[device.fault]]\nop = \"get-file\"\nafter = 5\ntimes = 1\nkind = \"reset\"\n",
    ))
    .await;
    let (report, journal) = w.run(RETRIED_BACKUP, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    let records = journal.records(report.run);
    let backup: Vec<(u32, StepOutcome, Option<String>)> = records
        .iter()
        .filter_map(|r| match r {
            Record::StepResult {
                step,
                attempt,
                outcome,
                error,
                ..
            } if step == "backup" => Some((*attempt, *outcome, error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(backup.len(), 2, "{backup:?}");
    assert_eq!(backup[0].1, StepOutcome::Failed);
    let error = backup[0].2.as_deref().unwrap_or("");
    assert!(error.contains("QA1: get-file: connection lost"), "{error}");
    assert_eq!(backup[1].1, StepOutcome::Succeeded);

    let s = w.state("QA1");
    assert_eq!(s.ops.get("SecureBackup"), Some(&2));
    // The first attempt stopped at the reset, its sixth file request (the two beside it
    // asked too); the second took nine.
    let files = s.ops.get("get-file").copied().unwrap_or(0);
    assert!((15..=17).contains(&files), "{files} file requests");
    assert!(
        (2..=3).contains(&s.max_in_flight),
        "{} at once",
        s.max_in_flight
    );
    w.assert_clean();

    // One directory, complete: the nine files and the manifest, nothing temporary.
    let stored = crate::engine::files_below(&w.store());
    assert_eq!(stored.len(), 10, "{stored:?}");
    let dir = w
        .store()
        .join(std::path::Path::new(&stored[0]).parent().unwrap());
    let names: Vec<&str> = dpplan::sim::device::SECURE_BACKUP_FILES.to_vec();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.push("manifest.json".into());
    want.sort();
    let mut got: Vec<String> = stored
        .iter()
        .map(|f| f.rsplit('/').next().unwrap().to_string())
        .collect();
    got.sort();
    assert_eq!(got, want);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(listed, names, "the appliance's order");
    for f in manifest["files"].as_array().unwrap() {
        let name = f["path"].as_str().unwrap();
        let (size, sha) = dpplan::backups::hash_file(&dir.join(name)).unwrap();
        assert_eq!(f["size"], size, "{name}");
        assert_eq!(f["sha256"], sha, "{name}");
        if name != "backupmanifest.xml" {
            assert_eq!(
                std::fs::read(dir.join(name)).unwrap(),
                dpplan::sim::content::expected_bytes("QA1", name, 4096),
                "{name}"
            );
        }
    }
    let recorded: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::File { file, .. } => Some(file.path.rsplit('/').next()?.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, names, "File records in the appliance's order");
}

/// Files as large as the budget of bytes in flight download one at a time, so a task holds
/// no more memory in flight than one large download did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_backup_files_download_one_at_a_time() {
    use dpplan::store::TaskStatus;
    let w = World::new(&slow_device("2MiB", "")).await;
    let (report, _) = w.run(RETRIED_BACKUP, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    let s = w.state("QA1");
    assert_eq!(s.ops.get("get-file"), Some(&9));
    assert_eq!(s.max_in_flight, 1);
    assert_eq!(crate::engine::files_below(&w.store()).len(), 10);
    w.assert_clean();
}

/// A download that fails while others run (bad base64 in one file, a permanent error) fails
/// the step at once, as one failing file did when they went one by one: nothing of it in the
/// store, nothing left on the appliance, the error the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_among_concurrent_downloads_fails_the_step_and_leaves_nothing() {
    use dpplan::store::TaskStatus;
    let w = World::new(&slow_device(
        "4KiB",
        "[[device.fault]]\nop = \"get-file\"\nafter = 2\ntimes = 1\nkind = \"bad-base64\"\n",
    ))
    .await;
    let (report, _) = w
        .run(
            RETRIED_BACKUP
                .replace("retry(1, backoff = 100ms) then stop", "stop")
                .as_str(),
            "p",
        )
        .await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed, "{report:#?}");
    let error = report.tasks[0].error.as_deref().unwrap_or("");
    assert!(error.contains("invalid base64 payload"), "{error}");
    assert!(crate::engine::files_below(&w.store()).is_empty());
    assert_eq!(w.state("QA1").ops.get("SecureBackup"), Some(&1));
    w.assert_clean();
}

/// Validate asks its independent reads together (free space and the certificate: two at
/// once) and judges them in the order it once asked them: with both wrong, the free space
/// is what it reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_asks_together_and_reports_in_order() {
    use dpplan::store::TaskStatus;
    let w = World::new(&slow_device(
        "4KiB",
        "free_temporary_mb = 100\ncerts = []\n",
    ))
    .await;
    let plan = format!(
        "settings {{ appliance_min_free = 512MiB }}\n{}",
        RETRIED_BACKUP.replace("retry(1, backoff = 100ms) then stop", "stop")
    );
    let (report, _) = w.run(&plan, "p").await;
    assert_eq!(report.tasks[0].status, TaskStatus::Failed, "{report:#?}");
    let error = report.tasks[0].error.as_deref().unwrap_or("");
    assert!(
        error.contains("100 MiB free in temporary:, 512 MiB required"),
        "{error}"
    );
    let s = w.state("QA1");
    assert_eq!(s.ops.get("get-config"), Some(&1));
    assert_eq!(s.max_in_flight, 2);
    assert_eq!(s.ops.get("SecureBackup"), None);
}

/// The probe asks the firmware and the domains together when the plan names domain patterns
/// (two at once); nothing else of this export asks two things at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_asks_firmware_and_domains_together() {
    use dpplan::store::TaskStatus;
    let w = World::new(&slow_device(
        "4KiB",
        "domains = [\"default\", \"DOMAIN1\"]\n",
    ))
    .await;
    let plan = "plan \"p\" {\n  activity export_domain {\n    devices = \"QA1\"\n    domains = \"DOMAIN*\"\n  }\n}\n";
    let (report, _) = w.run(plan, "p").await;
    assert_eq!(report.tasks.len(), 1, "{report:#?}");
    assert_eq!(report.tasks[0].status, TaskStatus::Succeeded, "{report:#?}");
    let s = w.state("QA1");
    // The probe's firmware and domains, validate's domains, the export.
    assert_eq!(s.ops.get("get-status"), Some(&3), "{:?}", s.ops);
    assert_eq!(s.max_in_flight, 2);
}
