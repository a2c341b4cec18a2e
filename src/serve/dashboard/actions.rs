//! Sign-in and the dashboard's actions (run now, interrupt, resume, cancel, retry). An action
//! needs a signed-in session, the session's form token, and a same-origin request; the
//! session cookie is HttpOnly and SameSite=Strict.

use super::common::{error_page, page, Dashboard, Nav};
use crate::serve::api::number;
use crate::serve::daemon::StartRequest;
use crate::serve::session::{same, Session, COOKIE, LIFETIME};
use crate::serve::shared::ServeError;
use askama::Template;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;

type Shared = State<Arc<Dashboard>>;

/// `/signin`
#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignIn {
    nav: Nav,
    next: String,
    error: Option<String>,
}

/// `?next=`
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where a sign-in may return: a path of this server, nothing else.
fn local(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

pub async fn sign_in_page(State(d): Shared, headers: HeaderMap, Query(q): Query<Next>) -> Response {
    let next = local(q.next.as_deref());
    page(
        StatusCode::OK,
        &SignIn {
            nav: d.nav(&headers, "signin", next.clone()),
            next,
            error: None,
        },
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SignInForm {
    token: String,
    next: Option<String>,
}

/// Whether the request comes from another site: `Sec-Fetch-Site` other than same-origin (or
/// a typed address), or an `Origin` that is not this server.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return true;
        }
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

fn refused(d: &Dashboard, headers: &HeaderMap, why: &str, back: String) -> Response {
    let nav = d.nav(headers, "action", back.clone());
    error_page(nav, ServeError::Unauthorized(why.into()), back)
}

pub async fn sign_in(State(d): Shared, headers: HeaderMap, Form(f): Form<SignInForm>) -> Response {
    let next = local(f.next.as_deref());
    if cross_site(&headers) {
        return refused(&d, &headers, "a sign-in from another site is refused", next);
    }
    let Some(token) = d.token.as_deref() else {
        return refused(
            &d,
            &headers,
            "dpplan serve has no token: start it with --token-file or DPPLAN_TOKEN",
            next,
        );
    };
    if !same(f.token.trim(), token) {
        return page(
            StatusCode::UNAUTHORIZED,
            &SignIn {
                nav: d.nav(&headers, "signin", next.clone()),
                next,
                error: Some("That is not this serve's token.".into()),
            },
        );
    }
    let Some((id, _)) = d.sessions.open() else {
        let nav = d.nav(&headers, "signin", next.clone());
        return error_page(
            nav,
            ServeError::Internal("no random bytes for a session".into()),
            next,
        );
    };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if d.tls { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// A form that acts: it carries the session's token.
#[derive(Debug, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    ignore_window: Option<String>,
    #[serde(default)]
    devices: Option<String>,
}

/// The signed-in session behind an acting request, or why it is refused.
fn allowed(d: &Dashboard, headers: &HeaderMap, csrf: &str) -> Result<Session, &'static str> {
    if d.token.is_none() {
        return Err("actions need a token: start dpplan serve with --token-file or DPPLAN_TOKEN");
    }
    if cross_site(headers) {
        return Err("an action from another site is refused");
    }
    let session = d
        .session(headers)
        .ok_or("sign in with the API token to act")?;
    if !same(csrf, &session.csrf) {
        return Err("the form is stale or from elsewhere: reload the page and try again");
    }
    Ok(session)
}

pub async fn sign_out(State(d): Shared, headers: HeaderMap, Form(f): Form<ActForm>) -> Response {
    if let Err(why) = allowed(&d, &headers, &f.csrf) {
        return refused(&d, &headers, why, "/".into());
    }
    d.sessions.close(&headers);
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// Who asked, for the run's log.
fn who(peer: Option<&ConnectInfo<SocketAddr>>, what: &str) -> String {
    match peer {
        Some(p) => format!("dpplan serve ({what}: the dashboard, from {})", p.0.ip()),
        None => format!("dpplan serve ({what}: the dashboard)"),
    }
}

fn done(
    d: &Dashboard,
    headers: &HeaderMap,
    back: String,
    r: Result<u64, ServeError>,
    what: &str,
) -> Response {
    match r {
        Ok(run) => Redirect::to(&format!("/runs/{run}?done={what}")).into_response(),
        Err(e) => error_page(d.nav(headers, "action", back.clone()), e, back),
    }
}

pub async fn run_now(
    State(d): Shared,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Path(name): Path<String>,
    Form(f): Form<ActForm>,
) -> Response {
    let back = "/".to_string();
    if let Err(why) = allowed(&d, &headers, &f.csrf) {
        return refused(&d, &headers, why, back);
    }
    let request = StartRequest {
        ignore_window: f.ignore_window.is_some_and(|v| v == "true" || v == "on"),
        devices: f.devices.filter(|p| !p.trim().is_empty()),
    };
    let r = d
        .daemon
        .start(&name, request, who(peer.as_deref(), "run now"))
        .await;
    done(&d, &headers, back, r, "started")
}

pub async fn act(
    State(d): Shared,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    let back = format!("/runs/{id}");
    if let Err(why) = allowed(&d, &headers, &f.csrf) {
        return refused(&d, &headers, why, back);
    }
    let id = match number(&id, "the run") {
        Ok(id) => id,
        Err(e) => return error_page(d.nav(&headers, "action", back.clone()), e, back),
    };
    let peer = peer.as_deref();
    let daemon = &d.daemon;
    let r = match action.as_str() {
        "interrupt" => daemon.interrupt(id),
        "resume" => daemon.resume(id, who(peer, "resume")).await,
        "cancel" => daemon.cancel(id, who(peer, "cancel")).await,
        "retry" => {
            daemon
                .retry(id, who(peer, &format!("retry of run {id}")))
                .await
        }
        other => Err(ServeError::NotFound(format!(
            "no action \"{other}\" (interrupt, resume, cancel, retry)"
        ))),
    };
    done(&d, &headers, back, r, &action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn requests_from_other_sites_are_told_apart() {
        assert!(!cross_site(&headers(&[("host", "127.0.0.1:8642")])));
        assert!(!cross_site(&headers(&[
            ("host", "127.0.0.1:8642"),
            ("origin", "http://127.0.0.1:8642"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8642"),
            ("origin", "https://evil.example"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8642"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(cross_site(&headers(&[
            ("host", "127.0.0.1:8642"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn sign_in_returns_only_to_this_server() {
        assert_eq!(local(Some("/runs/4")), "/runs/4");
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/\\evil")), "/");
        assert_eq!(local(None), "/");
    }
}
