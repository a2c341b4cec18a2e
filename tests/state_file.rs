//! One state file serves every command at once (DESIGN.md 5 and 7), through the binary:
//! reports read it while a run writes it, and never write it themselves; a second run waits
//! for the writer (or with `--no-wait` fails at once, naming it); a run whose process was
//! killed shows INTERRUPTED with the hint to resume it; and the default state file is the
//! same whatever directory a command starts in. The simulated fleet is started by the test.

use crate::engine::World;
use crate::support::fleet::dpod;
use crate::support::{Ran, Test};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A task hook that holds its task until the test creates `go` beside the plan (at most 60 s,
/// so a failed test leaves nothing running), after creating `at-gate`: a run stays RUNNING,
/// with a task running, for exactly as long as the test needs (slow simulated quiesces did
/// this before, for a guessed time, and cost seconds).
const GATE: &str = "#!/bin/sh\ntouch at-gate\ni=0\nwhile [ ! -e go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n";

/// Writes the gate script into `dir`.
fn write_gate(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("gate.sh");
    std::fs::write(&path, GATE).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Lets every gated task go on.
fn open_gate(dir: &Path) {
    std::fs::write(dir.join("go"), "").unwrap();
}

/// A plan file reaching `w`'s fleet (absolute paths: it runs from anywhere).
fn plan_file(w: &World, plan: &str) -> String {
    format!(
        "import \"std/datapower\"\nstore \"{}\" {{}}\n{}\n{plan}",
        w.store().display(),
        w.inventory().replace(
            "file(\"pw\")",
            &format!("file(\"{}\")", w.dir.path().join("pw").display())
        )
    )
}

/// Backs up the QA devices, quiescing them.
const NIGHTLY: &str = r#"
plan "nightly" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
    quiesce = 60s
  }
  activity export_domain "test-domains" {
    devices    = ["TEST8", "TEST9"]
    domains    = "DOMAIN*"
    on_failure = continue
  }
}
"#;

/// [`NIGHTLY`] with its backups held at the gate (see [`GATE`]) until the test opens it.
fn gated_nightly() -> String {
    let plan = NIGHTLY.replace(
        "    quiesce = 60s\n  }",
        "    quiesce = 60s\n    pre     = script(\"gate.sh\")\n  }",
    );
    assert!(plan.contains("gate.sh"), "NIGHTLY changed");
    plan
}

/// Another plan: one domain export, no quiesce.
const OTHER: &str = r#"
plan "other" {
  activity export_domain {
    devices = "TEST8"
    domains = "DOMAIN1"
  }
}
"#;

/// `dpplan ARGS --state STATE` in `dir`, in the background, stderr into `log`.
fn spawn(dir: &Path, state: &Path, args: &[&str], log: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(args)
        .arg("--state")
        .arg(state)
        .current_dir(dir)
        .env_remove("DPPLAN_STATE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap()
}

/// `dpplan ARGS --state STATE` in the state file's folder, to the end.
fn dpplan(state: &Path, args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(args)
        .arg("--state")
        .arg(state)
        .current_dir(state.parent().unwrap())
        .env_remove("DPPLAN_STATE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Ran {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Polls `check` every 50 ms until it holds; fails after `limit`, saying `what`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < end, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit; its exit code.
#[track_caller]
fn exit_code(child: &mut Child, limit: Duration) -> i32 {
    let mut code = None;
    wait_until(limit, "the process to exit", || {
        code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    code.unwrap_or(-1)
}

/// Whether `dpplan runs --json` shows run `id` with `status`.
fn shows(state: &Path, id: u64, status: &str) -> bool {
    let ran = dpplan(state, &["runs", "--json"]);
    ran.status == 0
        && ran
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id && r["status"] == status)
}

fn sha256(path: &Path) -> String {
    dpplan::backups::hash_file(path).unwrap().1
}

fn read(path: PathBuf) -> String {
    let mut s = String::new();
    let _ = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut s));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_read_while_a_run_writes_and_a_second_run_waits_for_it() {
    let w = World::new(dpod()).await;
    let dir = w.dir.path().to_path_buf();
    write_gate(&dir);
    std::fs::write(dir.join("nightly.dpplan"), plan_file(&w, &gated_nightly())).unwrap();
    std::fs::write(dir.join("other.dpplan"), plan_file(&w, OTHER)).unwrap();
    let state = dir.join("state.redb");
    tokio::task::block_in_place(|| {
        let mut first = spawn(
            &dir,
            &state,
            &["run", "nightly.dpplan", "--quiet"],
            "first.log",
        );
        let pid = first.id();

        // While it runs, the reports read the history and see it RUNNING.
        wait_until(
            Duration::from_secs(30),
            "run 1 RUNNING in `dpplan runs`",
            || shows(&state, 1, "RUNNING"),
        );
        let show = dpplan(&state, &["show", "1", "--json"]).status(0);
        assert_eq!(show.json()["run"]["status"], "RUNNING");
        dpplan(&state, &["log", "1"]).status(0);
        dpplan(&state, &["runs"])
            .status(0)
            .stdout_has("nightly")
            .stdout_has("RUNNING");

        // A second run with --no-wait fails at once, naming the writer; so does resume.
        let started = Instant::now();
        let named = format!("run 1 of plan \"nightly\" (pid {pid},");
        dpplan(&state, &["run", "other.dpplan", "--no-wait", "--quiet"])
            .status(1)
            .stderr_has("is in use")
            .stderr_has(&named);
        dpplan(&state, &["resume", "--no-wait", "--quiet"])
            .status(1)
            .stderr_has(&named);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "--no-wait waited"
        );
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended too soon"
        );

        // Without it, the second run waits, saying for whom, then runs once the first ends.
        let mut second = spawn(
            &dir,
            &state,
            &["run", "other.dpplan", "--quiet"],
            "second.log",
        );
        wait_until(Duration::from_secs(10), "the waiting message", || {
            read(dir.join("second.log")).contains("waiting for the state file")
        });
        let said = read(dir.join("second.log"));
        assert!(said.contains(&named), "{said}");
        assert!(said.contains("--no-wait fails at once"), "{said}");
        assert!(
            second.try_wait().unwrap().is_none(),
            "it did not wait: {said}"
        );
        open_gate(&dir);
        assert_eq!(
            exit_code(&mut first, Duration::from_secs(120)),
            5,
            "{}",
            read(dir.join("first.log"))
        );
        assert_eq!(
            exit_code(&mut second, Duration::from_secs(60)),
            0,
            "{}",
            read(dir.join("second.log"))
        );
    });
    let runs = tokio::task::block_in_place(|| dpplan(&state, &["runs", "--json"]).status(0));
    let runs = runs.json();
    let got: Vec<(u64, &str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["plan"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2, "other", "COMPLETED"), (1, "nightly", "WARNING")]
    );
    w.assert_clean();
}

