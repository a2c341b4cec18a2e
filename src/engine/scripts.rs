//! Running pre/post scripts: argv (never a shell string), a documented environment without
//! credentials, a timeout that kills the whole process group, output captured (bounded).

use crate::check::Script;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most output kept per stream; the rest is counted and dropped.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// How a script ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRun {
    /// Exit code; `None` when killed by a signal (or the timeout).
    pub code: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Captured standard output (at most [`OUTPUT_LIMIT`] bytes, lossy UTF-8).
    pub stdout: String,
    /// Captured standard error (likewise).
    pub stderr: String,
}

impl ScriptRun {
    /// Whether it succeeded (exit code 0).
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
}

async fn capture<R: AsyncRead + Unpin>(mut r: R) -> String {
    let mut kept = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                dropped += n.saturating_sub(room);
            }
        }
    }
    let mut s = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        s.push_str(&format!("\n[{dropped} more bytes not kept]"));
    }
    s
}

/// Runs `script` with `env` added to an environment from which `remove` (the names of
/// variables that hold credentials) and every `DPPLAN_` variable of the parent are taken out.
///
/// While it runs, its process group is in `running` (what a forced exit kills, so no hook
/// outlives dpplan as an orphan).
pub async fn run(
    script: &Script,
    env: &BTreeMap<String, String>,
    remove: &[String],
    default_timeout: Duration,
    running: &std::sync::Mutex<std::collections::BTreeSet<u32>>,
) -> std::io::Result<ScriptRun> {
    let mut cmd = tokio::process::Command::new(&script.path);
    cmd.args(&script.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The plan file's directory; runs stored before it was kept used the script's own.
    let dir = if script.dir.as_os_str().is_empty() {
        script.path.parent()
    } else {
        Some(script.dir.as_path())
    };
    if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty()) {
        cmd.current_dir(dir);
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("DPPLAN_") || remove.iter().any(|r| r == k.as_ref()) {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.envs(env);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let _registered = Registered::new(running, pid);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let out_task = tokio::spawn(async move {
        match out {
            Some(o) => capture(o).await,
            None => String::new(),
        }
    });
    let err_task = tokio::spawn(async move {
        match err {
            Some(e) => capture(e).await,
            None => String::new(),
        }
    });
    let limit = script
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(default_timeout);
    let (code, timed_out) = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            kill_group(pid);
            let _ = child.kill().await;
            (None, true)
        }
    };
    // Children that kept the pipes open were killed with the group; still, never wait long.
    let stdout = tokio::time::timeout(Duration::from_secs(5), out_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let stderr = tokio::time::timeout(Duration::from_secs(5), err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(ScriptRun {
        code,
        timed_out,
        stdout,
        stderr,
    })
}

/// A script's process group listed in the run's set while the script runs.
struct Registered<'a> {
    running: &'a std::sync::Mutex<std::collections::BTreeSet<u32>>,
    pid: Option<u32>,
}

impl<'a> Registered<'a> {
    fn new(
        running: &'a std::sync::Mutex<std::collections::BTreeSet<u32>>,
        pid: Option<u32>,
    ) -> Self {
        if let (Some(p), Ok(mut set)) = (pid, running.lock()) {
            set.insert(p);
        }
        Registered { running, pid }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if let (Some(p), Ok(mut set)) = (self.pid, self.running.lock()) {
            set.remove(&p);
        }
    }
}

/// Kills the process groups of the scripts in `running` (a forced exit: they would
/// otherwise run on as orphans).
pub fn kill_all(running: &std::sync::Mutex<std::collections::BTreeSet<u32>>) {
    if let Ok(set) = running.lock() {
        for p in set.iter() {
            kill_group(Some(*p));
        }
    }
}

/// Kills the process group led by `pid` (the script and everything it started).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(p) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
    }
}
