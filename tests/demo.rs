//! `dpplan demo`: the nightly example against the embedded simulated fleet, through the
//! binary, with no setup. The demo runs once for the three tests (it paces its simulated
//! appliances for the progress display, so each run takes seconds): in a temporary directory
//! of its own (`TMPDIR`), so `--clean` in one test never removes another's directory.

use crate::support::{copy_dir, Ran, Test};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The directory a demo's output names.
fn demo_dir(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("directory"))
        .unwrap()
        .trim()
        .to_string()
}

/// The one `dpplan demo` of the tests, and a copy of the directory it kept, taken before
/// any test touched it (for `--clean` to remove while another test runs the original again).
struct Demo {
    /// Holds the demo's `TMPDIR`.
    _test: Test,
    ran: Ran,
    /// The directory the demo kept.
    dir: String,
    /// Holds the copy's `TMPDIR`.
    copy_tmp: tempfile::TempDir,
}

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let test = Test::new();
        let tmp = test.path().display().to_string();
        let test = test.env("TMPDIR", &tmp).args(["demo"]); // kept: its directory holds the demo's
        let ran = test.run().status(0);
        let dir = demo_dir(&ran.stdout);
        assert!(
            dir.starts_with(&tmp),
            "{dir} is not in the demo's TMPDIR {tmp}"
        );
        let copy_tmp = tempfile::tempdir().unwrap();
        let name = Path::new(&dir).file_name().unwrap();
        copy_dir(Path::new(&dir), &copy_tmp.path().join(name));
        Demo {
            _test: test,
            ran,
            dir,
            copy_tmp,
        }
    })
}

#[test]
fn demo_runs_dpods_example_and_shows_its_pages() {
    let started = std::time::Instant::now();
    let ran = &demo().ran;
    assert!(
        ran.stdout
            .starts_with("dpplan demo: the nightly example plan against a simulated"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("DESIGN"), "{}", ran.stdout);
    let out = &ran.stdout;
    // The outcome table (stderr): DPOD's example's six tasks.
    let table: Vec<&str> = ran
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("ID  ACTION"))
        .collect();
    let rows = [
        ("1", "SECURE_BACKUP", "QA1", "all-domains", "SUCCEEDED"),
        ("2", "SECURE_BACKUP", "QA2", "all-domains", "SUCCEEDED"),
        ("3", "SECURE_BACKUP", "QA3", "all-domains", "SUCCEEDED"),
        ("4", "EXPORT_DOMAIN", "TEST8", "DOMAIN1", "SUCCEEDED"),
        ("5", "EXPORT_DOMAIN", "TEST8", "DOMAIN2", "SUCCEEDED"),
        ("6", "EXPORT_DOMAIN", "TEST9", "", "SKIPPED"),
    ];
    for (i, (id, action, device, domain, status)) in rows.iter().enumerate() {
        let cells: Vec<&str> = table[i + 1].split_whitespace().collect();
        assert_eq!(&cells[..3], &[*id, *action, *device], "{}", ran.stderr);
        assert!(cells.contains(status), "{}", ran.stderr);
        if !domain.is_empty() {
            assert_eq!(cells[3], *domain, "{}", ran.stderr);
        }
    }
    assert!(ran.stderr.contains("run 1: WARNING"), "{}", ran.stderr);
    // The pages, each after the command that prints it.
    for cmd in [
        "$ dpplan runs --state",
        "$ dpplan show 1 --state",
        "$ dpplan show 1 --activity 1 --state",
        "$ dpplan show 1 --activity 2 --state",
        "$ dpplan show 1 --task 1 --state",
    ] {
        assert!(out.contains(cmd), "no {cmd:?}:\n{out}");
    }
    let activity2 = &out[out.find("--activity 2").unwrap()..out.find("--task 1").unwrap()];
    for needle in ["TEST8", "DOMAIN1", "DOMAIN2", "TEST9", "SKIPPED"] {
        assert!(activity2.contains(needle), "{needle}:\n{activity2}");
    }
    assert!(out.contains("QA1/secure-backup/"), "{out}");
    assert!(
        out.contains("TEST8/domain/DOMAIN2/DOMAIN2-export-"),
        "{out}"
    );
    assert!(out.contains("-nonpersisted.zip"), "{out}");
    // The directory it names is kept, with a plan that checks clean and is canonical.
    let dir = demo_dir(out);
    let dir = dir.as_str();
    assert!(out.contains(&format!("files stay in {dir}")), "{out}");
    let plan = std::path::Path::new(dir).join("demo.dpplan");
    let plan = plan.to_str().unwrap();
    Test::new()
        .args(["check", "--deny-warnings", plan])
        .run()
        .status(0);
    Test::new().args(["fmt", "--check", plan]).run().status(0);
    let text = std::fs::read_to_string(plan).unwrap();
    assert!(!text.contains("DESIGN"), "{text}");
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());
}

