//! `dpplan plan`: the dry run's page. The plan's maintenance window (whether it is open, when
//! it closes or next opens) above the tasks the plan expands into, as text and as a serde
//! view for `--json`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::table::{Column, Table, Tone};
use super::{json_time, Fit, Zone};
use crate::check::{Program, Window, DAYS};
use crate::compile::Task;
use crate::schedule::window;

/// A plan's maintenance window at an instant, as `dpplan plan --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowView {
    /// The days it opens on (`mon`...).
    pub days: Vec<&'static str>,
    /// Opening time (`22:00`), or `null` for all day.
    pub from: Option<String>,
    /// Closing time (`04:00`, before `from`: the next day), or `null` for all day.
    pub to: Option<String>,
    /// The IANA zone; `null` is the host's.
    pub tz: Option<String>,
    /// For people: `mon-fri 22:00-04:00 Europe/Berlin`.
    pub description: String,
    /// Whether it is open now.
    pub open: bool,
    /// While open, when it closes (RFC 3339, UTC); `null` when closed or never closing.
    pub closes: Option<String>,
    /// When it next opens (RFC 3339, UTC); `null` when it never closes.
    pub next_open: Option<String>,
}

impl WindowView {
    /// The view of `w` at `now`.
    pub fn new(w: &Window, now: DateTime<Utc>) -> WindowView {
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        WindowView {
            days: w
                .days
                .iter()
                .filter_map(|d| DAYS.get(usize::from(*d)).copied())
                .collect(),
            from: w.from_min.filter(|_| w.to_min.is_some()).map(hhmm),
            to: w.to_min.filter(|_| w.from_min.is_some()).map(hhmm),
            tz: w.tz.clone(),
            description: window::describe(w),
            open: window::is_open(w, now),
            closes: window::closes(w, now).map(json_time),
            next_open: window::next_open(w, now).map(json_time),
        }
    }
}

/// One task of the dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedTask {
    /// 1-based, in creation order.
    pub id: u32,
    /// The activity's label, else its kind.
    pub activity: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The device.
    pub device: String,
    /// The domain; `all-domains` for secure backups and all-domains exports.
    pub domain: String,
    /// `PENDING`, `SKIPPED`, or `FAILED` (its device refused the credentials).
    pub status: &'static str,
    /// Why it is skipped or failed.
    pub reason: Option<String>,
}

/// The page of `dpplan plan --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanView {
    /// The plan's name.
    pub plan: String,
    /// Its window; `null` when it has none (it may run at any time).
    pub window: Option<WindowView>,
    /// The tasks it expands into.
    pub tasks: Vec<PlannedTask>,
}

impl PlanView {
    /// The dry run of plan `plan` of `program` at `now`, expanded into `tasks`.
    pub fn new(program: &Program, plan: &str, tasks: &[Task], now: DateTime<Utc>) -> PlanView {
        let p = program.plan(plan);
        let activity = |t: &Task| -> String {
            p.and_then(|p| p.activities.get((t.activity as usize).wrapping_sub(1)))
                .map(|a| a.label.clone().unwrap_or_else(|| a.kind.clone()))
                .unwrap_or_default()
        };
        PlanView {
            plan: plan.to_string(),
            window: p
                .and_then(|p| p.window.as_ref())
                .map(|w| WindowView::new(w, now)),
            tasks: tasks
                .iter()
                .map(|t| PlannedTask {
                    id: t.id,
                    activity: activity(t),
                    action: t.action.clone(),
                    device: t.device.clone(),
                    domain: t.target.domain_label().to_string(),
                    status: if t.skipped.is_some() {
                        "SKIPPED"
                    } else if t.failed.is_some() {
                        "FAILED"
                    } else {
                        "PENDING"
                    },
                    reason: t.skipped.clone().or_else(|| t.failed.clone()),
                })
                .collect(),
        }
    }
}

/// The window line of `dpplan plan`: `window  mon-fri 22:00-04:00 Europe/Berlin: closed;
/// next opens 2026-12-01 22:00 +01:00`, times in the window's zone (UTC with `utc`).
pub fn window_line(w: Option<&Window>, now: DateTime<Utc>, utc: bool) -> String {
    let Some(w) = w else {
        return "window  none: the plan runs at any time\n".into();
    };
    let at = |t: DateTime<Utc>| {
        if utc {
            Zone::Utc.format(t, "%Y-%m-%d %H:%M %:z")
        } else {
            window::local_time(w, t)
        }
    };
    let state = if window::is_open(w, now) {
        match window::closes(w, now) {
            Some(t) => format!("open now; closes {}", at(t)),
            None => "open now".into(),
        }
    } else {
        match window::next_open(w, now) {
            Some(t) => format!("closed; next opens {}", at(t)),
            None => "closed".into(),
        }
    };
    format!("window  {}: {state}\n", window::describe(w))
}

/// The text of `dpplan plan`: the window line, then the tasks.
pub fn dry_run_text(
    view: &PlanView,
    w: Option<&Window>,
    now: DateTime<Utc>,
    fit: Fit,
    utc: bool,
) -> String {
    let mut t = Table::new(vec![
        Column::right("ID"),
        Column::left("ACTIVITY"),
        Column::whole("ACTION"),
        Column::left("DEVICE"),
        Column::left("DOMAIN"),
        Column::left("STATUS"),
    ]);
    for task in &view.tasks {
        let status = match &task.reason {
            Some(r) => format!("SKIPPED: {r}"),
            None => task.status.to_string(),
        };
        let tone = match task.reason {
            Some(_) => Tone::Warn,
            None => Tone::Plain,
        };
        t.toned_row(vec![
            (task.id.to_string(), Tone::Plain),
            (task.activity.clone(), Tone::Plain),
            (task.action.clone(), Tone::Plain),
            (task.device.clone(), Tone::Plain),
            (task.domain.clone(), Tone::Plain),
            (status, tone),
        ]);
    }
    format!("{}\n{}", window_line(w, now, utc), t.render(fit))
}
