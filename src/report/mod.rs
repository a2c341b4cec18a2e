//! The result pages (docs/cli.md) as values: runs, a run's activities, an activity's
//! tasks, a task, the activity log; each as rows for a table and as a serde view for `--json`
//! (field names are stable, documented in docs/cli.md). Also the store's file tools:
//! [`verify`] (files against their manifests) and [`prune`] (retention).
//!
//! Reads only through [`History`] and the filesystem; prints nothing (the CLI does). Pages show
//! times in the [`Zone`] the CLI passes (the local zone, or UTC), always with the offset;
//! tables fit the width the CLI passes (a terminal's), or cut nothing.

pub mod catalogue;
pub mod diff;
pub mod plan;
pub mod prune;
pub mod table;
pub mod verify;

mod format;
mod log;
mod outcome;
mod task;

pub use format::{duration, json_time, since_start, size, Look, Zone};
use format::{opt_time, parse_time, plain, toned};
pub use log::{log_text, log_views, run_log, LogError, LogView};
pub use outcome::{RunReport, TaskReport};
use task::task_time;
pub use task::{FileView, FirmwareView, ImportView, StepView, TaskPage, TaskView};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::{ActivityRecord, RunDetail, RunSummary, TaskState, TaskStatus};
pub use table::Fit;
use table::{Column, Table};

// ---------------------------------------------------------------------------------------
// Runs

/// One run, as `dpplan runs --json` prints it (and a notification carries it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    /// The run's number.
    pub id: u64,
    /// Its plan.
    pub plan: String,
    /// Start (RFC 3339, UTC).
    pub started: String,
    /// When it reached its final status, if it has.
    pub finished: Option<String>,
    /// Its status (`COMPLETED`).
    pub status: String,
    /// Distinct devices among its tasks.
    pub devices: u32,
    /// Distinct (device, domain) pairs among its export tasks.
    pub domains: u32,
    /// Tasks SUCCEEDED or WARNING.
    pub succeeded: u32,
    /// Tasks FAILED, ROLLED_BACK or CANCELLED.
    pub failed: u32,
    /// Tasks SKIPPED.
    pub skipped: u32,
    /// The run's error, if any.
    pub error: Option<String>,
}

impl RunView {
    /// The view of a summary.
    pub fn new(s: &RunSummary) -> RunView {
        RunView {
            id: s.id,
            plan: s.plan.clone(),
            started: json_time(s.started),
            finished: opt_time(s.finished),
            status: s.status.as_str().to_string(),
            devices: s.devices,
            domains: s.domains,
            succeeded: s.succeeded,
            failed: s.failed,
            skipped: s.skipped,
            error: s.error.clone(),
        }
    }
}

/// The `dpplan runs` table.
pub fn runs_table(runs: &[RunSummary], look: Look) -> String {
    let mut t = Table::new(vec![
        Column::right("ID"),
        Column::whole("STARTED"),
        Column::left("PLAN"),
        Column::right("DEV"),
        Column::right("DOM"),
        Column::whole("STATUS"),
        Column::right("OK"),
        Column::right("FAIL"),
        Column::right("SKIP"),
        Column::left("ERROR"),
    ]);
    for r in runs {
        t.toned_row(vec![
            plain(r.id),
            plain(look.zone.format(r.started, "%Y-%m-%d %H:%M %:z")),
            plain(&r.plan),
            plain(r.devices),
            plain(r.domains),
            toned(r.status.as_str()),
            plain(r.succeeded),
            plain(r.failed),
            plain(r.skipped),
            plain(r.error.as_deref().unwrap_or("")),
        ]);
    }
    t.render(look.fit)
}

// ---------------------------------------------------------------------------------------
// A run and its activities

/// Task counts of a group of tasks, as the summary counts them.
fn counts<'a>(tasks: impl Iterator<Item = &'a TaskState>) -> (u32, u32, u32) {
    let (mut ok, mut failed, mut skipped) = (0, 0, 0);
    for t in tasks {
        match t.status {
            TaskStatus::Succeeded | TaskStatus::Warning => ok += 1,
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled => failed += 1,
            TaskStatus::Skipped => skipped += 1,
            TaskStatus::Pending | TaskStatus::Running => {}
        }
    }
    (ok, failed, skipped)
}

