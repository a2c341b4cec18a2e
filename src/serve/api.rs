//! The HTTP API (docs/serve.md): JSON in the shapes of the CLI's `--json`, server-sent events,
//! bearer-token auth, and `/metrics`.

use super::daemon::{Daemon, StartRequest};
use super::session::Sessions;
use super::shared::{next_due, Event, ServeError};
use crate::report::{self, ActivityPage, RunPage, RunView, TaskPage};
use crate::store::{History, RunId, RunStatus, StoreError};
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the handlers share.
pub struct Api {
    /// The daemon.
    pub daemon: Arc<Daemon>,
    /// The bearer token, if one is set.
    pub token: Option<String>,
    /// Whether every request needs the token (listening beyond loopback).
    pub token_for_reads: bool,
    /// Ends the event streams at shutdown.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// The dashboard's sign-ins: a signed-in browser may read (the dashboard's live updates)
    /// where reads need the token; POSTs here always need the bearer token.
    pub sessions: Arc<Sessions>,
}

type Shared = State<Arc<Api>>;

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServeError::NotFound(_) => StatusCode::NOT_FOUND,
            ServeError::Conflict(_) => StatusCode::CONFLICT,
            ServeError::Internal(_) | ServeError::Start(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut r = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// `{"error": "..."}`
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: String,
}

/// `{"run": N}`
#[derive(Debug, Serialize, Deserialize)]
pub struct Accepted {
    /// The run started, continued or signalled.
    pub run: RunId,
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/plans", get(plans))
        .route("/api/plans/{name}/runs", post(start))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/activities/{n}", get(activity))
        .route("/api/runs/{id}/tasks/{n}", get(task))
        .route("/api/runs/{id}/log", get(log))
        .route("/api/runs/{id}/{action}", post(act))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .fallback(|| async { ServeError::NotFound("no such route".into()) })
        .layer(axum::middleware::from_fn_with_state(api.clone(), auth))
        .with_state(api)
}

/// Every POST needs the token; beyond loopback, every request does (a read may show the
/// dashboard's session cookie instead).
async fn auth(State(api): Shared, request: Request, next: Next) -> Response {
    let needed = request.method() == Method::POST
        || (api.token_for_reads && api.sessions.of(request.headers()).is_none());
    if needed {
        let Some(token) = api.token.as_deref() else {
            return ServeError::Unauthorized(
                "actions need a token: start dpplan serve with --token-file or DPPLAN_TOKEN".into(),
            )
            .into_response();
        };
        if !bearer_matches(request.headers(), token) {
            return ServeError::Unauthorized(
                "missing or wrong token: send `Authorization: Bearer TOKEN`".into(),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Whether the request carries `Authorization: Bearer TOKEN` (compared in constant time).
fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    super::session::same(given.trim(), token)
}

/// A store error as serve's error (a missing run: 404).
pub fn internal(e: StoreError) -> ServeError {
    match e {
        StoreError::NoRun(id) => ServeError::NotFound(format!("no run {id}")),
        e => ServeError::Internal(e.to_string()),
    }
}

/// A path segment as a number, or a 400 naming `what`.
pub fn number(s: &str, what: &str) -> Result<u64, ServeError> {
    s.parse()
        .map_err(|_| ServeError::BadRequest(format!("{what} must be a number, not \"{s}\"")))
}

/// `GET /api/health`
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    plans: usize,
    running: usize,
}

async fn health(State(api): Shared) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        plans: api.daemon.catalog().plans.len(),
        running: api.daemon.running(),
    })
}

/// One plan of `GET /api/plans`.
#[derive(Debug, Serialize)]
pub struct PlanStatus {
    /// The plan's name.
    pub name: String,
    /// The file that defines it.
    pub file: String,
    /// `schedule = "..."`, if any.
    pub schedule: Option<String>,
    /// Its window, if any.
    pub window: Option<report::plan::WindowView>,
    /// When serve starts it next (RFC 3339, UTC); `null` when only asked.
    pub next_run: Option<String>,
    /// Its newest run.
    pub last_run: Option<RunView>,
    /// The run of it going on now, if any.
    pub running: Option<RunId>,
    /// Why its file's last reload was refused (the plan keeps its previous version).
    pub problem: Option<String>,
}

async fn plans(State(api): Shared) -> Result<Json<Vec<PlanStatus>>, ServeError> {
    plan_statuses(&api.daemon).map(Json)
}

/// Every plan's schedule, window, next and last run (`GET /api/plans`, the dashboard's
/// overview).
pub fn plan_statuses(d: &Daemon) -> Result<Vec<PlanStatus>, ServeError> {
    let catalog = d.catalog();
    let now = d.clock.now();
    let mut out = Vec::new();
    for (name, e) in &catalog.plans {
        let Some(plan) = e.plan() else { continue };
        let last = d.store.runs(Some(name), 1).map_err(internal)?;
        out.push(PlanStatus {
            name: name.clone(),
            file: e.file.display().to_string(),
            schedule: plan.schedule.as_ref().map(|s| s.cron.clone()),
            window: plan
                .window
                .as_ref()
                .map(|w| report::plan::WindowView::new(w, now)),
            next_run: next_due(plan, now).map(report::json_time),
            last_run: last.first().map(RunView::new),
            running: d.running_run_of(name).filter(|r| *r != 0),
            problem: catalog.problems.get(&e.file).cloned(),
        });
    }
    Ok(out)
}