/// What the demo's plan says to do to run it again, done verbatim: in its directory, start
/// `dpplan sim --fleet fleet.toml --tls --ca-out ca.pem`, then run the plan against it.
#[test]
fn the_kept_demo_runs_again_against_its_fleet_file() {
    let dir = Path::new(&demo().dir);
    let plan = std::fs::read_to_string(dir.join("demo.dpplan")).unwrap();
    let sim_cmd = "dpplan sim --fleet fleet.toml --tls --ca-out ca.pem";
    let run_cmd = "dpplan run demo.dpplan --state state.redb";
    let said = plan.replace("\n# ", " ");
    assert!(
        said.contains(&format!("`{sim_cmd}`")) && said.contains(&format!("`{run_cmd}`")),
        "{plan}"
    );
    let argv =
        |cmd: &str| -> Vec<String> { cmd.split_whitespace().skip(1).map(String::from).collect() };
    let mut sim = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(argv(sim_cmd))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // One line per device once every one listens.
    let mut lines = std::io::BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut served = Vec::new();
    while served.len() < 5 {
        match lines.next() {
            Some(Ok(l)) => served.push(l),
            _ => break,
        }
    }
    let again = Test::new()
        .cwd(dir)
        .args(argv(run_cmd))
        .args(["--quiet"])
        .run();
    sim.kill().unwrap();
    sim.wait().unwrap();
    assert_eq!(served.len(), 5, "the fleet file serves: {served:?}");
    // DPOD's example again: WARNING (TEST9 is down), run 2 of the kept state file.
    let again = again.status(5);
    again.stderr_has("run 2: WARNING");
}

#[test]
fn demo_clean_removes_the_directories_earlier_demos_kept() {
    // A copy of a demo's directory, alone in a temporary directory of its own.
    let demo = demo();
    let tmp = demo.copy_tmp.path().display().to_string();
    let dir = demo
        .copy_tmp
        .path()
        .join(Path::new(&demo.dir).file_name().unwrap())
        .display()
        .to_string();
    assert!(Path::new(&dir).join("fleet.toml").is_file());
    assert!(Path::new(&dir).join("state.redb").is_file());
    // A directory that only looks like a demo's is left alone.
    let lookalike = Path::new(&tmp).join("dpplan-demo-not-ours");
    std::fs::create_dir_all(&lookalike).unwrap();
    let clean = || {
        Test::new()
            .env("TMPDIR", &tmp)
            .args(["demo", "--clean"])
            .run()
            .status(0)
    };
    let ran = clean();
    assert_eq!(ran.stdout, format!("removed {dir}\n"));
    assert!(!Path::new(&dir).exists(), "{dir} is still there");
    assert!(lookalike.exists());
    clean().stdout_has("no demo directories to remove");
}

/// `dpplan backups` lists every backup the demo wrote (a copy of its store: another test runs
/// the kept demo again).
#[test]
fn backups_lists_every_backup_of_the_demos_store() {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(&demo().dir).join("store"), copy.path());
    let mut manifests = 0;
    let mut stack = vec![copy.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !name.starts_with('.') && name.ends_with("manifest.json") {
                manifests += 1;
            }
        }
    }
    let v = Test::new()
        .args([
            "backups",
            "--store",
            copy.path().to_str().unwrap(),
            "--json",
        ])
        .run()
        .status(0)
        .json();
    let rows = v["backups"].as_array().unwrap();
    assert!(manifests >= 4, "{manifests} manifests");
    assert_eq!(rows.len(), manifests, "{v}");
    let kinds: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["EXPORT_DOMAIN", "SECURE_BACKUP"].into_iter().collect()
    );
    assert!(
        rows.iter().all(|r| r["check"] == "ok" && r["run"] == 1),
        "{v}"
    );
    // The table names them too.
    let table = Test::new()
        .args(["backups", "--store", copy.path().to_str().unwrap()])
        .run()
        .status(0);
    assert_eq!(
        table.stdout.lines().count(),
        manifests + 1,
        "{}",
        table.stdout
    );
}