/// `runs`, `show`, `log` and `verify` leave the state file's bytes as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_never_write_the_state_file() {
    let w = World::new(dpod()).await;
    let dir = w.dir.path().to_path_buf();
    std::fs::write(dir.join("nightly.dpplan"), plan_file(&w, NIGHTLY)).unwrap();
    let state = dir.join("state.redb");
    tokio::task::block_in_place(|| {
        let plan = dir.join("nightly.dpplan");
        dpplan(&state, &["run", plan.to_str().unwrap(), "--quiet"]).status(5);
        let before = sha256(&state);
        dpplan(&state, &["runs"]).status(0);
        dpplan(&state, &["runs", "--json"]).status(0);
        dpplan(&state, &["show", "1"]).status(0);
        dpplan(&state, &["show", "1", "--task", "1", "--json"]).status(0);
        dpplan(&state, &["log", "1"]).status(0);
        dpplan(&state, &["verify", "1"]).status(0);
        assert_eq!(sha256(&state), before, "a report changed the state file");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_shows_interrupted_with_the_resume_hint() {
    let w = World::new(dpod()).await;
    let dir = w.dir.path().to_path_buf();
    write_gate(&dir);
    std::fs::write(dir.join("nightly.dpplan"), plan_file(&w, &gated_nightly())).unwrap();
    let state = dir.join("state.redb");
    tokio::task::block_in_place(|| {
        let mut run = spawn(
            &dir,
            &state,
            &["run", "nightly.dpplan", "--quiet"],
            "run.log",
        );
        // Killed with its first task running (held at the gate).
        wait_until(Duration::from_secs(30), "a task at the gate", || {
            dir.join("at-gate").exists()
        });
        assert!(shows(&state, 1, "RUNNING"));
        run.kill().unwrap(); // SIGKILL: nothing is written, nothing closed
        open_gate(&dir);
        run.wait().unwrap();

        let runs = dpplan(&state, &["runs", "--json"]).status(0);
        let v = runs.json();
        assert_eq!(v[0]["id"], 1);
        assert_eq!(v[0]["status"], "INTERRUPTED", "{v}");
        let error = v[0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("dpplan resume 1"), "{error}");
        // The table may cut its error column to fit 80 columns: the hint comes first.
        dpplan(&state, &["runs"])
            .status(0)
            .stdout_has("INTERRUPTED")
            .stdout_has("dpplan re");
        let show = dpplan(&state, &["show", "1", "--json"]).status(0);
        assert_eq!(show.json()["run"]["status"], "INTERRUPTED");
        dpplan(&state, &["show", "1"])
            .status(0)
            .stdout_has("INTERRUPTED")
            .stdout_has("dpplan resume 1");
        // Its tasks are not shown running either.
        let tasks = dpplan(&state, &["show", "1", "--activity", "1"]).status(0);
        assert!(!tasks.stdout.contains("RUNNING"), "{}", tasks.stdout);

        // `resume` without a run picks it, and completes it.
        dpplan(&state, &["resume", "--quiet"]).status(5);
    });
    assert!(tokio::task::block_in_place(|| shows(&state, 1, "WARNING")));
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_state_file_is_the_same_from_any_directory() {
    let w = World::new(dpod()).await;
    let plan = plan_file(&w, OTHER);
    for xdg in [false, true] {
        let home = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let want = if xdg {
            home.path().join("xdg/dpplan/state.redb")
        } else {
            home.path().join(".local/state/dpplan/state.redb")
        };
        let env = |t: Test| {
            let t = t
                .env_remove("DPPLAN_STATE")
                .env_remove("XDG_STATE_HOME")
                .env("HOME", home.path());
            if xdg {
                t.env("XDG_STATE_HOME", home.path().join("xdg"))
            } else {
                t
            }
        };
        let run = env(Test::new()
            .file("p.dpplan", &plan)
            .args(["run", "p.dpplan", "--quiet"]));
        let first_dir = run.path().to_path_buf();
        tokio::task::spawn_blocking(move || run.run().status(0))
            .await
            .unwrap();
        assert!(want.is_file(), "no state file at {}", want.display());
        assert!(!first_dir.join(".dpplan").exists());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(want.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{}", want.display());

        let runs = env(Test::new().args(["runs", "--json"]).cwd(elsewhere.path()));
        let v = tokio::task::spawn_blocking(move || runs.run().status(0).json())
            .await
            .unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v[0]["plan"], "other");
    }
}
