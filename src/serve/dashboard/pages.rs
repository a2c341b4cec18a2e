//! The dashboard's pages: overview, runs, a run, a task, the log. Each is the API's view of
//! the same thing (the CLI's `--json` views from `report`) rendered by a template.

use super::common::{error_page, filters, opt_time_html, page, time_html, Dashboard, Nav};
use crate::report::{self, ActivityView, FileView, RunPage, RunView, TaskPage, TaskView};
use crate::serve::api::{internal, number, plan_statuses};
use crate::serve::shared::ServeError;
use crate::store::{History, RunStatus};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

type Shared = State<Arc<Dashboard>>;

/// Runs on one page of the runs list.
pub const PAGE: usize = 40;

/// A device with no successful backup for this long is marked stale.
pub const STALE_HOURS: i64 = 48;

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// From `started` to `finished`, or to now while it goes on; a dash before it starts.
fn span(started: Option<&str>, finished: Option<&str>, now: DateTime<Utc>) -> String {
    match (started.and_then(parse), finished.and_then(parse)) {
        (Some(s), Some(f)) => report::duration(f - s),
        (Some(s), None) => format!("{} so far", report::duration(now - s)),
        _ => "-".into(),
    }
}

fn here(uri: &Uri) -> String {
    uri.path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// `?done=` after an action: what the notice says.
#[derive(Debug, Deserialize)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    Some(
        match done? {
            "started" => "The run has started.",
            "interrupt" => {
                "Interrupt requested: the run stops starting steps and ends INTERRUPTED."
            }
            "resume" => "The run is resuming.",
            "cancel" => "Cancel requested: tasks not started are CANCELLED.",
            "retry" => "The retry has started: a new run of the tasks that did not succeed.",
            "signed-in" => "Signed in.",
            _ => return None,
        }
        .into(),
    )
}

/// One plan on the overview.
pub struct PlanRow {
    name: String,
    schedule: String,
    window: String,
    has_window: bool,
    next_run: String,
    last: Option<RunView>,
    running: Option<u64>,
    problem: Option<String>,
}

/// One device on the overview.
pub struct DeviceRow {
    name: String,
    last: Option<String>,
    age: String,
    state: &'static str,
    state_class: &'static str,
}

/// `/`
#[derive(Template)]
#[template(path = "overview.html")]
pub struct Overview {
    nav: Nav,
    plans: Vec<PlanRow>,
    devices: Vec<DeviceRow>,
    stale_hours: i64,
}

pub async fn overview(State(d): Shared, headers: HeaderMap, uri: Uri) -> Response {
    let nav = d.nav(&headers, "overview", here(&uri));
    let plans = match plan_statuses(&d.daemon) {
        Ok(p) => p,
        Err(e) => return error_page(nav, e, "/".into()),
    };
    let now = d.daemon.clock.now();
    let last = d.daemon.metrics.last_backups();
    let mut names: Vec<String> = Vec::new();
    for e in d.daemon.catalog().plans.values() {
        for dev in &e.program.devices {
            if !names.contains(&dev.name) {
                names.push(dev.name.clone());
            }
        }
    }
    let devices = names
        .into_iter()
        .map(|name| {
            let at = last.get(&name).copied();
            let stale = at.is_none_or(|t| now - t > chrono::Duration::hours(STALE_HOURS));
            DeviceRow {
                last: at.map(report::json_time),
                age: at
                    .map(|t| report::duration(now - t))
                    .unwrap_or_else(|| "-".into()),
                state: match (at, stale) {
                    (None, _) => "NEVER",
                    (_, true) => "STALE",
                    _ => "FRESH",
                },
                state_class: if stale { "stale" } else { "fresh" },
                name,
            }
        })
        .collect();
    let plans = plans
        .into_iter()
        .map(|p| PlanRow {
            schedule: p.schedule.clone().unwrap_or_else(|| "-".into()),
            window: p
                .window
                .as_ref()
                .map(|w| {
                    format!(
                        "{} ({})",
                        w.description,
                        if w.open { "open" } else { "closed" }
                    )
                })
                .unwrap_or_else(|| "always open".into()),
            has_window: p.window.is_some(),
            next_run: p
                .next_run
                .as_deref()
                .map(time_html)
                .unwrap_or_else(|| "when asked".into()),
            last: p.last_run,
            running: p.running,
            problem: p.problem,
            name: p.name,
        })
        .collect();
    page(
        StatusCode::OK,
        &Overview {
            nav,
            plans,
            devices,
            stale_hours: STALE_HOURS,
        },
    )
}

