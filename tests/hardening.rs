//! Faults and hostile input end in a clear error and lose nothing: names from the fleet that
//! sanitise alike, names that look like dpplan's temporary files.

use crate::engine::World;
use crate::support::Test;

const ODD_NAMES: &str = r#"
[defaults]
user = "admin"
password = "s3cret"
backup_file_size = "4KiB"
domains = ["default", "a/b", "a_b", "..", "日本", ".dpplan-tmp-x"]

[[device]]
name = "QA 1"
[[device]]
name = "QA_1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_sanitise_alike_get_their_own_files() {
    let w = World::new(ODD_NAMES).await;
    let pw = w.dir.path().join("pw").display().to_string();
    let plan = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"QA*\"\n    cert = \"backup-cert\"\n  }}\n  activity export_domain {{\n    devices = \"QA 1\"\n    domains = \"*\"\n  }}\n}}\n",
        w.store().display(),
        w.inventory().replace("file(\"pw\")", &format!("file(\"{pw}\")")),
    );
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

const CONTROL_NAMES: &str = "
[defaults]
user = \"admin\"
password = \"s3cret\"
backup_file_size = \"4KiB\"
domains = [\"default\", \"evil\\u001b]0;pwned\\u0007\\u001b[31mred\\u0000nul\"]

[[device]]
name = \"QA1\"
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_text_reaches_the_terminal_escaped() {
    let w = World::new(CONTROL_NAMES).await;
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
    let w = World::new(ODD_NAMES).await;
    let pw = w.dir.path().join("pw").display().to_string();
    let plan = format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\nplan \"p\" {{\n  activity secure_backup {{\n    devices = \"QA_1\"\n    cert = \"backup-cert\"\n  }}\n  activity export_domain {{\n    devices = \"QA_1\"\n    domains = \"a_b\"\n  }}\n}}\n",
        w.store().display(),
        w.inventory().replace("file(\"pw\")", &format!("file(\"{pw}\")")),
    );
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
}

/// Cron runs never see `check`: a run repeats the plain-HTTP and insecure-TLS warnings, even
/// with --quiet, and records them in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_repeats_its_safety_warnings() {
    let w = World::new(ODD_NAMES).await;
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
