//! Rules for notifications: top-level `notify "NAME" { ... }` blocks (where a run's outcome is
//! sent), and the `notify = [...]` of plans, which names them.

use super::body::{self, header_span, Body};
use super::context::Cx;
use super::model::{Email, Notifier, Syslog};
use crate::diag::{Code, Diagnostic, Span};
use crate::store::RunStatus;
use crate::syntax::{Attr, Block, Expr, ExprKind, Label};

const NOTIFY: &[&str] = &["on", "webhook", "syslog"];
const EMAIL: &[&str] = &["smtp", "from", "to", "user", "password", "tls"];

/// The run outcomes a notifier can fire on, as `on = [...]` names them: the final run
/// statuses, MISSED, and INTERRUPTED (not final: `resume` may continue the run, but someone
/// has to).
pub const OUTCOMES: [(&str, RunStatus); 12] = [
    ("completed", RunStatus::Completed),
    ("warning", RunStatus::Warning),
    ("failed", RunStatus::Failed),
    ("stopped", RunStatus::Stopped),
    ("cancelled", RunStatus::Cancelled),
    ("backups_disabled", RunStatus::BackupsDisabled),
    ("outside_window", RunStatus::OutsideWindow),
    ("store_not_mounted", RunStatus::StoreNotMounted),
    ("store_out_of_space", RunStatus::StoreOutOfSpace),
    ("invalid_config", RunStatus::InvalidConfig),
    ("missed", RunStatus::Missed),
    ("interrupted", RunStatus::Interrupted),
];

/// What a notifier without `on` fires on: every outcome but COMPLETED.
pub fn default_outcomes() -> Vec<RunStatus> {
    OUTCOMES
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| *s != RunStatus::Completed)
        .collect()
}

