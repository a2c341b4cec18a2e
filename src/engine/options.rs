//! A run's options (stored with it for `resume`), what a retry chooses, and the live state
//! the driving process shares with the run.

use super::scripts;
use crate::compile::{self, Task};
use crate::store::RunId;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Knobs of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run outside the plan's window (manual runs).
    pub ignore_window: bool,
    /// The least time the availability probe of each device may take; it is given four
    /// times the device's `timeout` when that is longer.
    pub probe_timeout: Duration,
    /// How often quiesce state and secure-backup completion are polled.
    pub poll_interval: Duration,
    /// Timeout of scripts that set none.
    pub script_timeout: Duration,
    /// How long a secure backup may take to appear on the appliance.
    pub backup_timeout: Duration,
    /// Only the tasks of devices matching one of these patterns (`run --devices`); every
    /// device when empty.
    pub devices: Vec<String>,
    /// Only the tasks a retry chose (`dpplan retry`).
    pub retry: Option<Retry>,
    /// Who started the run and how (user, host, command, plan file and its SHA-256): the
    /// first line of its activity log.
    pub origin: Option<String>,
    /// Warnings about the run's safety (certificate checks off, plain HTTP), recorded in its
    /// log after the origin.
    pub warnings: Vec<String>,
}

/// The tasks of an earlier run that `dpplan retry` runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Retry {
    /// The run retried.
    pub of: RunId,
    /// Its tasks to run again, by activity, device and target. A task that was SKIPPED
    /// names no target: whatever its device's domains expand to now is retried.
    pub tasks: Vec<(u32, String, Option<compile::Target>)>,
}

impl Retry {
    /// Whether task `t` of the new expansion is one the retry chose.
    pub(super) fn wants(&self, t: &Task) -> bool {
        self.tasks.iter().any(|(a, d, target)| {
            *a == t.activity && *d == t.device && target.as_ref().is_none_or(|x| *x == t.target)
        })
    }
}

/// The options stored with a run, which `resume` continues under (docs/checkpoint-format.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredOptions {
    /// Started with `--ignore-window`: resuming never cancels its tasks for the window.
    #[serde(default)]
    pub ignore_window: bool,
    /// `--devices` patterns it was narrowed to.
    #[serde(default)]
    pub devices: Vec<String>,
    /// The run it retries.
    #[serde(default)]
    pub retry_of: Option<RunId>,
    /// Who started it and how.
    #[serde(default)]
    pub origin: Option<String>,
}

impl RunOptions {
    pub(super) fn stored(&self) -> StoredOptions {
        StoredOptions {
            ignore_window: self.ignore_window,
            devices: self.devices.clone(),
            retry_of: self.retry.as_ref().map(|r| r.of),
            origin: self.origin.clone(),
        }
    }

    /// Whether device `name` is in the run's scope (`--devices`, `retry`).
    pub(super) fn includes(&self, name: &str) -> bool {
        (self.devices.is_empty()
            || self
                .devices
                .iter()
                .any(|p| crate::check::patterns::matches(p, name)))
            && self
                .retry
                .as_ref()
                .is_none_or(|r| r.tasks.iter().any(|(_, d, _)| d == name))
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            warnings: Vec::new(),
            devices: Vec::new(),
            retry: None,
            origin: None,
            ignore_window: false,
            probe_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            script_timeout: Duration::from_secs(3600),
            backup_timeout: Duration::from_secs(3600),
        }
    }
}

/// What a run is doing right now, for the process that drives it: the interrupt flag, the
/// run's id, and what it holds quiesced (for the message of a forced exit).
#[derive(Debug, Default)]
pub struct Live {
    /// Once set, no new step starts (a graceful interrupt).
    pub interrupted: Arc<AtomicBool>,
    pub(super) run: std::sync::atomic::AtomicU64,
    /// What the run holds quiesced: a device, or a device's domain.
    pub(super) quiesced: std::sync::Mutex<std::collections::BTreeSet<(String, Option<String>)>>,
    /// The process groups of the scripts running now.
    pub(crate) scripts: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    /// Set by an operator's cancel: like an interrupt, but the tasks left end CANCELLED and
    /// so does the run.
    pub(crate) cancelled: AtomicBool,
    /// Wakes a run asleep through a closed window when it is interrupted.
    pub(crate) wake: tokio::sync::Notify,
}

impl Live {
    /// Cancels the run: no new step starts, running steps and owed `always` steps (the
    /// unquiesces) finish, the tasks left end CANCELLED and the run CANCELLED.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.interrupt();
    }

    /// The graceful interrupt: no new step starts; running steps and owed `always` steps
    /// finish; a run asleep through a closed window wakes. The run ends INTERRUPTED.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The run's id, once it exists.
    pub fn run(&self) -> Option<RunId> {
        match self.run.load(Ordering::SeqCst) {
            0 => None,
            r => Some(r),
        }
    }

    /// What the run has quiesced (or asked to quiesce) and not yet seen released, as
    /// `DEVICE` or `DEVICE/DOMAIN`.
    pub fn quiesced(&self) -> Vec<String> {
        self.held()
            .into_iter()
            .map(|(d, dom)| match dom {
                Some(dom) => format!("{d}/{dom}"),
                None => d,
            })
            .collect()
    }

    /// What the run holds quiesced, as (device, domain).
    pub(crate) fn held(&self) -> Vec<(String, Option<String>)> {
        self.quiesced
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Kills the scripts running now, with everything they started (a forced exit: they
    /// must not run on as orphans). Returns how many there were.
    pub fn kill_scripts(&self) -> usize {
        let n = self.scripts.lock().map(|s| s.len()).unwrap_or(0);
        scripts::kill_all(&self.scripts);
        n
    }

    pub(crate) fn hold(&self, what: (String, Option<String>), held: bool) {
        if let Ok(mut q) = self.quiesced.lock() {
            if held {
                q.insert(what);
            } else {
                q.remove(&what);
            }
        }
    }
}
