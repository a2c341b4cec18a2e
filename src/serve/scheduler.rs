//! Starting plans when they fall due: at their `schedule`'s times, else at each opening of
//! their window. A plan never runs twice at once: a due time during its own run is logged and
//! skipped. At start, what fell due while serve was down is caught up on when the plan's
//! window is still open, otherwise recorded MISSED.

use super::daemon::{Daemon, StartRequest};
use crate::schedule::{last_due, next_due};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// The longest the scheduler sleeps between looks (the clock may jump; plans may change).
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The scheduler's loop, until `stop`.
pub(super) async fn run(daemon: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut checked = daemon.clock.now();
    catch_up(&daemon, checked).await;
    loop {
        if *stop.borrow() || daemon.stopping() {
            return;
        }
        let catalog = daemon.catalog();
        let now = daemon.clock.now();
        for (name, entry) in &catalog.plans {
            let Some(plan) = entry.plan() else { continue };
            if let Some(due) = next_due(plan, checked).filter(|d| *d <= now) {
                let why = if plan.schedule.is_some() {
                    "scheduled"
                } else {
                    "its window opened"
                };
                fire(&daemon, name, due, why);
            }
        }
        checked = now;
        let next = catalog
            .plans
            .values()
            .filter_map(|e| e.plan().and_then(|p| next_due(p, now)))
            .min();
        let wait = next
            .map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            // A little past the due time, so the clock reads it as passed.
            _ = tokio::time::sleep(wait + Duration::from_millis(5)) => {}
            _ = daemon.wake.notified() => {}
            _ = stop.changed() => {}
        }
    }
}

/// Starts plan `name`, due at `due`, in the background (the fleet's probe takes a while);
/// skipped, with a log line, while a run of it goes on.
fn fire(daemon: &Arc<Daemon>, name: &str, due: DateTime<Utc>, why: &str) {
    let at = due.to_rfc3339();
    if let Some(run) = daemon.running_run_of(name) {
        daemon.reporter.say(&format!(
            "plan \"{name}\" fell due at {at} while its run {run} goes on: skipped"
        ));
        return;
    }
    let daemon = daemon.clone();
    let name = name.to_string();
    let origin = format!("dpplan serve ({why}; due at {at})");
    tokio::spawn(async move {
        match daemon.start(&name, StartRequest::default(), origin).await {
            Ok(run) => daemon
                .reporter
                .say(&format!("plan \"{name}\" fell due at {at}: run {run}")),
            Err(e) => daemon.reporter.say(&format!(
                "plan \"{name}\" fell due at {at} but did not start: {e}"
            )),
        }
    });
}

/// What fell due while serve was down, since each plan's newest run: started when the plan's
/// window is open now, else recorded MISSED. A plan that never ran owes nothing.
async fn catch_up(daemon: &Arc<Daemon>, now: DateTime<Utc>) {
    use crate::store::History;
    let catalog = daemon.catalog();
    for (name, entry) in &catalog.plans {
        let Some(plan) = entry.plan() else { continue };
        let last = match daemon.store.runs(Some(name), 1) {
            Ok(r) => r.first().map(|r| r.started),
            Err(e) => {
                daemon
                    .reporter
                    .say(&format!("plan \"{name}\": cannot read its runs: {e}"));
                continue;
            }
        };
        let Some(due) = last.and_then(|after| last_due(plan, after, now)) else {
            continue;
        };
        let open = plan
            .window
            .as_ref()
            .is_none_or(|w| crate::engine::window::is_open(w, now));
        if open {
            fire(
                daemon,
                name,
                due,
                "catch-up: it fell due while serve was down",
            );
        } else {
            match daemon.record_missed(name, due).await {
                Ok(run) => daemon.reporter.say(&format!(
                    "plan \"{name}\" fell due at {} while serve was down and its window has closed: run {run} MISSED",
                    due.to_rfc3339()
                )),
                Err(e) => daemon
                    .reporter
                    .say(&format!("plan \"{name}\": cannot record a missed run: {e}")),
            }
        }
    }
}