/// `/runs?plan=&status=&page=`
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    plan: Option<String>,
    status: Option<String>,
    page: Option<usize>,
}

/// One row of the runs list.
pub struct RunRow {
    view: RunView,
    duration: String,
}

/// `/runs`
#[derive(Template)]
#[template(path = "runs.html")]
pub struct Runs {
    nav: Nav,
    runs: Vec<RunRow>,
    plan_names: Vec<String>,
    statuses: Vec<&'static str>,
    plan: String,
    status: String,
    page: usize,
    more: bool,
    /// `&plan=P` when filtered by plan.
    plan_query: String,
    /// `&plan=P&status=S` as filtered.
    filter_query: String,
}

pub async fn runs(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let nav = d.nav(&headers, "runs", here(&uri));
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error_page(nav, ServeError::BadRequest(e.body_text()), "/runs".into()),
    };
    let plan = q.plan.unwrap_or_default();
    let status = q.status.unwrap_or_default().to_ascii_uppercase();
    let page_no = q.page.unwrap_or(0).min(100_000);
    let want = (page_no + 1) * PAGE + 1;
    let plan_filter = (!plan.is_empty()).then_some(plan.as_str());
    let store = &d.daemon.store;
    let found = if status.is_empty() {
        store.runs(plan_filter, want)
    } else {
        match RunStatus::parse(&status) {
            Some(s) => store.runs_with_status(plan_filter, s, want),
            None => {
                return error_page(
                    nav,
                    ServeError::BadRequest(format!("no run status \"{status}\"")),
                    "/runs".into(),
                )
            }
        }
    };
    let found = match found {
        Ok(r) => r,
        Err(e) => return error_page(nav, internal(e), "/runs".into()),
    };
    let now = d.daemon.clock.now();
    let more = found.len() > (page_no + 1) * PAGE;
    let runs = found
        .iter()
        .skip(page_no * PAGE)
        .take(PAGE)
        .map(|s| {
            let view = RunView::new(s);
            RunRow {
                duration: span(Some(&view.started), view.finished.as_deref(), now),
                view,
            }
        })
        .collect();
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let plan_query = if plan.is_empty() {
        String::new()
    } else {
        format!("&plan={}", enc(&plan))
    };
    let filter_query = if status.is_empty() {
        plan_query.clone()
    } else {
        format!("{plan_query}&status={}", enc(&status))
    };
    page(
        StatusCode::OK,
        &Runs {
            nav,
            runs,
            plan_names: d.daemon.catalog().plans.keys().cloned().collect(),
            statuses: RunStatus::ALL.iter().map(|s| s.as_str()).collect(),
            plan,
            status,
            page: page_no,
            more,
            plan_query,
            filter_query,
        },
    )
}

/// A button of the run page.
pub struct Action {
    action: &'static str,
    label: &'static str,
    confirm: String,
    danger: bool,
}

/// One task of the run page.
pub struct TaskRow {
    view: TaskView,
    started: String,
    duration: String,
}

/// `/runs/{id}`
#[derive(Template)]
#[template(path = "run.html")]
pub struct Run {
    nav: Nav,
    run: RunView,
    finished: String,
    duration: String,
    actions: Vec<Action>,
    activities: Vec<ActivityView>,
    tasks: Vec<TaskRow>,
}

