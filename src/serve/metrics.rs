//! `/metrics`: Prometheus text exposition format (version 0.0.4). Runs by plan and outcome
//! (counted from the whole history at start, then as runs end), task durations as a
//! histogram, and per device the time of its last successful backup.

use crate::store::{History, RunStatus, StoreError, TaskStatus};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the task duration histogram, in seconds.
const BUCKETS: [f64; 11] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// How many of the newest runs are read at start for the devices' last backups.
const SCAN_RUNS: usize = 200;

#[derive(Debug, Default)]
struct Figures {
    runs: BTreeMap<(String, &'static str), u64>,
    /// Per bucket (cumulative at render), then the count above the last bucket.
    durations: [u64; BUCKETS.len() + 1],
    duration_sum: f64,
    duration_count: u64,
    last_backup: BTreeMap<String, DateTime<Utc>>,
}

/// The daemon's figures.
#[derive(Debug, Default)]
pub struct Metrics {
    figures: Mutex<Figures>,
}

impl Metrics {
    /// Counts the runs of the history by plan and status (reading run headers only: quick
    /// even for years of runs). Devices' last backups come from [`Metrics::scan`].
    pub fn from_history(history: &dyn History) -> Result<Metrics, StoreError> {
        let mut f = Figures::default();
        for r in &history.runs(None, usize::MAX)? {
            *f.runs
                .entry((r.plan.clone(), r.status.as_str()))
                .or_default() += 1;
        }
        Ok(Metrics {
            figures: Mutex::new(f),
        })
    }

    /// Finds each device's last successful task among the newest runs of the history (their
    /// tasks are read whole: seconds for big runs, so serve does it in the background after
    /// its start). A newer time already known is kept.
    pub fn scan(&self, history: &dyn History) -> Result<(), StoreError> {
        for r in history.runs(None, SCAN_RUNS)? {
            if r.succeeded == 0 {
                continue;
            }
            let Ok(detail) = history.run(r.id) else {
                continue;
            };
            let found: Vec<(String, DateTime<Utc>)> = detail
                .tasks
                .iter()
                .filter(|t| succeeded(t.status))
                .filter_map(|t| t.finished.map(|at| (t.task.device.clone(), at)))
                .collect();
            self.with(|f| {
                for (device, at) in found {
                    let e = f.last_backup.entry(device).or_insert(at);
                    *e = (*e).max(at);
                }
            });
        }
        Ok(())
    }

    fn with<T>(&self, g: impl FnOnce(&mut Figures) -> T) -> T {
        match self.figures.lock() {
            Ok(mut f) => g(&mut f),
            Err(p) => g(&mut p.into_inner()),
        }
    }

    /// A run reached `status`.
    pub fn run_ended(&self, plan: &str, status: RunStatus) {
        self.with(|f| {
            *f.runs
                .entry((plan.to_string(), status.as_str()))
                .or_default() += 1
        });
    }

    /// A task of `device` ended with `status` after `elapsed` (when it ran in this process).
    pub fn task_ended(
        &self,
        device: &str,
        status: TaskStatus,
        elapsed: Option<Duration>,
        now: DateTime<Utc>,
    ) {
        self.with(|f| {
            if let Some(d) = elapsed {
                let secs = d.as_secs_f64();
                let i = BUCKETS
                    .iter()
                    .position(|b| secs <= *b)
                    .unwrap_or(BUCKETS.len());
                f.durations[i] += 1;
                f.duration_sum += secs;
                f.duration_count += 1;
            }
            if succeeded(status) {
                let e = f.last_backup.entry(device.to_string()).or_insert(now);
                *e = (*e).max(now);
            }
        });
    }

    /// Each device's last successful backup or export known to serve.
    pub fn last_backups(&self) -> BTreeMap<String, DateTime<Utc>> {
        self.with(|f| f.last_backup.clone())
    }

    /// The exposition text.
    pub fn render(&self, running: usize) -> String {
        self.with(|f| {
            let mut s = String::new();
            let _ = writeln!(s, "# HELP dpplan_runs_total Runs in the state file, by plan and status (final statuses count as runs end).");
            let _ = writeln!(s, "# TYPE dpplan_runs_total counter");
            for ((plan, status), n) in &f.runs {
                let _ = writeln!(
                    s,
                    "dpplan_runs_total{{plan=\"{}\",status=\"{status}\"}} {n}",
                    label(plan)
                );
            }
            let _ = writeln!(s, "# HELP dpplan_runs_running Runs this process drives now.");
            let _ = writeln!(s, "# TYPE dpplan_runs_running gauge");
            let _ = writeln!(s, "dpplan_runs_running {running}");
            let _ = writeln!(s, "# HELP dpplan_task_duration_seconds How long tasks took, from their start to their final status.");
            let _ = writeln!(s, "# TYPE dpplan_task_duration_seconds histogram");
            let mut cumulative = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cumulative += f.durations[i];
                let _ = writeln!(
                    s,
                    "dpplan_task_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                s,
                "dpplan_task_duration_seconds_bucket{{le=\"+Inf\"}} {}",
                f.duration_count
            );
            let _ = writeln!(s, "dpplan_task_duration_seconds_sum {}", f.duration_sum);
            let _ = writeln!(s, "dpplan_task_duration_seconds_count {}", f.duration_count);
            let _ = writeln!(s, "# HELP dpplan_device_last_success_timestamp_seconds When a task of the device last SUCCEEDED (or ended WARNING), as a Unix time.");
            let _ = writeln!(s, "# TYPE dpplan_device_last_success_timestamp_seconds gauge");
            for (device, at) in &f.last_backup {
                let _ = writeln!(
                    s,
                    "dpplan_device_last_success_timestamp_seconds{{device=\"{}\"}} {}",
                    label(device),
                    at.timestamp()
                );
            }
            s
        })
    }
}

fn succeeded(s: TaskStatus) -> bool {
    matches!(s, TaskStatus::Succeeded | TaskStatus::Warning)
}

/// A label value, escaped as the exposition format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_prometheus_text() {
        let m = Metrics::default();
        m.run_ended("night\"ly", RunStatus::Failed);
        m.run_ended("night\"ly", RunStatus::Failed);
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        m.task_ended(
            "dp1",
            TaskStatus::Succeeded,
            Some(Duration::from_secs(20)),
            at,
        );
        m.task_ended(
            "dp2",
            TaskStatus::Failed,
            Some(Duration::from_secs(9000)),
            at,
        );
        let text = m.render(1);
        assert!(text.contains("dpplan_runs_total{plan=\"night\\\"ly\",status=\"FAILED\"} 2"));
        assert!(text.contains("dpplan_task_duration_seconds_bucket{le=\"15\"} 0"));
        assert!(text.contains("dpplan_task_duration_seconds_bucket{le=\"30\"} 1"));
        assert!(text.contains("dpplan_task_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("dpplan_task_duration_seconds_count 2"));
        assert!(text
            .contains("dpplan_device_last_success_timestamp_seconds{device=\"dp1\"} 1700000000"));
        assert!(!text.contains("device=\"dp2\""));
        assert!(text.contains("dpplan_runs_running 1"));
    }
}
