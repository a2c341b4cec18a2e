//! Test helpers: a builder that runs the real `dpplan` binary and checks what it did
//! ([`Test`], [`Ran`]), and the modules below:
//!
//! - [`fleet`]: simulator fleet files built, not written out (the DPOD and QA fleets);
//! - [`appliance`] and [`world`]: scripted appliances and the engine in process on paused
//!   tokio time, for the engine's rules (retries, timeouts, ordering) in no real time;
//! - [`records`]: journal records spelled out once, and the attempts a run recorded;
//! - [`golden`]: golden files, compared or rewritten with `DPPLAN_BLESS=1`;
//! - [`soma`]: canned SOMA servers on loopback (recording what they receive) and fixtures;
//! - [`browser`]: headless Chromium driven over WebDriver (the dashboard's tests).

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One run of the `dpplan` binary in a fresh temporary directory.
pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    stdin: Option<String>,
    cwd: Option<PathBuf>,
    /// Environment changes after the defaults: set (`Some`) or removed (`None`).
    env: Vec<(String, Option<OsString>)>,
}

/// What a run produced.
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temporary directory"),
            args: Vec::new(),
            stdin: None,
            cwd: None,
            env: Vec::new(),
        }
    }

    /// Writes a file into the test directory (creating folders as needed).
    pub fn file(self, name: &str, text: &str) -> Test {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folders");
        }
        std::fs::write(&path, text).expect("write test file");
        self
    }

    /// Writes an executable script into the test directory.
    pub fn script(self, name: &str, text: &str) -> Test {
        let t = self.file(name, text);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = t.dir.path().join(name);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        t
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Test {
        self.args
            .extend(args.into_iter().map(|s| s.as_ref().to_string()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Test {
        self.stdin = Some(text.to_string());
        self
    }

    /// Runs in `dir` instead of the temporary directory.
    pub fn cwd(mut self, dir: &Path) -> Test {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Sets an environment variable (after the defaults, so it replaces one).
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Test {
        self.env.push((name.to_string(), Some(value.into())));
        self
    }

    /// Removes an environment variable (one of the defaults, or the test's own).
    pub fn env_remove(mut self, name: &str) -> Test {
        self.env.push((name.to_string(), None));
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the binary.
    #[track_caller]
    pub fn run(&self) -> Ran {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpplan"));
        cmd.args(&self.args)
            .current_dir(self.cwd.as_deref().unwrap_or(self.dir.path()))
            .env_remove("NO_COLOR")
            .env("DPPLAN_STATE", self.dir.path().join("state.redb"))
            // The example plans read their password from DP_PASSWORD: the tests' machine has
            // the secrets (a test that wants it unset says so with `.env_remove`).
            .env("DP_PASSWORD", "test-secret")
            // Never the real ~/.local/state, even for a test that unsets DPPLAN_STATE.
            .env("XDG_STATE_HOME", self.dir.path().join("xdg-state"))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in &self.env {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        let mut child = cmd.spawn().expect("spawn dpplan");
        if let Some(input) = &self.stdin {
            use std::io::Write;
            let mut s = child.stdin.take().expect("stdin");
            s.write_all(input.as_bytes()).expect("write stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait for dpplan");
        Ran {
            status: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Ran {
    #[track_caller]
    pub fn status(self, code: i32) -> Ran {
        assert_eq!(
            self.status, code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Ran {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Ran {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).expect("stdout is JSON")
    }
}

/// Copies directory `from` to `to` (created), files and folders, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Diagnostics without DP0041: the example plans name the administrator's secrets and CA
/// files, which this machine lacks (as CI's often does); everything else must be clean.
pub fn without_missing_secrets(
    diagnostics: Vec<dpplan::diag::Diagnostic>,
) -> Vec<dpplan::diag::Diagnostic> {
    diagnostics
        .into_iter()
        .filter(|d| d.code != dpplan::diag::Code::UnresolvedSecret)
        .collect()
}

/// A fresh pseudo-terminal of `rows` x `cols`: its master side (read what was written to the
/// terminal; reads end with an error once every slave descriptor is closed) and its slave side
/// (give it to a child as stdout or stderr, then drop every copy of it).
pub fn pty(rows: u16, cols: u16) -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
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
    (std::fs::File::from(master), slave)
}

/// Runs `dpplan ARGS` in `dir` with standard output on a fresh pseudo-terminal `cols` wide
/// (no colour: `NO_COLOR` is set), with `env` added; returns the exit status and what the
/// terminal received, carriage returns dropped.
pub fn stdout_on_pty(dir: &Path, args: &[&str], env: &[(&str, &str)], cols: u16) -> (i32, String) {
    use std::io::Read;
    let (mut master, slave) = pty(50, cols);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpplan"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("COLUMNS")
        .env("DPPLAN_STATE", dir.join("state.redb"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    let out = child.wait_with_output().unwrap();
    let bytes = reader.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&bytes).replace('\r', ""),
    )
}

pub mod appliance;
pub mod browser;
pub mod fleet;
pub mod golden;
pub mod records;
pub mod soma;
pub mod world;
pub use soma::*;
pub mod receivers;
