//! Named crash points for the crash tests: `DPPLAN_FAILPOINT=NAME` (or `NAME:N`) makes the
//! process abort, like a power cut, the first (or N-th) time it reaches point NAME. Unset,
//! a point costs one atomic load. Points: `after-intent`, `after-result`, `mid-download`,
//! `before-rename`, `after-rename`, `retry-backoff` (a failed attempt recorded, its retry not
//! yet begun), `resume`, `after-import` and `after-secure-restore` (the appliance has done it,
//! the journal does not know yet), `after-outcome` (a run's final or INTERRUPTED status and its
//! notifications are durable, none delivered yet). `panic-after-intent` panics the task's runner instead (a bug's
//! shape: the run must end INTERRUPTED, not hang).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static WANTED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

fn wanted() -> &'static Option<(String, u64)> {
    WANTED.get_or_init(|| {
        let v = std::env::var("DPPLAN_FAILPOINT").ok()?;
        match v.split_once(':') {
            Some((name, n)) => Some((name.to_string(), n.parse().ok()?)),
            None => Some((v, 1)),
        }
    })
}

/// Aborts the process here if `DPPLAN_FAILPOINT` names this point and its count is reached.
pub fn hit(name: &str) {
    if let Some((want, n)) = wanted() {
        if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            std::process::abort();
        }
    }
}

/// Panics here if `DPPLAN_FAILPOINT` names this point and its count is reached (the crash
/// tests' stand-in for a bug in a task runner).
pub fn panic_at(name: &str) {
    if let Some((want, n)) = wanted() {
        if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            panic!("failpoint {name}");
        }
    }
}