/// The actions that make sense for a run in `status`.
fn actions(id: u64, status: &str, failed: bool) -> Vec<Action> {
    let live = matches!(
        status,
        "RUNNING" | "WAITING_FOR_PRE_VALIDATION" | "SLEEPING"
    );
    let mut out = Vec::new();
    if live {
        out.push(Action {
            action: "interrupt",
            label: "Interrupt",
            confirm: format!("Interrupt run {id}? Running steps finish, held devices are released, and the run ends INTERRUPTED (resumable)."),
            danger: false,
        });
    }
    if status == "INTERRUPTED" {
        out.push(Action {
            action: "resume",
            label: "Resume",
            confirm: format!("Resume run {id} where it stopped?"),
            danger: false,
        });
    }
    if live || status == "INTERRUPTED" {
        out.push(Action {
            action: "cancel",
            label: "Cancel",
            confirm: format!(
                "Cancel run {id}? Tasks not started are CANCELLED; owed unquiesces still run."
            ),
            danger: true,
        });
    }
    if !live && status != "INTERRUPTED" && failed {
        out.push(Action {
            action: "retry",
            label: "Retry failed tasks",
            confirm: format!("Start a new run of run {id}'s tasks that did not succeed?"),
            danger: false,
        });
    }
    out
}

fn run_id(d: &Dashboard, id: &str) -> Result<crate::store::RunDetail, ServeError> {
    d.daemon.store.run(number(id, "the run")?).map_err(internal)
}

pub async fn run(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> Response {
    let mut nav = d.nav(&headers, "run", here(&uri));
    nav.notice = notice(done.done.as_deref());
    let detail = match run_id(&d, &id) {
        Ok(x) => x,
        Err(e) => return error_page(nav, e, "/runs".into()),
    };
    let now = d.daemon.clock.now();
    let RunPage {
        run, activities, ..
    } = RunPage::new(&detail);
    let tasks = detail
        .tasks
        .iter()
        .map(|t| {
            let view = TaskView::new(t);
            TaskRow {
                started: opt_time_html(view.started.as_deref()),
                duration: span(view.started.as_deref(), view.finished.as_deref(), now),
                view,
            }
        })
        .collect::<Vec<_>>();
    let failed = tasks.iter().any(|t| t.view.status != "SUCCEEDED");
    page(
        StatusCode::OK,
        &Run {
            nav,
            finished: opt_time_html(run.finished.as_deref()),
            duration: span(Some(&run.started), run.finished.as_deref(), now),
            actions: actions(run.id, &run.status, failed),
            run,
            activities,
            tasks,
        },
    )
}

/// A step on the task page.
pub struct StepRow {
    name: String,
    attempts: u32,
    outcome: String,
    started: String,
    duration: String,
    error: Option<String>,
}

/// A log line on the task and log pages.
pub struct LogRow {
    at: String,
    since: String,
    task: Option<u32>,
    step: String,
    message: String,
}

/// A file on the task page.
pub struct FileRow {
    path: String,
    size: String,
    sha256: String,
}

/// `/runs/{id}/tasks/{n}`
#[derive(Template)]
#[template(path = "task.html")]
pub struct Task {
    nav: Nav,
    page: TaskPage,
    run_id: u64,
    started: String,
    finished: String,
    duration: String,
    steps: Vec<StepRow>,
    files: Vec<FileRow>,
    lines: Vec<LogRow>,
}

fn log_rows(views: Vec<report::LogView>) -> Vec<LogRow> {
    views
        .into_iter()
        .map(|l| LogRow {
            since: format!(
                "+{}",
                report::duration(chrono::Duration::milliseconds(l.since_previous_ms))
            ),
            at: l.at,
            task: l.task,
            step: l.step.unwrap_or_default(),
            message: l.message,
        })
        .collect()
}

fn log_of(
    d: &Dashboard,
    detail: &crate::store::RunDetail,
    task: Option<u32>,
) -> Result<Vec<report::LogView>, ServeError> {
    let id = detail.summary.id;
    report::run_log(d.daemon.store.as_ref(), detail, task)
        .map(|(_, v)| v)
        .map_err(|e| match e {
            report::LogError::NoTask(n) => {
                ServeError::NotFound(format!("run {id} has no task {n}"))
            }
            report::LogError::Store(e) => internal(e),
        })
}

pub async fn task(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    Path((id, n)): Path<(String, String)>,
) -> Response {
    let nav = d.nav(&headers, "task", here(&uri));
    let detail = match run_id(&d, &id) {
        Ok(x) => x,
        Err(e) => return error_page(nav, e, "/runs".into()),
    };
    let run = detail.summary.id;
    let Some(page_) = number(&n, "the task")
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .and_then(|n| TaskPage::new(&detail, n))
    else {
        return error_page(
            nav,
            ServeError::NotFound(format!("run {run} has no task {n}")),
            format!("/runs/{run}"),
        );
    };
    let lines = match log_of(&d, &detail, Some(page_.task.id)) {
        Ok(l) => log_rows(l),
        Err(e) => return error_page(nav, e, format!("/runs/{run}")),
    };
    let now = d.daemon.clock.now();
    let steps = page_
        .steps
        .iter()
        .map(|s| StepRow {
            name: s.name.clone(),
            attempts: s.attempts,
            outcome: if s.in_flight {
                "IN_FLIGHT".into()
            } else {
                s.outcome
                    .map(|o| {
                        serde_json::to_value(o)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    })
                    .unwrap_or_else(|| "PENDING".into())
            },
            started: opt_time_html(s.started.as_deref()),
            duration: span(s.started.as_deref(), s.finished.as_deref(), now),
            error: s.error.clone(),
        })
        .collect();
    let files = page_
        .files
        .iter()
        .map(|f: &FileView| FileRow {
            path: f.path.clone(),
            size: report::size(f.size),
            sha256: f.sha256.clone(),
        })
        .collect();
    page(
        StatusCode::OK,
        &Task {
            nav,
            run_id: run,
            started: opt_time_html(page_.task.started.as_deref()),
            finished: opt_time_html(page_.task.finished.as_deref()),
            duration: span(
                page_.task.started.as_deref(),
                page_.task.finished.as_deref(),
                now,
            ),
            steps,
            files,
            lines,
            page: page_,
        },
    )
}

/// `?task=&q=`
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    task: Option<String>,
    q: Option<String>,
}

