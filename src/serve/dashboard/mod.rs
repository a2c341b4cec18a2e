//! The dashboard served at `/` (docs/dashboard.md): server-rendered pages (askama templates
//! compiled in), a stylesheet and a small script embedded in the binary, live statuses from
//! the API's events, and actions behind a sign-in. Reads the same views as the API (the
//! CLI's `--json` views); drives runs through the same daemon calls. Depends on the API for
//! those views, never the other way round.

mod actions;
mod common;
mod pages;

pub use common::Dashboard;
pub use pages::{PAGE, STALE_HOURS};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");

/// The dashboard's routes (merged beside the API's).
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/tasks/{n}", get(pages::task))
        .route("/runs/{id}/log", get(pages::log))
        .route("/runs/{id}/{action}", post(actions::act))
        .route("/plans/{name}/run", post(actions::run_now))
        .route("/signin", get(actions::sign_in_page).post(actions::sign_in))
        .route("/signout", post(actions::sign_out))
        .route(
            "/assets/app.css",
            get(|| asset(CSS, "text/css; charset=utf-8")),
        )
        .route(
            "/assets/app.js",
            get(|| asset(JS, "text/javascript; charset=utf-8")),
        )
        .layer(axum::middleware::from_fn_with_state(
            dashboard.clone(),
            gate,
        ))
        .with_state(dashboard)
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Where reads need a sign-in, a page without one goes to the sign-in page; and no page may
/// be framed by another site.
async fn gate(State(d): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/signin" || path.starts_with("/assets/");
    if d.reads_need_sign_in
        && !open
        && request.method() == axum::http::Method::GET
        && d.session(request.headers()).is_none()
    {
        let here = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let to: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        return Redirect::to(&format!("/signin?next={to}")).into_response();
    }
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}
