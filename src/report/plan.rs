//! `dpplan plan`: the dry run's page. The plan's maintenance window (whether it is open, when
//! it closes or next opens) and its schedule (when it is next due) above the tasks the plan
//! expands into, as text and as a serde view for `--json`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::format::{json_time, Zone};
use super::table::{Column, Fit, Table, Tone};
use crate::check::{Plan, Program, Window, DAYS};
use crate::compile::Task;
use crate::schedule::{self, window};

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

/// A plan's schedule at an instant, as `dpplan plan --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScheduleView {
    /// The cron expression as written: `0 22 * * mon-fri`.
    pub cron: String,
    /// The IANA zone it is read in (the window's); `null` is the host's.
    pub tz: Option<String>,
    /// When it is next due (RFC 3339, UTC); `null` if never.
    pub next_due: Option<String>,
}

impl ScheduleView {
    /// The view of `plan`'s schedule at `now`; `None` when it has none.
    pub fn new(plan: &Plan, now: DateTime<Utc>) -> Option<ScheduleView> {
        let s = plan.schedule.as_ref()?;
        Some(ScheduleView {
            cron: s.cron.clone(),
            tz: plan.window.as_ref().and_then(|w| w.tz.clone()),
            next_due: schedule::next_due(plan, now).map(json_time),
        })
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
    /// Its schedule; `null` when it has none (it runs when started).
    pub schedule: Option<ScheduleView>,
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
            schedule: p.and_then(|p| ScheduleView::new(p, now)),
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

/// The schedule line of `dpplan plan`: `schedule  0 22 * * mon-fri Europe/Berlin: next due
/// 2026-12-01 22:00 +01:00`, the time in the schedule's zone (UTC with `utc`); empty when the
/// plan has no schedule.
pub fn schedule_line(plan: &Plan, now: DateTime<Utc>, utc: bool) -> String {
    let Some(s) = &plan.schedule else {
        return String::new();
    };
    let tz = plan.window.as_ref().and_then(|w| w.tz.as_deref());
    let zone = if utc { Zone::Utc } else { Zone::from_tz(tz) };
    let due = match schedule::next_due(plan, now) {
        Some(t) => format!("next due {}", zone.format(t, "%Y-%m-%d %H:%M %:z")),
        None => "never due".to_string(),
    };
    format!(
        "schedule  {} {}: {due}\n",
        s.cron,
        tz.unwrap_or("local time")
    )
}

/// The text of `dpplan plan`: the window line, the schedule line, then the tasks.
pub fn dry_run_text(
    view: &PlanView,
    plan: Option<&Plan>,
    now: DateTime<Utc>,
    fit: Fit,
    utc: bool,
) -> String {
    let w = plan.and_then(|p| p.window.as_ref());
    let schedule = plan.map(|p| schedule_line(p, now, utc)).unwrap_or_default();
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
    format!("{}{schedule}\n{}", window_line(w, now, utc), t.render(fit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{OnWindowClose, Policy, Schedule, Stages};

    fn plan(schedule: Option<&str>, tz: Option<&str>) -> Plan {
        Plan {
            name: "nightly".into(),
            window: tz.map(|z| Window {
                days: vec![0, 1, 2, 3, 4],
                from_min: Some(22 * 60),
                to_min: Some(4 * 60),
                tz: Some(z.into()),
            }),
            on_failure: Policy::Stop,
            stages: Stages::Pipelined,
            on_window_close: OnWindowClose::Cancel,
            pre_plan: None,
            post_plan: None,
            activities: Vec::new(),
            schedule: schedule.map(|c| Schedule { cron: c.into() }),
            notify: Vec::new(),
        }
    }

    #[test]
    fn the_schedule_line_gives_the_next_due_time_in_the_plans_zone() {
        // Tuesday 2026-12-01 13:00 Berlin.
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let p = plan(Some("30 22 * * mon-fri"), Some("Europe/Berlin"));
        assert_eq!(
            schedule_line(&p, now, false),
            "schedule  30 22 * * mon-fri Europe/Berlin: next due 2026-12-01 22:30 +01:00\n"
        );
        assert_eq!(
            schedule_line(&p, now, true),
            "schedule  30 22 * * mon-fri Europe/Berlin: next due 2026-12-01 21:30 +00:00\n"
        );
        let view = ScheduleView::new(&p, now).expect("a schedule");
        assert_eq!(view.next_due.as_deref(), Some("2026-12-01T21:30:00.000Z"));
        assert_eq!(view.tz.as_deref(), Some("Europe/Berlin"));
        // No schedule: no line, and `null` in JSON.
        let p = plan(None, Some("Europe/Berlin"));
        assert_eq!(schedule_line(&p, now, false), "");
        assert_eq!(ScheduleView::new(&p, now), None);
    }
}