/// `/runs/{id}/log`
#[derive(Template)]
#[template(path = "log.html")]
pub struct Log {
    nav: Nav,
    run_id: u64,
    /// Each task: id, what it is, whether the filter has it.
    tasks: Vec<(u32, String, bool)>,
    q: String,
    total: usize,
    lines: Vec<LogRow>,
}

pub async fn log(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let nav = d.nav(&headers, "log", here(&uri));
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error_page(nav, ServeError::BadRequest(e.body_text()), "/runs".into()),
    };
    let detail = match run_id(&d, &id) {
        Ok(x) => x,
        Err(e) => return error_page(nav, e, "/runs".into()),
    };
    let task = match q.task.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => match number(t, "the task").map(u32::try_from) {
            Ok(Ok(n)) => Some(n),
            _ => {
                return error_page(
                    nav,
                    ServeError::BadRequest(format!("the task must be a number, not \"{t}\"")),
                    format!("/runs/{}/log", detail.summary.id),
                )
            }
        },
    };
    let views = match log_of(&d, &detail, task) {
        Ok(v) => v,
        Err(e) => return error_page(nav, e, format!("/runs/{}", detail.summary.id)),
    };
    let total = views.len();
    let text = q.q.unwrap_or_default();
    let needle = text.to_lowercase();
    let lines = log_rows(
        views
            .into_iter()
            .filter(|l| needle.is_empty() || l.message.to_lowercase().contains(&needle))
            .collect(),
    );
    page(
        StatusCode::OK,
        &Log {
            nav,
            run_id: detail.summary.id,
            tasks: detail
                .tasks
                .iter()
                .map(|t| {
                    (
                        t.task.id,
                        format!("{} / {}", t.task.device, t.task.domain),
                        task == Some(t.task.id),
                    )
                })
                .collect(),
            q: text,
            total,
            lines,
        },
    )
}
