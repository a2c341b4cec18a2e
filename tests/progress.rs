//! What `dpplan run` shows while it runs: live lines under a pseudo-terminal, cleared before
//! the final table; plain lines when stderr is not a terminal. The simulated fleet is started
//! by the test on 127.0.0.1.

use crate::engine::World;
use crate::run_cli::plan_file;
use crate::support::fleet::{dpod, FleetFile};
use crate::support::Test;
use std::io::Read;
use std::process::{Command, Stdio};

/// DPOD's example fleet, slow enough that progress is drawn a few times.
fn slow_fleet() -> FleetFile {
    dpod()
        .set("quiesce_delay", "700ms")
        .set("unquiesce_delay", "400ms")
}

/// Runs `dpplan ARGS` in `dir` with stderr on a fresh pseudo-terminal of 50 x 120; returns
/// the exit status, stdout, and every byte written to the terminal.
fn run_on_pty(dir: &std::path::Path, args: &[&str]) -> (i32, String, Vec<u8>) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 50,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpplan"));
    cmd.args(args)
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env("DPPLAN_STATE", dir.join("state.redb"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the terminal's slave side: reads end when the child's closes
    let mut master = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        // Linux reports EIO on the master once every slave descriptor is closed.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    let out = child.wait_with_output().unwrap();
    let screen = reader.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        screen,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_gets_live_progress_then_a_clean_final_screen() {
    let w = World::new(slow_fleet()).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.dpplan"), plan_file(&w)).unwrap();
    let path = dir.path().to_path_buf();
    let (status, stdout, bytes) =
        tokio::task::spawn_blocking(move || run_on_pty(&path, &["run", "p.dpplan"]))
            .await
            .unwrap();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(status, 5, "{raw}");
    assert_eq!(stdout, "", "progress and the table go to stderr");
    // Progress rendered: the overall line and a task's line with its step.
    assert!(raw.contains("run 1: 6 tasks"), "{raw}");
    assert!(raw.contains("1 skipped"), "{raw}");
    assert!(
        raw.lines()
            .any(|l| l.contains("QA1") && l.contains("quiesce")),
        "{raw}"
    );
    assert!(
        raw.contains("\x1b["),
        "live lines are redrawn in place: {raw}"
    );
    // The final screen: the table and the outcome, nothing of the progress left.
    let mut parser = vt100::Parser::new(50, 120, 0);
    parser.process(&bytes);
    let screen = parser.screen().contents();
    // The run repeats the plan's safety warning (plain HTTP) before it starts.
    let lines: Vec<&str> = screen
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("warning DP0034"))
        .collect();
    assert!(lines[0].starts_with("ID  ACTION"), "{screen}");
    assert_eq!(lines.len(), 8, "{screen}");
    assert_eq!(lines[7], "run 1: WARNING", "{screen}");
    assert!(lines[6].contains("TEST9") && lines[6].contains("SKIPPED"));
    for l in &lines {
        assert!(!l.contains("tasks,") && !l.contains("quiesce"), "{screen}");
    }
    w.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_terminal_gets_plain_lines() {
    let w = World::new(dpod()).await;
    let t = Test::new()
        .file("p.dpplan", &plan_file(&w))
        .args(["run", "p.dpplan"]);
    let ran = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(5);
    assert_eq!(ran.stdout, "");
    assert!(!ran.stderr.contains('\x1b'), "{}", ran.stderr);
    let ran = ran
        .stderr_has("task 1 SECURE_BACKUP QA1 all-domains: RUNNING\n")
        .stderr_has("task 5 EXPORT_DOMAIN TEST8 DOMAIN2: SUCCEEDED\n")
        .stderr_has("run 1: WARNING\n");
    assert!(!ran.stderr.contains("tasks,"), "{}", ran.stderr);
}
