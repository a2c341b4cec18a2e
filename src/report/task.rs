//! The page of one task (`dpplan show RUN --task N`): firmware, steps with attempts, files.

use super::format::{duration, opt_time, plain, size, Look};
use super::table::{self, Column, Table, Tone};
use crate::store::{RunDetail, StepOutcome, StepState, TaskState};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Firmware facts of a task's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirmwareView {
    /// Firmware version (`IDG.10.6.0.0`).
    pub version: Option<String>,
    /// Build.
    pub build: Option<String>,
    /// Machine type (the device type, `8436`).
    pub machine_type: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
}

/// One step of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// Attempts started.
    pub attempts: u32,
    /// How the last attempt ended (`SUCCEEDED`, `FAILED`, `SKIPPED`, `UNDONE`), if it has.
    pub outcome: Option<StepOutcome>,
    /// Started and not ended when the process stopped.
    pub in_flight: bool,
    /// First attempt's start.
    pub started: Option<String>,
    /// Last attempt's end.
    pub finished: Option<String>,
    /// The last error.
    pub error: Option<String>,
}

/// A file downloaded for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileView {
    /// Relative to the store root.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The page of `dpplan show RUN --task N --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskPage {
    /// The run.
    pub run: u64,
    /// The task, as on its activity's page.
    pub task: TaskView,
    /// The device's facts; `null` when none were recorded.
    pub firmware: Option<FirmwareView>,
    /// Its steps, in the order they first ran.
    pub steps: Vec<StepView>,
    /// Files written into the store.
    pub files: Vec<FileView>,
    /// Restores: what each import step did or would do, per object and file (the latest
    /// report of each step).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ImportView>,
}

/// What one import step did or would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportView {
    /// The step (`dry_run`, `import`).
    pub step: String,
    /// Its totals.
    pub counts: crate::appliance::import::ImportCounts,
    /// The appliance's report.
    #[serde(flatten)]
    pub report: crate::appliance::import::ImportReport,
}

impl ImportView {
    /// The per-object and per-file table, changed and refused ones first.
    pub fn render(&self, look: Look) -> String {
        use crate::appliance::import::ImportObjectStatus as _;
        let c = self.counts;
        let mut out = format!(
            "{}{}: {} new, {} modified, {} unchanged, {} refused\n",
            self.step,
            if self.report.dry_run {
                " (dry run)"
            } else {
                ""
            },
            c.new,
            c.modified,
            c.unchanged,
            c.errors
        );
        let mut t = Table::new(vec![
            Column::left("WHAT"),
            Column::left("CLASS"),
            Column::left("NAME"),
            Column::whole("STATUS"),
            Column::left("RESULT"),
        ]);
        let rank = |status: &str, failed: bool| match (failed, status) {
            (true, _) => 0,
            (_, "new") | (_, "modified") => 1,
            _ => 2,
        };
        let mut rows: Vec<(u8, Vec<String>)> = Vec::new();
        for o in &self.report.objects {
            let result = match (&o.result, &o.message) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(r), None) => r.clone(),
                _ => String::new(),
            };
            rows.push((
                rank(&o.status, o.failed()),
                vec![
                    "object".into(),
                    o.class.clone(),
                    o.name.clone(),
                    o.status.clone(),
                    result,
                ],
            ));
        }
        for f in &self.report.files {
            let result = match (&f.result, &f.reason) {
                (Some(r), Some(m)) => format!("{r}: {m}"),
                (Some(r), None) => r.clone(),
                _ => String::new(),
            };
            rows.push((
                rank(&f.status, f.failed()),
                vec![
                    "file".into(),
                    String::new(),
                    f.name.clone(),
                    f.status.clone(),
                    result,
                ],
            ));
        }
        rows.sort_by_key(|(r, _)| *r);
        for (_, row) in rows {
            t.row(row.iter().map(|c| table::printable(c, false)).collect());
        }
        out.push_str(&t.render(look.fit));
        out
    }
}

fn outcome_str(o: Option<StepOutcome>, in_flight: bool) -> &'static str {
    if in_flight {
        return "IN_FLIGHT";
    }
    match o {
        None => "-",
        Some(StepOutcome::Succeeded) => "SUCCEEDED",
        Some(StepOutcome::Failed) => "FAILED",
        Some(StepOutcome::Skipped) => "SKIPPED",
        Some(StepOutcome::Undone) => "UNDONE",
    }
}

impl TaskPage {
    /// The page of task `id`, if the run has it.
    pub fn new(detail: &RunDetail, id: u32) -> Option<TaskPage> {
        let t = detail.tasks.iter().find(|t| t.task.id == id)?;
        // Empty facts read as absent, as before they were typed.
        let some = |v: String| (!v.is_empty()).then_some(v);
        Some(TaskPage {
            run: detail.summary.id,
            task: TaskView::new(t),
            firmware: crate::store::TaskFacts::from_pairs(&t.facts).map(|f| FirmwareView {
                version: some(f.version),
                build: some(f.build),
                machine_type: some(f.machine_type),
                model: some(f.model),
                serial: some(f.serial),
            }),
            steps: t
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.name.clone(),
                    attempts: s.attempts,
                    outcome: s.outcome,
                    in_flight: s.in_flight,
                    started: opt_time(s.started),
                    finished: opt_time(s.finished),
                    error: s.error.clone(),
                })
                .collect(),
            files: t
                .files
                .iter()
                .map(|f| FileView {
                    path: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            imports: {
                // The latest report of each step, in the order the steps first reported.
                let mut views: Vec<ImportView> = Vec::new();
                for (step, report) in &t.imports {
                    let view = ImportView {
                        step: step.clone(),
                        counts: report.counts(),
                        report: report.clone(),
                    };
                    match views.iter_mut().find(|v| &v.step == step) {
                        Some(v) => *v = view,
                        None => views.push(view),
                    }
                }
                views
            },
        })
    }

