//! Rules for what runs: recovery policies and scripts.

use super::body;
use super::context::{Cx, ScriptState};
use super::model::{Policy, Script, ScriptWhen};
use crate::diag::{Code, Diagnostic};
use crate::syntax::{Call, Expr, ExprKind};
use std::path::Path;

const POLICIES: &[&str] = &["continue", "stop", "rollback", "halt", "retry"];

impl Cx<'_> {
    /// A recovery policy: `continue`, `stop`, `rollback`, `halt`, or
    /// `retry(n, backoff = d, max_backoff = d) [then P]`.
    pub(super) fn policy(&mut self, e: &Expr) -> Option<Policy> {
        match &e.kind {
            ExprKind::Then(parts) => {
                let (last, init) = parts.split_last()?;
                let mut tail = self.policy(last)?;
                for p in init.iter().rev() {
                    match &p.kind {
                        ExprKind::Call(c) if c.name == "retry" => {
                            let (times, backoff_ms, max_backoff_ms) = self.retry(c)?;
                            tail = Policy::Retry {
                                times,
                                backoff_ms,
                                max_backoff_ms,
                                then: Box::new(tail),
                            };
                        }
                        _ => {
                            self.push(
                                Diagnostic::new(
                                    Code::InvalidPolicy,
                                    p.span,
                                    "only retry(...) can be followed by `then`",
                                )
                                .label("not a retry")
                                .help("write retry(2) then rollback, or a single policy"),
                            );
                            return None;
                        }
                    }
                }
                Some(tail)
            }
            ExprKind::Ident(name) => match name.as_str() {
                "continue" => Some(Policy::Continue),
                "stop" => Some(Policy::Stop),
                "rollback" => Some(Policy::Rollback),
                "halt" => Some(Policy::Halt),
                "retry" => {
                    self.push(
                        Diagnostic::new(Code::InvalidPolicy, e.span, "retry needs a count")
                            .label("no count")
                            .help("write retry(2), or retry(2, backoff = 30s) then rollback"),
                    );
                    None
                }
                other => {
                    self.push(unknown_policy(e, other));
                    None
                }
            },
            ExprKind::Call(c) if c.name == "retry" => {
                let (times, backoff_ms, max_backoff_ms) = self.retry(c)?;
                Some(Policy::Retry {
                    times,
                    backoff_ms,
                    max_backoff_ms,
                    then: Box::new(Policy::Stop),
                })
            }
            ExprKind::Call(c) => {
                self.push(unknown_policy(e, &c.name));
                None
            }
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::InvalidPolicy,
                        e.span,
                        format!("a recovery policy cannot be {}", e.kind.describe()),
                    )
                    .label("not a policy")
                    .help("policies: continue, stop, rollback, halt, retry(n) then P"),
                );
                None
            }
        }
    }

    /// `retry(n, backoff = d, max_backoff = d)` -> (n, backoff, max_backoff).
    fn retry(&mut self, c: &Call) -> Option<(u32, u64, Option<u64>)> {
        self.known_args(c, &["backoff", "max_backoff"])?;
        let pos: Vec<&Expr> = c.positional().collect();
        let [n] = pos.as_slice() else {
            self.push(
                Diagnostic::new(
                    Code::InvalidArguments,
                    c.span,
                    format!("retry takes one count, found {}", pos.len()),
                )
                .label("expected retry(n)")
                .help("write retry(2) or retry(2, backoff = 30s)"),
            );
            return None;
        };
        let times = match n.kind {
            ExprKind::Int(v) if v < 0 => {
                self.push(
                    Diagnostic::new(
                        Code::InvalidRetry,
                        n.span,
                        format!("retry count must not be negative, found {v}"),
                    )
                    .label("negative count")
                    .help("the count is how many more times the step runs: 0 or more"),
                );
                return None;
            }
            ExprKind::Int(v) => u32::try_from(v).unwrap_or(u32::MAX),
            _ => {
                self.push(body::wrong_type(n, "an integer", "the retry count"));
                return None;
            }
        };
        let backoff = match c.named("backoff") {
            Some(e) => body::duration(e, "backoff", self.sink)?,
            None => 5_000,
        };
        let max = match c.named("max_backoff") {
            Some(e) => Some(body::duration(e, "max_backoff", self.sink)?),
            None => None,
        };
        if let (Some(m), Some(e)) = (max, c.named("max_backoff")) {
            if m < backoff {
                self.push(
                    Diagnostic::new(
                        Code::InvalidRetry,
                        e.span,
                        "max_backoff is shorter than backoff",
                    )
                    .label("shorter than the first backoff")
                    .help("max_backoff caps the growing backoff: make it at least backoff"),
                );
                return None;
            }
        }
        Some((times, backoff, max))
    }

    /// Reports named arguments outside `known` and duplicates; `None` if any.
    pub(super) fn known_args(&mut self, c: &Call, known: &[&str]) -> Option<()> {
        let mut ok = true;
        let mut seen: Vec<&str> = Vec::new();
        for a in &c.args {
            let Some(n) = &a.name else { continue };
            if seen.contains(&n.name.as_str()) {
                self.push(
                    Diagnostic::new(
                        Code::InvalidArguments,
                        n.span,
                        format!("argument `{}` is given twice", n.name),
                    )
                    .label("given again here")
                    .help("remove one of them"),
                );
                ok = false;
                continue;
            }
            seen.push(&n.name);
            if !known.contains(&n.name.as_str()) {
                let help = match body::suggest(&n.name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if known.is_empty() => format!("{}() takes no named arguments", c.name),
                    None => format!("{}() takes: {}", c.name, known.join(", ")),
                };
                self.push(
                    Diagnostic::new(
                        Code::InvalidArguments,
                        n.span,
                        format!("{}() has no argument `{}`", c.name, n.name),
                    )
                    .label("unknown argument")
                    .help(help),
                );
                ok = false;
            }
        }
        ok.then_some(())
    }

    /// DP0040 when script call `e` has a `when`: `context` names the place it has no meaning
    /// (a pre-plan script, or a script no `always` step runs).
    pub(super) fn when_not_allowed(&mut self, e: &Expr, context: &str, help: &str) {
        let ExprKind::Call(c) = &e.kind else { return };
        if let Some(w) = c.named("when") {
            self.push(
                Diagnostic::new(
                    Code::WhenNotAllowed,
                    w.span,
                    format!("`when` has no meaning on {context}"),
                )
                .label("not a post script")
                .help(help.to_string()),
            );
        }
    }

    /// `script("path", timeout = d, when = failed, args = [...])`, checked on disk.
    pub(super) fn script(&mut self, e: &Expr, what: &str) -> Option<Script> {
        let ExprKind::Call(c) = &e.kind else {
            self.push(body::wrong_type(e, "a script", what));
            return None;
        };
        if c.name != "script" {
            self.push(body::wrong_type(e, "a script", what));
            return None;
        }
        self.known_args(c, &["timeout", "when", "args"])?;
        let pos: Vec<&Expr> = c.positional().collect();
        let path = match pos.as_slice() {
            [p] => match &p.kind {
                ExprKind::Str(s) if !s.is_empty() => s.clone(),
                _ => {
                    self.push(body::wrong_type(p, "a non-empty string", "the script path"));
                    return None;
                }
            },
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::InvalidArguments,
                        c.span,
                        format!("script() takes one path, found {}", pos.len()),
                    )
                    .label("expected script(\"path\")")
                    .help("write script(\"scripts/pre.sh\", timeout = 5m)"),
                );
                return None;
            }
        };
        let timeout_ms = match c.named("timeout") {
            Some(t) => Some(body::duration(t, "the script timeout", self.sink)?),
            None => None,
        };
        let when = match c.named("when") {
            None => ScriptWhen::Always,
            Some(w) => match &w.kind {
                ExprKind::Ident(s) if s == "always" => ScriptWhen::Always,
                ExprKind::Ident(s) if s == "failed" => ScriptWhen::Failed,
                ExprKind::Ident(s) if s == "succeeded" => ScriptWhen::Succeeded,
                _ => {
                    self.push(
                        Diagnostic::new(
                            Code::UnknownOption,
                            w.span,
                            format!("`{}` is not a script condition", self.sources.slice(w.span)),
                        )
                        .label("unknown condition")
                        .help("write when = always, when = failed or when = succeeded"),
                    );
                    return None;
                }
            },
        };
        let args = match c.named("args") {
            None => Vec::new(),
            Some(a) => match &a.kind {
                ExprKind::List(items) => {
                    let mut out = Vec::new();
                    for i in items {
                        out.push(body::string(i, "each script argument", self.sink)?.to_string());
                    }
                    out
                }
                _ => {
                    self.push(body::wrong_type(a, "a list of strings", "args"));
                    return None;
                }
            },
        };
        let full = self.base_dir(e.span.file).join(&path);
        let state = match self.scripts.get(&full) {
            Some(s) => *s,
            None => {
                let s = script_state(&full);
                self.scripts.insert(full.clone(), s);
                s
            }
        };
        let path_span = pos.first().map(|p| p.span).unwrap_or(c.span);
        match state {
            ScriptState::Ok => {}
            ScriptState::Missing => self.push(
                Diagnostic::new(
                    Code::ScriptNotFound,
                    path_span,
                    format!("script `{path}` does not exist"),
                )
                .label("no such file")
                .help(format!(
                    "script paths are relative to the plan file's directory (looked for {})",
                    super::context::shown(&full)
                )),
            ),
            ScriptState::NotExecutable => self.push(
                Diagnostic::new(
                    Code::ScriptNotExecutable,
                    path_span,
                    format!("script `{path}` is not executable"),
                )
                .label("not executable")
                .help(format!(
                    "scripts run directly, not through a shell: chmod +x {}",
                    super::context::shown(&full)
                )),
            ),
        }
        Some(Script {
            path: full,
            args,
            timeout_ms,
            when,
            dir: self.base_dir(e.span.file).to_path_buf(),
        })
    }
}

fn unknown_policy(e: &Expr, name: &str) -> Diagnostic {
    let help = match body::suggest(name, POLICIES.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => "policies: continue, stop, rollback, halt, retry(n) then P".to_string(),
    };
    Diagnostic::new(
        Code::InvalidPolicy,
        e.span,
        format!("unknown recovery policy `{name}`"),
    )
    .label("unknown policy")
    .help(help)
}

fn script_state(path: &Path) -> ScriptState {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {
            if is_executable(&m) {
                ScriptState::Ok
            } else {
                ScriptState::NotExecutable
            }
        }
        Ok(_) => ScriptState::NotExecutable,
        Err(_) => ScriptState::Missing,
    }
}

#[cfg(unix)]
fn is_executable(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}
