//! The activity log (`dpplan log`): lines with their times and the time each took.

use super::format::{duration, json_time, Zone};
use super::table;
use crate::store::LogLine;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One line of `dpplan log --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogView {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Milliseconds since the previous line of the same task (of the run, for run lines),
    /// or since the run's start for the first one.
    pub since_previous_ms: i64,
    /// The task, or `null` for the run itself.
    pub task: Option<u32>,
    /// The step, if any.
    pub step: Option<String>,
    /// The message.
    pub message: String,
}

/// Why a run's log cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The run has no such task.
    #[error("no task {0}")]
    NoTask(u32),
    /// The state file failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The log of a run (of one of its tasks), in time order (concurrent tasks append in commit
/// order; people read the log in time order), with its views: `dpplan log` and the API.
pub fn run_log(
    history: &dyn crate::store::History,
    detail: &crate::store::RunDetail,
    task: Option<u32>,
) -> Result<(Vec<LogLine>, Vec<LogView>), LogError> {
    if let Some(n) = task {
        if !detail.tasks.iter().any(|t| t.task.id == n) {
            return Err(LogError::NoTask(n));
        }
    }
    let mut lines = history.log(detail.summary.id, task)?;
    lines.sort_by_key(|l| l.at);
    let views = log_views(detail.summary.started, &lines);
    Ok((lines, views))
}

/// The log with each line's time since the previous line of its task (or the run start).
pub fn log_views(started: DateTime<Utc>, lines: &[LogLine]) -> Vec<LogView> {
    let mut last: std::collections::HashMap<Option<u32>, DateTime<Utc>> = Default::default();
    lines
        .iter()
        .map(|l| {
            let prev = last.insert(l.task, l.at).unwrap_or(started);
            LogView {
                at: json_time(l.at),
                since_previous_ms: (l.at - prev).num_milliseconds(),
                task: l.task,
                step: l.step.clone(),
                message: l.message.clone(),
            }
        })
        .collect()
}

/// The `dpplan log RUN` text: a date line with the zone's offset (`2026-09-21 +02:00`)
/// whenever the day or the offset changes, then `TIME  +SINCE  TASK  STEP  MESSAGE`.
/// Messages are never cut.
pub fn log_text(lines: &[LogLine], views: &[LogView], zone: Zone) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (l, v) in lines.iter().zip(views) {
        rows.push([
            zone.format(l.at, "%H:%M:%S%.3f"),
            format!(
                "+{}",
                duration(chrono::Duration::milliseconds(v.since_previous_ms))
            ),
            l.task
                .map(|t| format!("task {t}"))
                .unwrap_or_else(|| "run".into()),
            l.step.clone().unwrap_or_default(),
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w1, w2, w3) = (width(1), width(2), width(3));
    let mut out = String::new();
    let mut day = None;
    for (l, r) in lines.iter().zip(&rows) {
        let d = zone.format(l.at, "%Y-%m-%d %:z");
        if day.as_ref() != Some(&d) {
            out.push_str(&d);
            out.push('\n');
            day = Some(d);
        }
        let line = format!(
            "{}  {:>w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            table::printable(&l.message, true)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