    /// The `dpplan show RUN --task N` page.
    pub fn render(&self, detail: &RunDetail, look: Look) -> String {
        let v = &self.task;
        let state = detail.tasks.iter().find(|t| t.task.id == v.id);
        let mut out = format!(
            "Run {}  task {}  {}  {} / {}  {}\n",
            self.run,
            v.id,
            v.action,
            table::printable(&v.device, false),
            table::printable(&v.domain, false),
            v.status
        );
        if let Some(s) = state.and_then(|s| s.started) {
            out.push_str(&format!("started   {}\n", look.zone.time(s)));
            if let Some(f) = state.and_then(|s| s.finished) {
                out.push_str(&format!(
                    "finished  {}  ({})\n",
                    look.zone.time(f),
                    duration(f - s)
                ));
            }
        }
        if let Some(e) = &v.error {
            out.push_str(&format!("error     {}\n", table::printable(e, false)));
        }
        let dash = |o: &Option<String>| {
            o.as_deref()
                .map(|t| table::printable(t, false))
                .unwrap_or_else(|| "-".into())
        };
        match &self.firmware {
            Some(fw) => {
                out.push_str(&format!(
                    "firmware  {}  build {}\n",
                    dash(&fw.version),
                    dash(&fw.build)
                ));
                out.push_str(&format!(
                    "device    type {}  model {}  serial {}\n",
                    dash(&fw.machine_type),
                    dash(&fw.model),
                    dash(&fw.serial)
                ));
            }
            None => out.push_str("firmware  (not recorded)\n"),
        }
        if let Some(s) = state.filter(|s| !s.steps.is_empty()) {
            out.push('\n');
            let mut t = Table::new(vec![
                Column::left("STEP"),
                Column::right("TRIES"),
                Column::whole("OUTCOME"),
                Column::right("TOOK"),
                Column::left("ERROR"),
            ]);
            for step in &s.steps {
                let took = match (step.started, step.finished) {
                    (Some(a), Some(b)) if b >= a => duration(b - a),
                    _ => "-".into(),
                };
                let outcome = outcome_str(step.outcome, step.in_flight);
                t.toned_row(vec![
                    plain(&step.name),
                    plain(step.attempts),
                    (outcome.to_string(), Tone::of_status(outcome)),
                    plain(took),
                    plain(step.error.as_deref().unwrap_or("")),
                ]);
            }
            out.push_str(&t.render(look.fit));
        }
        let total: u64 = self.files.iter().map(|f| f.size).sum();
        out.push_str(&format!(
            "\nfiles     {} ({})\n",
            self.files.len(),
            size(total)
        ));
        for f in &self.files {
            out.push_str(&format!("  {}\n", f.path));
            out.push_str(&format!(
                "      size    {} bytes ({})\n",
                f.size,
                size(f.size)
            ));
            out.push_str(&format!("      sha256  {}\n", f.sha256));
        }
        for i in &self.imports {
            out.push('\n');
            out.push_str(&i.render(look));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The activity log

/// Failed attempts over a task's steps (retries included): the page's download errors.
fn failed_attempts(steps: &[StepState]) -> u32 {
    steps
        .iter()
        .map(|s| {
            let last_ok = s.in_flight
                || matches!(
                    s.outcome,
                    Some(StepOutcome::Succeeded) | Some(StepOutcome::Undone)
                );
            s.attempts.saturating_sub(u32::from(last_ok))
        })
        .sum()
}

/// One task, as `dpplan show RUN --activity N --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    /// 1-based, in creation order.
    pub id: u32,
    /// Its activity.
    pub activity: u32,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The device.
    pub device: String,
    /// The domain; `all-domains` for secure backups and all-domains exports.
    pub domain: String,
    /// Its status (`SUCCEEDED`).
    pub status: String,
    /// When it reached that status, if it has started.
    pub status_time: Option<String>,
    /// When it started running.
    pub started: Option<String>,
    /// When it reached a final status.
    pub finished: Option<String>,
    /// Files downloaded into the store.
    pub files: u32,
    /// Failed step attempts, retries included.
    pub download_errors: u32,
    /// Its error or the reason it was skipped.
    pub error: Option<String>,
}

impl TaskView {
    /// The view of a task's state.
    pub fn new(t: &TaskState) -> TaskView {
        TaskView {
            id: t.task.id,
            activity: t.task.activity,
            action: t.task.action.clone(),
            device: t.task.device.clone(),
            domain: t.task.domain.clone(),
            status: t.status.as_str().to_string(),
            status_time: opt_time(task_time(t)),
            started: opt_time(t.started),
            finished: opt_time(t.finished),
            files: u32::try_from(t.files.len()).unwrap_or(u32::MAX),
            download_errors: failed_attempts(&t.steps),
            error: t.error.clone(),
        }
    }
}

/// When a task reached its current status: its end, else its start.
pub(super) fn task_time(t: &TaskState) -> Option<DateTime<Utc>> {
    t.finished.or(t.started)
}
