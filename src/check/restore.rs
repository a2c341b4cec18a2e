//! Rules for restores: the `backup` values (`latest`, `run(N)`, `path("...")`), a secure
//! restore's confirmation, and a restore source that can never resolve.

use super::body;
use super::context::Cx;
use super::model::{Action, ArgValue, BackupRef, Kind, Value};
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::{Expr, ExprKind};
use std::collections::{BTreeMap, HashMap};

const BACKUP: &str = "a backup: latest, run(N) or path(\"...\")";

/// The parameter a step's `from` argument names, with the step's action.
fn from_params(kind: &Kind) -> Vec<(Action, &str)> {
    kind.steps
        .iter()
        .filter_map(|s| match s.call.args.get("from") {
            Some(ArgValue::Param(p)) => Some((s.call.action, p.as_str())),
            _ => None,
        })
        .collect()
}

/// Whether a task of `kind` replaces a whole appliance's configuration: a `dp.secure_restore`
/// step that is not a validation only.
pub fn restores_devices(kind: &Kind) -> bool {
    kind.steps.iter().any(|s| {
        s.call.action == Action::SecureRestore
            && !matches!(
                s.call.args.get("validate"),
                Some(ArgValue::Literal(Value::Bool(true)))
            )
    })
}

impl Cx<'_> {
    /// A `backup` value.
    pub(super) fn backup_ref(&mut self, e: &Expr, what: &str) -> Option<BackupRef> {
        match &e.kind {
            ExprKind::Ident(s) if s == "latest" => Some(BackupRef::Latest),
            ExprKind::Call(c) if c.name == "run" || c.name == "path" => {
                let args: Vec<&Expr> = c.positional().collect();
                if args.len() != 1 || c.args.len() != 1 {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidArguments,
                            c.span,
                            format!("{}() takes one argument", c.name),
                        )
                        .label("wrong number of arguments")
                        .help(if c.name == "run" {
                            "write run(42): the run that wrote the backup"
                        } else {
                            "write path(\"QA1/domain/D/D-export-....zip\")"
                        }),
                    );
                    return None;
                }
                if c.name == "run" {
                    let n = body::integer(args[0], "run()", i64::MIN, i64::MAX, self.sink)?;
                    if n < 1 {
                        self.push(never_resolves(
                            args[0].span,
                            format!("run({n}) names no run: run ids start at 1"),
                            "write the id `dpplan runs` shows",
                        ));
                        return None;
                    }
                    return Some(BackupRef::Run(n as u64));
                }
                let p = body::string(args[0], "path()", self.sink)?;
                if p.trim().is_empty() {
                    self.push(never_resolves(
                        args[0].span,
                        "path(\"\") names no file".to_string(),
                        "give an export ZIP or a secure backup folder, relative to the store",
                    ));
                    return None;
                }
                Some(BackupRef::Path(p.to_string()))
            }
            _ => {
                self.push(body::wrong_type(e, BACKUP, what));
                None
            }
        }
    }

    /// The restore rules of an activity of `kind` with `params` (values' spans in `spans`).
    pub(super) fn restore_rules(
        &mut self,
        kind: &Kind,
        context: &str,
        header: Span,
        devices: &[String],
        params: &BTreeMap<String, Value>,
        spans: &HashMap<String, Span>,
    ) -> bool {
        let mut ok = true;
        for (action, param) in from_params(kind) {
            let Some(Value::Backup(b)) = params.get(param) else {
                continue;
            };
            let at = spans.get(param).copied().unwrap_or(header);
            match b {
                BackupRef::Path(p) => {
                    let zip = p.to_ascii_lowercase().ends_with(".zip");
                    if action == Action::Import && !zip {
                        self.push(never_resolves(
                            at,
                            format!(
                                "{context}: an import reads a domain export (a .zip), not {p:?}"
                            ),
                            "name the export's -persisted.zip file",
                        ));
                        ok = false;
                    } else if matches!(action, Action::Upload | Action::SecureRestore) && zip {
                        self.push(never_resolves(
                            at,
                            format!("{context}: a secure restore reads a secure backup's folder, not the ZIP {p:?}"),
                            "name the folder holding backupmanifest.xml",
                        ));
                        ok = false;
                    }
                }
                BackupRef::Latest | BackupRef::Run(_) if self.program.store.is_none() => {
                    self.push(never_resolves(
                        at,
                        format!("{context}: `{b}` is looked up in the store, and the program has no store"),
                        "add a `store \"/path\" { }` block, or use path(\"...\")",
                    ));
                    ok = false;
                }
                _ => {}
            }
        }
        if restores_devices(kind) {
            let confirm = match params.get("confirm") {
                Some(Value::Str(s)) => Some(s.as_str()),
                _ => None,
            };
            let single = match devices {
                [one] if !one.contains(['*', '?', '[']) => Some(one.as_str()),
                _ => None,
            };
            let at = spans.get("confirm").copied().unwrap_or(header);
            let problem = match (single, confirm) {
                (None, _) => Some(format!(
                    "{context} restores whole appliances from {}: a secure restore names exactly one device, without wildcards",
                    devices.join(", ")
                )),
                (Some(d), None) => Some(format!(
                    "{context} replaces the whole configuration of {d}, and is not confirmed"
                )),
                (Some(d), Some(c)) if c != d => Some(format!(
                    "{context}: confirm = {c:?} does not name the device restored, {d:?}"
                )),
                _ => None,
            };
            if let Some(message) = problem {
                self.push(
                    Diagnostic::new(Code::RestoreNotConfirmed, at, message)
                        .label("not confirmed")
                        .help(match single {
                            Some(d) => format!("add confirm = \"{d}\" to the activity"),
                            None => {
                                "select one device by its exact name, and confirm = \"THAT-NAME\""
                                    .to_string()
                            }
                        }),
                );
                ok = false;
            }
        }
        ok
    }
}

fn never_resolves(at: Span, message: String, help: &str) -> Diagnostic {
    Diagnostic::new(Code::BackupNeverResolves, at, message)
        .label("can never resolve")
        .help(help)
}