/// An activity's status, from its tasks, by the rule for runs (docs/cli.md, "Result pages"):
/// PENDING before any task started, RUNNING while some are not final, then COMPLETED,
/// STOPPED (all SKIPPED), WARNING or FAILED. `-` when it has no tasks.
fn activity_status(tasks: &[&TaskState]) -> &'static str {
    if tasks.is_empty() {
        return "-";
    }
    if tasks.iter().all(|t| t.status == TaskStatus::Pending) {
        return "PENDING";
    }
    if tasks.iter().any(|t| !t.status.is_final()) {
        return "RUNNING";
    }
    if tasks.iter().all(|t| t.status == TaskStatus::Succeeded) {
        return "COMPLETED";
    }
    if tasks.iter().all(|t| t.status == TaskStatus::Skipped) {
        return "STOPPED";
    }
    let bad = tasks.iter().any(|t| {
        matches!(
            t.status,
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled
        )
    });
    if bad {
        "FAILED"
    } else {
        "WARNING"
    }
}

/// One activity of a run, as `dpplan show RUN --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityView {
    /// 1-based, in plan order.
    pub id: u32,
    /// The kind (`secure_backup`).
    pub kind: String,
    /// The optional label.
    pub label: Option<String>,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The device patterns, as written.
    pub device_pattern: String,
    /// The domain patterns, as written.
    pub domain_pattern: String,
    /// Derived from its tasks (PENDING, RUNNING, COMPLETED, WARNING, FAILED, STOPPED, `-`).
    pub status: String,
    /// When it reached that status (its last task's), if any task has started.
    pub status_time: Option<String>,
    /// Tasks SUCCEEDED or WARNING.
    pub succeeded: u32,
    /// Tasks FAILED, ROLLED_BACK or CANCELLED.
    pub failed: u32,
    /// Tasks SKIPPED.
    pub skipped: u32,
}

/// The page of `dpplan show RUN --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunPage {
    /// The run's summary.
    pub run: RunView,
    /// SHA-256 of the plan text it ran.
    pub plan_hash: String,
    /// Its activities.
    pub activities: Vec<ActivityView>,
}

fn activity_view(a: &ActivityRecord, detail: &RunDetail) -> (ActivityView, Option<DateTime<Utc>>) {
    let tasks: Vec<&TaskState> = detail
        .tasks
        .iter()
        .filter(|t| t.task.activity == a.id)
        .collect();
    let (succeeded, failed, skipped) = counts(tasks.iter().copied());
    let time = tasks.iter().filter_map(|t| task_time(t)).max();
    (
        ActivityView {
            id: a.id,
            kind: a.kind.clone(),
            label: a.label.clone(),
            action: a.action.clone(),
            device_pattern: a.device_pattern.clone(),
            domain_pattern: a.domain_pattern.clone(),
            status: activity_status(&tasks).to_string(),
            status_time: opt_time(time),
            succeeded,
            failed,
            skipped,
        },
        time,
    )
}

impl RunPage {
    /// The page of a run.
    pub fn new(detail: &RunDetail) -> RunPage {
        RunPage {
            run: RunView::new(&detail.summary),
            plan_hash: detail.plan_hash.clone(),
            activities: detail
                .activities
                .iter()
                .map(|a| activity_view(a, detail).0)
                .collect(),
        }
    }
}

/// The heading of a run's pages: what it is and how it ended.
fn run_heading(s: &RunSummary, zone: Zone) -> String {
    let mut out = format!("Run {}  plan {}  {}\n", s.id, s.plan, s.status.as_str());
    out.push_str(&format!("started   {}\n", zone.time(s.started)));
    if let Some(f) = s.finished {
        out.push_str(&format!(
            "finished  {}  ({})\n",
            zone.time(f),
            duration(f - s.started)
        ));
    }
    out.push_str(&format!(
        "tasks     {} succeeded, {} failed, {} skipped  ({} devices, {} domains)\n",
        s.succeeded, s.failed, s.skipped, s.devices, s.domains
    ));
    if let Some(e) = &s.error {
        out.push_str(&format!("error     {}\n", table::printable(e, false)));
    }
    out
}

