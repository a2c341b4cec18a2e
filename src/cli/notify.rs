//! After `run`, `resume` and `retry`: delivering the notifications the state file's outbox
//! has due, for a few seconds at most (docs/notifications.md, "Under `dpplan run`").

use crate::notify::{AttemptResult, Outbox};
use crate::store::RedbStore;
use std::sync::Arc;
use std::time::Duration;

/// How long the attempts after a run may take in all (each is held to it; recording them
/// adds a moment). Whatever is not delivered by then waits for the next process.
pub const DELIVERY_TIME: Duration = Duration::from_secs(4);

/// Attempts what the outbox of `store` has due now, for at most [`DELIVERY_TIME`] (or until
/// an interrupt), saying on stderr what became of each attempt unless `quiet`. Nothing here
/// changes the run's exit code; a failure leaves the entry for the next `run` or `serve`.
pub(crate) fn deliver(rt: &tokio::runtime::Runtime, store: Arc<RedbStore>, quiet: bool) {
    let outbox = Outbox::new(store);
    let pass = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return Some(outbox.deliver_for(DELIVERY_TIME).await);
        };
        tokio::select! {
            pass = outbox.deliver_for(DELIVERY_TIME) => Some(pass),
            _ = int.recv() => None,
            _ = term.recv() => None,
        }
    });
    let pass = match pass {
        Some(Ok(pass)) => pass,
        Some(Err(e)) => {
            eprintln!("warning: notifications not delivered: {e}; the next `dpplan run` or `dpplan serve` delivers them");
            return;
        }
        None => {
            if !quiet {
                eprintln!("notify: interrupted; what was not delivered waits for the next `dpplan run` or `dpplan serve`");
            }
            return;
        }
    };
    if quiet {
        return;
    }
    for a in &pass.attempts {
        let what = match &a.result {
            AttemptResult::Delivered => "delivered".to_string(),
            AttemptResult::Failed { error, .. } => format!(
                "attempt {} failed: {error}; the next `dpplan run` or `dpplan serve` tries again",
                a.attempt
            ),
            AttemptResult::GaveUp { error } => {
                format!("attempt {} failed: {error}; given up", a.attempt)
            }
        };
        eprintln!(
            "notify {} (run {}): {}: {}",
            a.notifier,
            a.run,
            a.channel,
            crate::report::table::printable(&what, false)
        );
    }
}