/// `?plan=&status=&limit=`
#[derive(Debug, Deserialize)]
struct RunsQuery {
    plan: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

async fn runs(
    State(api): Shared,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunView>>, ServeError> {
    let Query(q) = query.map_err(|e| ServeError::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(40);
    let plan = q.plan.as_deref().filter(|p| !p.is_empty());
    let views: Vec<RunView> = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => api
            .daemon
            .store
            .runs(plan, limit)
            .map_err(internal)?
            .iter()
            .map(RunView::new)
            .collect(),
        Some(s) => {
            let wanted = RunStatus::parse(s)
                .ok_or_else(|| ServeError::BadRequest(format!("no run status \"{s}\"")))?;
            api.daemon
                .store
                .runs_with_status(plan, wanted, limit)
                .map_err(internal)?
                .iter()
                .map(RunView::new)
                .collect()
        }
    };
    Ok(Json(views))
}

async fn run(State(api): Shared, Path(id): Path<String>) -> Result<Json<RunPage>, ServeError> {
    let detail = api
        .daemon
        .store
        .run(number(&id, "the run")?)
        .map_err(internal)?;
    Ok(Json(RunPage::new(&detail)))
}

async fn activity(
    State(api): Shared,
    Path((id, n)): Path<(String, String)>,
) -> Result<Json<ActivityPage>, ServeError> {
    let id = number(&id, "the run")?;
    let n = number(&n, "the activity")?;
    let detail = api.daemon.store.run(id).map_err(internal)?;
    u32::try_from(n)
        .ok()
        .and_then(|n| ActivityPage::new(&detail, n))
        .map(Json)
        .ok_or_else(|| ServeError::NotFound(format!("run {id} has no activity {n}")))
}

async fn task(
    State(api): Shared,
    Path((id, n)): Path<(String, String)>,
) -> Result<Json<TaskPage>, ServeError> {
    let id = number(&id, "the run")?;
    let n = number(&n, "the task")?;
    let detail = api.daemon.store.run(id).map_err(internal)?;
    u32::try_from(n)
        .ok()
        .and_then(|n| TaskPage::new(&detail, n))
        .map(Json)
        .ok_or_else(|| ServeError::NotFound(format!("run {id} has no task {n}")))
}

/// `?task=`
#[derive(Debug, Deserialize)]
struct LogQuery {
    task: Option<u32>,
}

async fn log(
    State(api): Shared,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<report::LogView>>, ServeError> {
    let Query(q) = query.map_err(|e| ServeError::BadRequest(e.body_text()))?;
    let id = number(&id, "the run")?;
    let store = &api.daemon.store;
    let detail = store.run(id).map_err(internal)?;
    Ok(Json(
        report::run_log(store.as_ref(), &detail, q.task)
            .map(|(_, v)| v)
            .map_err(|e| match e {
                report::LogError::NoTask(n) => {
                    ServeError::NotFound(format!("run {id} has no task {n}"))
                }
                report::LogError::Store(e) => internal(e),
            })?,
    ))
}

/// Who asked, for the run's log (`started by ...`, `resumed by ...`).
fn who(peer: Option<SocketAddr>, what: &str) -> String {
    match peer {
        Some(p) => format!("dpplan serve ({what}: an API request from {})", p.ip()),
        None => format!("dpplan serve ({what}: an API request)"),
    }
}

/// The client's address, when the listener recorded it.
struct Peer(Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Peer, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

async fn start(
    State(api): Shared,
    Peer(from): Peer,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ServeError> {
    let request: StartRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ServeError::BadRequest(format!("the request body: {e}")))?
    };
    let run = api
        .daemon
        .start(&name, request, who(from, "run now"))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { run })))
}

async fn act(
    State(api): Shared,
    Peer(from): Peer,
    Path((id, action)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Accepted>), ServeError> {
    let id = number(&id, "the run")?;
    let d = &api.daemon;
    let run = match action.as_str() {
        "interrupt" => d.interrupt(id)?,
        "resume" => d.resume(id, who(from, "resume")).await?,
        "cancel" => d.cancel(id, who(from, "cancel")).await?,
        "retry" => {
            d.retry(id, who(from, &format!("retry of run {id}")))
                .await?
        }
        other => {
            return Err(ServeError::NotFound(format!(
                "no action \"{other}\" (interrupt, resume, cancel, retry)"
            )))
        }
    };
    Ok((StatusCode::ACCEPTED, Json(Accepted { run })))
}

async fn events(State(api): Shared) -> impl IntoResponse {
    use axum::response::sse::Event as Sse_;
    let rx = api.daemon.events.subscribe();
    let stop = api.stop.clone();
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let e = tokio::select! {
                e = rx.recv() => e,
                _ = stop.changed() => return None,
            };
            let event = match e {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    Event::Lagged { missed: n }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            let name = match &event {
                Event::Run { .. } => "run",
                Event::Task { .. } => "task",
                Event::Plans => "plans",
                Event::Lagged { .. } => "lagged",
            };
            let Ok(data) = serde_json::to_string(&event) else {
                continue;
            };
            let sse = Sse_::default().event(name).data(data);
            return Some((Ok::<_, std::convert::Infallible>(sse), (rx, stop)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn metrics(State(api): Shared) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.daemon.metrics.render(api.daemon.running()),
    )
}