impl Cx<'_> {
    /// One `notify "NAME" { ... }` block. Its name is recorded even when the block has errors,
    /// so that plans naming it are not told it does not exist.
    pub(super) fn notifier(&mut self, b: &Block) {
        let (name, name_span) = match b.labels.as_slice() {
            [Label::Str(s)] if !s.value.is_empty() => (s.value.clone(), s.span),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "a notifier needs a name: notify \"ops\" { ... }",
                    )
                    .label("no name")
                    .help("name the notifier in a string after `notify`; plans list it in notify = [\"ops\"]"),
                );
                return;
            }
        };
        if let Some((_, first)) = self.notifier_names.iter().find(|(n, _)| *n == name) {
            let first = *first;
            self.duplicate("notifier", &name, name_span, first);
            return;
        }
        self.notifier_names.push((name.clone(), name_span));
        let context = format!("notifier `{name}`");
        let mut body = Body::split(&b.body, &context, self.sink);
        let mut ok = true;
        let on = match body.take("on") {
            Some(a) => {
                let on = self.outcomes(a);
                ok &= on.is_some();
                on.unwrap_or_default()
            }
            None => default_outcomes(),
        };
        let webhook_attr = body.take("webhook");
        let syslog_attr = body.take("syslog");
        let mut webhook = None;
        if let Some(a) = webhook_attr {
            match body::string(&a.value, "webhook", self.sink) {
                Some(url) => match webhook_problem(url) {
                    None => webhook = Some(url.to_string()),
                    Some(why) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidChannel,
                                a.value.span,
                                format!("webhook `{url}` is not an http or https URL"),
                            )
                            .label(why)
                            .help("write the URL the run's outcome is POSTed to, e.g. webhook = \"https://hooks.example.com/dpplan\""),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        let mut syslog = None;
        if let Some(a) = syslog_attr {
            match body::string(&a.value, "syslog", self.sink) {
                Some(s) => match parse_syslog(s) {
                    Ok(v) => syslog = Some(v),
                    Err(why) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidChannel,
                                a.value.span,
                                format!("syslog `{s}` is not udp://HOST:PORT or tcp://HOST:PORT"),
                            )
                            .label(why)
                            .help("write e.g. syslog = \"udp://127.0.0.1:514\" or \"tcp://logs.example.com:601\""),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        body.finish(&context, NOTIFY, self.sink);
        let mut email = None;
        let mut email_at: Option<Span> = None;
        for blk in &body.blocks {
            if blk.kind.name != "email" {
                self.push(body::unknown_block(blk, &context, &["email"]));
                ok = false;
                continue;
            }
            if let Some(first) = email_at {
                self.duplicate("block", "email", blk.kind.span, first);
                ok = false;
                continue;
            }
            email_at = Some(blk.kind.span);
            email = self.email(blk);
            ok &= email.is_some();
        }
        if webhook_attr.is_none() && syslog_attr.is_none() && email_at.is_none() {
            self.push(
                Diagnostic::new(
                    Code::MissingRequired,
                    name_span,
                    format!("notifier `{name}` has no channel"),
                )
                .label("sends nowhere")
                .help("add webhook = \"https://...\", syslog = \"udp://HOST:514\" or an email { ... } block"),
            );
            ok = false;
        }
        if ok {
            self.program.notifiers.push(Notifier {
                name,
                on,
                webhook,
                syslog,
                email,
                at: self.location(name_span),
            });
        }
    }

    /// `on = [failed, missed]`: known outcome names, at least one.
    fn outcomes(&mut self, a: &Attr) -> Option<Vec<RunStatus>> {
        let ExprKind::List(items) = &a.value.kind else {
            self.push(body::wrong_type(
                &a.value,
                "a list of run outcomes such as [failed, missed]",
                "on",
            ));
            return None;
        };
        if items.is_empty() {
            self.push(
                Diagnostic::new(
                    Code::UnknownOutcome,
                    a.value.span,
                    "`on` lists no outcome: the notifier would never fire",
                )
                .label("no outcomes")
                .help("list outcomes such as [failed, missed], or leave out `on` for every outcome but completed"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for i in items {
            let ExprKind::Ident(word) = &i.kind else {
                self.push(body::wrong_type(
                    i,
                    "a run outcome such as failed",
                    "each of on",
                ));
                ok = false;
                continue;
            };
            match OUTCOMES.iter().find(|(n, _)| n == word) {
                Some((_, status)) => {
                    if !out.contains(status) {
                        out.push(*status);
                    }
                }
                None => {
                    self.push(unknown_outcome(word, i.span));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn email(&mut self, b: &Block) -> Option<Email> {
        self.no_labels(b);
        let mut body = Body::split(&b.body, "email", self.sink);
        self.no_blocks(&body, "email");
        let header = header_span(b);
        let mut ok = true;
        let mut server = None;
        match body.take("smtp") {
            Some(a) => match body::string(&a.value, "smtp", self.sink) {
                Some(s) => match host_port(s) {
                    Ok(hp) => server = Some(hp),
                    Err(why) => {
                        self.push(
                            Diagnostic::new(
                                Code::InvalidChannel,
                                a.value.span,
                                format!("smtp `{s}` is not HOST:PORT"),
                            )
                            .label(why)
                            .help("write the mail server and its port, e.g. smtp = \"smtp.example.com:587\""),
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            },
            None => {
                self.push(missing_in_email(
                    header,
                    "smtp",
                    "smtp = \"smtp.example.com:587\"",
                ));
                ok = false;
            }
        }
        let from = match body.take("from") {
            Some(a) => {
                let v = self.address(&a.value, "from");
                ok &= v.is_some();
                v
            }
            None => {
                self.push(missing_in_email(
                    header,
                    "from",
                    "from = \"dpplan@example.com\"",
                ));
                ok = false;
                None
            }
        };
        let mut to = Vec::new();
        match body.take("to") {
            Some(a) => match &a.value.kind {
                ExprKind::List(items) if items.is_empty() => {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidChannel,
                            a.value.span,
                            "the email goes to nobody: `to` is empty",
                        )
                        .label("no recipients")
                        .help("list at least one address, e.g. to = [\"ops@example.com\"]"),
                    );
                    ok = false;
                }
                ExprKind::List(items) => {
                    for i in items {
                        match self.address(i, "each of to") {
                            Some(v) => to.push(v),
                            None => ok = false,
                        }
                    }
                }
                _ => {
                    self.push(body::wrong_type(
                        &a.value,
                        "a list of addresses such as [\"ops@example.com\"]",
                        "to",
                    ));
                    ok = false;
                }
            },
            None => {
                self.push(missing_in_email(header, "to", "to = [\"ops@example.com\"]"));
                ok = false;
            }
        }
        let user = match body.take("user") {
            Some(a) => {
                let v = body::string(&a.value, "user", self.sink).map(str::to_string);
                ok &= v.is_some();
                v
            }
            None => None,
        };
        let password = match body.take("password") {
            Some(a) => {
                let v = self.secret(a);
                match &v {
                    Some(secret) => self.unresolved_secret(secret, a.value.span),
                    None => ok = false,
                }
                v
            }
            None => None,
        };
        let mut starttls = true;
        if let Some(a) = body.take("tls") {
            match body::boolean(&a.value, "tls", self.sink) {
                Some(v) => starttls = v,
                None => ok = false,
            }
        }
        body.finish("email", EMAIL, self.sink);
        let (host, port) = server?;
        let from = from?;
        ok.then_some(Email {
            host,
            port,
            from,
            to,
            user,
            password,
            starttls,
        })
    }

    /// An email address: `local@domain`.
    fn address(&mut self, e: &Expr, what: &str) -> Option<String> {
        let s = body::string(e, what, self.sink)?;
        if is_address(s) {
            return Some(s.to_string());
        }
        self.push(
            Diagnostic::new(
                Code::InvalidChannel,
                e.span,
                format!("`{s}` is not an email address"),
            )
            .label("not an address")
            .help("write a bare address such as ops@example.com (no display name, no spaces)"),
        );
        None
    }

    /// Resolves a plan's `notify = ["ops", ...]` against the notifiers declared anywhere in
    /// the program; unknown names are errors. Names are recorded as used (and so is the one a
    /// mistyped name most likely meant, so that it is not also reported unused).
    pub(super) fn plan_notifiers(&mut self, a: &Attr) -> Option<Vec<String>> {
        let names = match &a.value.kind {
            ExprKind::Str(s) => vec![(s.clone(), a.value.span)],
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match &i.kind {
                        ExprKind::Str(s) => out.push((s.clone(), i.span)),
                        _ => {
                            self.push(body::wrong_type(
                                i,
                                "a notifier's name in a string",
                                "each of notify",
                            ));
                            return None;
                        }
                    }
                }
                out
            }
            _ => {
                self.push(body::wrong_type(
                    &a.value,
                    "a list of notifier names such as [\"ops\"]",
                    "notify",
                ));
                return None;
            }
        };
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for (name, span) in names {
            if self.notifier_names.iter().any(|(n, _)| *n == name) {
                self.notifiers_used.insert(name.clone());
                if !out.contains(&name) {
                    out.push(name);
                }
                continue;
            }
            ok = false;
            let known: Vec<String> = self.notifier_names.iter().map(|(n, _)| n.clone()).collect();
            let help = match body::suggest(&name, known.iter().map(String::as_str)) {
                Some(s) => {
                    let s = s.to_string();
                    self.notifiers_used.insert(s.clone());
                    format!("did you mean `{s}`?")
                }
                None if known.is_empty() => {
                    "no notifier is declared: add notify \"NAME\" { webhook = \"https://...\" } at the top level of a plan file".to_string()
                }
                None => format!("notifiers: {}", known.join(", ")),
            };
            self.push(
                Diagnostic::new(
                    Code::UnknownNotifier,
                    span,
                    format!("no notifier is named `{name}`"),
                )
                .label("unknown notifier")
                .help(help),
            );
        }
        ok.then_some(out)
    }

    /// DP0049 for each notifier that no plan names.
    pub(super) fn unused_notifiers(&mut self) {
        let unused: Vec<(String, Span)> = self
            .notifier_names
            .iter()
            .filter(|(n, _)| !self.notifiers_used.contains(n))
            .cloned()
            .collect();
        for (name, span) in unused {
            self.push(
                Diagnostic::new(
                    Code::UnusedNotifier,
                    span,
                    format!("no plan uses notifier `{name}`"),
                )
                .label("never notified")
                .help(format!(
                    "add notify = [\"{name}\"] to the plans it is for, or remove it"
                )),
            );
        }
    }
}

fn unknown_outcome(word: &str, span: Span) -> Diagnostic {
    let names = OUTCOMES.iter().map(|(n, _)| *n);
    let lower = word.to_ascii_lowercase();
    let help = if OUTCOMES.iter().any(|(n, _)| *n == lower) {
        format!("outcomes are written in lowercase: `{lower}`")
    } else {
        match body::suggest(&lower, names.clone()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("outcomes: {}", names.collect::<Vec<_>>().join(", ")),
        }
    };
    Diagnostic::new(
        Code::UnknownOutcome,
        span,
        format!("`{word}` is not a run outcome"),
    )
    .label("unknown outcome")
    .help(help)
}

fn missing_in_email(header: Span, key: &str, example: &str) -> Diagnostic {
    Diagnostic::new(
        Code::MissingRequired,
        header,
        format!("the email block has no `{key}`"),
    )
    .label(format!("`{key}` missing"))
    .help(format!("add {example}"))
}

/// Why `url` is not an http(s) URL with a host, or `None` when it is one.
fn webhook_problem(url: &str) -> Option<&'static str> {
    match url::Url::parse(url) {
        Err(_) => Some("not a URL"),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some("not http or https"),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("no host"),
        Ok(_) => None,
    }
}

/// `udp://HOST:PORT` or `tcp://HOST:PORT`.
fn parse_syslog(s: &str) -> Result<Syslog, &'static str> {
    let (udp, rest) = if let Some(r) = s.strip_prefix("udp://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("tcp://") {
        (false, r)
    } else {
        return Err("starts with neither udp:// nor tcp://");
    };
    let (host, port) = host_port(rest)?;
    Ok(Syslog { udp, host, port })
}

/// `HOST:PORT`, the host a name or an address (IPv6 in brackets: `[::1]:514`), the port 1 to
/// 65535.
fn host_port(s: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("`[` without `]`")?;
        let port = after.strip_prefix(':').ok_or("no :PORT")?;
        (host, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or("no :PORT")?;
        if host.contains(':') {
            return Err("an IPv6 address goes in brackets: [::1]:514");
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("no host");
    }
    let bad = |c: char| c.is_whitespace() || "/@?#\"<>,;".contains(c);
    if host.chars().any(bad) {
        return Err("not a host name or address");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok((host.to_string(), p)),
        _ => Err("the port is not a number from 1 to 65535"),
    }
}

/// `local@domain`, with no spaces, display name or list separators.
fn is_address(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || "<>,;\"()[]@".contains(c);
    !local.is_empty()
        && !domain.is_empty()
        && !local.chars().any(bad)
        && !domain.chars().any(bad)
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_destinations() {
        assert_eq!(
            parse_syslog("udp://127.0.0.1:514"),
            Ok(Syslog {
                udp: true,
                host: "127.0.0.1".into(),
                port: 514
            })
        );
        assert_eq!(
            parse_syslog("tcp://[::1]:601"),
            Ok(Syslog {
                udp: false,
                host: "::1".into(),
                port: 601
            })
        );
        assert!(parse_syslog("udp://logs.example.com").is_err());
        assert!(parse_syslog("http://logs.example.com:514").is_err());
        assert!(parse_syslog("udp://:514").is_err());
        assert!(parse_syslog("udp://::1:514").is_err());
        assert!(parse_syslog("udp://logs:0").is_err());
        assert!(parse_syslog("udp://logs:65536").is_err());
        assert!(parse_syslog("udp://logs:+514").is_err());
        assert!(parse_syslog("udp://logs/x:514").is_err());
    }

    #[test]
    fn webhooks_and_addresses() {
        assert_eq!(
            webhook_problem("https://hooks.example.com/dpplan?x=1"),
            None
        );
        assert_eq!(webhook_problem("http://127.0.0.1:8080/"), None);
        assert_eq!(
            webhook_problem("ftp://hooks.example.com/"),
            Some("not http or https")
        );
        assert_eq!(webhook_problem("hooks.example.com/x"), Some("not a URL"));
        assert!(webhook_problem("https://").is_some());
        assert!(is_address("ops@example.com"));
        assert!(is_address("dpplan+alerts@localhost"));
        assert!(!is_address("ops"));
        assert!(!is_address("ops@"));
        assert!(!is_address("@example.com"));
        assert!(!is_address("Ops <ops@example.com>"));
        assert!(!is_address("a@b@c"));
        assert!(!is_address("ops@example.com, dev@example.com"));
    }

    #[test]
    fn every_outcome_but_completed_by_default() {
        let d = default_outcomes();
        assert_eq!(d.len(), OUTCOMES.len() - 1);
        assert!(!d.contains(&RunStatus::Completed));
        assert!(d.contains(&RunStatus::Missed) && d.contains(&RunStatus::Interrupted));
        // The names are the statuses' own, in lowercase.
        for (name, status) in OUTCOMES {
            assert_eq!(name.to_ascii_uppercase(), status.as_str());
        }
    }
}
