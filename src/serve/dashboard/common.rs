//! What the dashboard's pages and actions share: its state, the heading every page carries
//! (who is signed in), the templates' filters, and the error page. A leaf: imports neither
//! pages.rs nor actions.rs.

use crate::serve::daemon::Daemon;
use crate::serve::session::{Session, Sessions};
use crate::serve::shared::ServeError;
use askama::Template;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// The dashboard's state.
pub struct Dashboard {
    /// The daemon whose runs it shows and steers.
    pub daemon: Arc<Daemon>,
    /// The API token: signing in takes it. `None`: every action is refused, as in the API.
    pub token: Option<String>,
    /// Whether reading needs a sign-in too (listening beyond loopback, as the API).
    pub reads_need_sign_in: bool,
    /// Signed-in browsers.
    pub sessions: Arc<Sessions>,
    /// Whether the listener speaks TLS (the cookie is then `Secure`).
    pub tls: bool,
}

/// What the heading of every page needs.
#[derive(Debug, Clone)]
pub struct Nav {
    /// Which page: `overview`, `runs` or another.
    pub page: &'static str,
    /// This page's path and query (where sign-in returns).
    pub here: String,
    /// Whether this browser is signed in.
    pub signed_in: bool,
    /// Whether serve has a token (else no one can sign in).
    pub token_set: bool,
    /// The session's form token; empty when not signed in.
    pub csrf: String,
    /// What the last action did, if the page was reached from one.
    pub notice: Option<String>,
    /// The crate's version (the assets' addresses change with it).
    pub version: &'static str,
}

impl Dashboard {
    /// The session of the request, if it is signed in.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.sessions.of(headers)
    }

    /// The heading for a page at `here`.
    pub fn nav(&self, headers: &HeaderMap, page: &'static str, here: String) -> Nav {
        let session = self.session(headers);
        Nav {
            page,
            here,
            signed_in: session.is_some(),
            token_set: self.token.is_some(),
            csrf: session.map(|s| s.csrf).unwrap_or_default(),
            notice: None,
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// The templates' own filters.
pub mod filters {
    use std::fmt::Display;

    /// The CSS class of a status: `ROLLED_BACK` -> `rolled-back`.
    pub fn status_class<T: Display>(s: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(s.to_string().to_ascii_lowercase().replace('_', "-"))
    }

    /// [`time`] to the millisecond (the log).
    pub fn time_ms<T: Display>(s: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::time_html(&s.to_string()).replacen("<time ", "<time class=\"ms\" ", 1))
    }

    /// An RFC 3339 time as a `<time>` element (the page's script shows it in the browser's
    /// zone, with the UTC on hover).
    pub fn time<T: Display>(s: T, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::time_html(&s.to_string()))
    }
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `<time datetime="ISO">YYYY-MM-DD HH:MM:SS UTC</time>` for an RFC 3339 time; the text
/// itself when it is not one.
pub fn time_html(iso: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(iso) {
        // The page's script adds the UTC as a title when it shows the browser's zone.
        Ok(t) => format!(
            "<time datetime=\"{}\">{} UTC</time>",
            escape(iso),
            t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S")
        ),
        Err(_) => escape(iso),
    }
}

/// [`time_html`] of an optional time; a dash when there is none.
pub fn opt_time_html(iso: Option<&str>) -> String {
    iso.map(time_html).unwrap_or_else(|| "-".into())
}

/// A template rendered as a page with `status`.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, no_store(), Html(body)).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page cannot be rendered: {e}"),
        )
            .into_response(),
    }
}

/// Pages show live state: browsers keep no copy.
fn no_store() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-store")]
}

/// The error page.
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    /// The heading.
    pub nav: Nav,
    /// Its title.
    pub title: String,
    /// What went wrong.
    pub message: String,
    /// Whether to offer the sign-in.
    pub sign_in: bool,
    /// Where "Back" leads.
    pub back: String,
}

/// A serve error as the error page, with the status code the API would answer.
pub fn error_page(nav: Nav, e: ServeError, back: String) -> Response {
    let (status, title) = match &e {
        ServeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
        ServeError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Not signed in"),
        ServeError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ServeError::Conflict(_) => (StatusCode::CONFLICT, "Not now"),
        ServeError::Internal(_) | ServeError::Start(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Failed")
        }
    };
    let sign_in = status == StatusCode::UNAUTHORIZED && nav.token_set;
    page(
        status,
        &Message {
            nav,
            title: title.into(),
            message: e.to_string(),
            sign_in,
            back,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_become_time_elements_and_text_is_escaped() {
        assert_eq!(
            time_html("2026-11-30T22:00:00.123+00:00"),
            "<time datetime=\"2026-11-30T22:00:00.123+00:00\">2026-11-30 22:00:00 UTC</time>"
        );
        assert_eq!(time_html("<b>"), "&lt;b&gt;");
        assert_eq!(opt_time_html(None), "-");
    }
}