/// The `dpplan show RUN` page: the run's heading and its activities.
pub fn run_page(detail: &RunDetail, look: Look) -> String {
    let mut t = Table::new(vec![
        Column::right("ID"),
        Column::whole("TIME"),
        Column::left("DEVICES"),
        Column::left("DOMAINS"),
        Column::whole("ACTION"),
        Column::whole("STATUS"),
        Column::right("OK"),
        Column::right("FAIL"),
        Column::right("SKIP"),
    ]);
    for a in &detail.activities {
        let (v, time) = activity_view(a, detail);
        t.toned_row(vec![
            plain(v.id),
            plain(
                time.map(|t| since_start(detail.summary.started, t))
                    .unwrap_or_else(|| "-".into()),
            ),
            plain(v.device_pattern),
            plain(v.domain_pattern),
            plain(v.action),
            toned(&v.status),
            plain(v.succeeded),
            plain(v.failed),
            plain(v.skipped),
        ]);
    }
    format!(
        "{}\n{}",
        run_heading(&detail.summary, look.zone),
        t.render(look.fit)
    )
}

// ---------------------------------------------------------------------------------------
// An activity's tasks

/// The page of `dpplan show RUN --activity N --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityPage {
    /// The run's summary.
    pub run: RunView,
    /// The activity.
    pub activity: ActivityView,
    /// Its tasks.
    pub tasks: Vec<TaskView>,
}

impl ActivityPage {
    /// The page of activity `id`, if the run has it.
    pub fn new(detail: &RunDetail, id: u32) -> Option<ActivityPage> {
        let a = detail.activities.iter().find(|a| a.id == id)?;
        Some(ActivityPage {
            run: RunView::new(&detail.summary),
            activity: activity_view(a, detail).0,
            tasks: detail
                .tasks
                .iter()
                .filter(|t| t.task.activity == id)
                .map(TaskView::new)
                .collect(),
        })
    }

    /// The `dpplan show RUN --activity N` page.
    pub fn render(&self, look: Look) -> String {
        let a = &self.activity;
        let mut out = format!(
            "Run {}  activity {}  {}{}  {}\n",
            self.run.id,
            a.id,
            a.kind,
            a.label
                .as_ref()
                .map(|l| format!(" \"{l}\""))
                .unwrap_or_default(),
            a.status
        );
        out.push_str(&format!(
            "devices {}  domains {}  action {}\n",
            a.device_pattern, a.domain_pattern, a.action
        ));
        out.push_str(&format!(
            "tasks   {} succeeded, {} failed, {} skipped\n\n",
            a.succeeded, a.failed, a.skipped
        ));
        let mut t = Table::new(vec![
            Column::right("ID"),
            Column::whole("TIME"),
            Column::left("DEVICE"),
            Column::left("DOMAIN"),
            Column::right("FILES"),
            Column::right("ERRS"),
            Column::whole("STATUS"),
            Column::left("ERROR"),
        ]);
        for task in &self.tasks {
            let time = match (parse_time(&self.run.started), task.status_time.as_deref()) {
                (Some(start), Some(t)) => parse_time(t)
                    .map(|t| since_start(start, t))
                    .unwrap_or_else(|| "-".into()),
                _ => "-".into(),
            };
            t.toned_row(vec![
                plain(task.id),
                plain(time),
                plain(&task.device),
                plain(&task.domain),
                plain(task.files),
                plain(task.download_errors),
                toned(&task.status),
                plain(task.error.as_deref().unwrap_or("")),
            ]);
        }
        out.push_str(&t.render(look.fit));
        out
    }
}

// ---------------------------------------------------------------------------------------
// A task

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_carry_their_zone_offset() {
        use chrono::TimeZone;
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 17, 2, 11).unwrap();
        let berlin = Zone::from_tz(Some("Europe/Berlin"));
        assert_eq!(berlin.time(t), "2026-11-30 18:02:11 +01:00");
        assert_eq!(Zone::from_tz(Some(":Europe/Berlin")), berlin);
        assert_eq!(Zone::Utc.time(t), "2026-11-30 17:02:11 +00:00");
        let summer = Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap();
        assert_eq!(berlin.time(summer), "2026-07-01 14:00:00 +02:00");
        assert_eq!(Zone::from_tz(Some("not/a zone")), Zone::Local);
    }

    #[test]
    fn durations_and_sizes() {
        let ms = chrono::Duration::milliseconds;
        assert_eq!(duration(ms(1234)), "1.2s");
        assert_eq!(duration(ms(0)), "0.0s");
        assert_eq!(duration(ms(245_000)), "4m05s");
        assert_eq!(duration(ms(7_380_000)), "2h03m");
        assert_eq!(duration(ms(-5)), "0.0s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(12 * 1024 * 1024), "12.0 MiB");
    }
}
