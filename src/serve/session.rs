//! The dashboard's sign-in sessions: a random id in an HttpOnly, SameSite=Strict cookie, each
//! with its own token that the dashboard's forms carry (the cross-site request defence).
//! Kept in memory: a restart signs everyone out. Below the API and the dashboard; imports
//! neither.

use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "dpplan_session";

/// How long a session lasts after its sign-in.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept at once; signing in beyond it forgets the oldest.
const MOST: usize = 1024;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token its forms must carry.
    pub csrf: String,
    started: Instant,
}

/// The sessions of a serve.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes, hex (the system's secure random source, through rustls' ring provider).
fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .ok()?;
    Some(hex::encode(bytes))
}

/// Whether `a` equals `b`, in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        match self.map.lock() {
            Ok(mut m) => f(&mut m),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// A new session: its id (the cookie's value) and the session. `None` when the system
    /// has no random bytes to give.
    pub fn open(&self) -> Option<(String, Session)> {
        let id = random()?;
        let session = Session {
            csrf: random()?,
            started: Instant::now(),
        };
        self.with(|m| {
            m.retain(|_, s| s.started.elapsed() < LIFETIME);
            if m.len() >= MOST {
                if let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, s)| s.started)
                    .map(|(k, _)| k.clone())
                {
                    m.remove(&oldest);
                }
            }
            m.insert(id.clone(), session.clone());
        });
        Some((id, session))
    }

    /// The live session the request's cookie names, if any.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        self.with(|m| {
            let s = m.get(&id)?;
            (s.started.elapsed() < LIFETIME).then(|| s.clone())
        })
    }

    /// Ends the request's session, if it has one.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.with(|m| m.remove(&id));
        }
    }
}

/// The session cookie's value in the request, if any.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_gone_after_close() {
        let s = Sessions::default();
        let (id, session) = s.open().unwrap();
        assert_eq!(id.len(), 64);
        let h = with_cookie(&format!("other=1; {COOKIE}={id}"));
        assert_eq!(s.of(&h).unwrap().csrf, session.csrf);
        assert!(s.of(&with_cookie(&format!("{COOKIE}=nope"))).is_none());
        assert!(s.of(&HeaderMap::new()).is_none());
        s.close(&h);
        assert!(s.of(&h).is_none());
    }

    #[test]
    fn same_compares_whole_strings() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
