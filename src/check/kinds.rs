//! Rules for activity kinds: `kind NAME per device|domain { action, params, steps }`.

use super::body::{self, header_span, Body};
use super::context::Cx;
use super::model::{Action, ActionCall, ArgValue, Kind, Param, ParamType, Per, StepDef, Value};
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::{Block, Call, Expr, ExprKind, Label, Modifier, StepDecl, Stmt};
use std::collections::BTreeMap;

/// Names an activity uses for itself; a kind cannot declare them as parameters.
pub(super) const RESERVED: &[&str] = &["devices", "domains", "on_failure"];

/// What a positional or named action argument must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArgTy {
    /// `device` or `domain`.
    Target,
    Duration,
    String,
    Script,
    Bool,
    Backup,
}

/// Positional arguments: (name, type).
type Positional = &'static [(&'static str, ArgTy)];
/// Named arguments: (name, type, required).
type Named = &'static [(&'static str, ArgTy, bool)];

/// An action's signature: positional arguments, then named ones.
fn signature(a: Action) -> (Positional, Named) {
    match a {
        Action::Validate => (
            &[("target", ArgTy::Target)],
            &[
                ("quiesce", ArgTy::Duration, false),
                ("cert", ArgTy::String, false),
                ("from", ArgTy::Backup, false),
            ],
        ),
        Action::Quiesce | Action::Unquiesce => (
            &[("target", ArgTy::Target)],
            &[("timeout", ArgTy::Duration, true)],
        ),
        Action::SecureBackup => (
            &[("target", ArgTy::Target)],
            &[("cert", ArgTy::String, true)],
        ),
        Action::Export | Action::SaveConfig => (&[("target", ArgTy::Target)], &[]),
        Action::Run => (&[("script", ArgTy::Script)], &[]),
        Action::Discard => (&[], &[]),
        Action::Checkpoint | Action::RollbackCheckpoint | Action::RemoveCheckpoint => {
            (&[("target", ArgTy::Target)], &[])
        }
        Action::Import => (
            &[("target", ArgTy::Target)],
            &[
                ("from", ArgTy::Backup, true),
                ("dry_run", ArgTy::Bool, false),
                ("overwrite_files", ArgTy::Bool, false),
                ("overwrite_objects", ArgTy::Bool, false),
                ("rewrite_local_ip", ArgTy::Bool, false),
                ("deployment_policy", ArgTy::String, false),
            ],
        ),
        Action::Upload => (
            &[("target", ArgTy::Target)],
            &[("from", ArgTy::Backup, true)],
        ),
        Action::SecureRestore => (
            &[("target", ArgTy::Target)],
            &[
                ("from", ArgTy::Backup, true),
                ("cred", ArgTy::String, true),
                ("validate", ArgTy::Bool, false),
            ],
        ),
        Action::WaitReady => (
            &[("target", ArgTy::Target)],
            &[
                ("from", ArgTy::Backup, false),
                ("timeout", ArgTy::Duration, false),
            ],
        ),
        Action::RemoveUpload => (&[("target", ArgTy::Target)], &[]),
    }
}

impl Cx<'_> {
    pub(super) fn kind(&mut self, b: &Block) {
        self.poisoned.clear();
        let labels: Vec<&str> = b.labels.iter().map(Label::text).collect();
        let (name, per) = match (b.labels.first(), labels.as_slice()) {
            (Some(Label::Ident(n)), [_, "per", per]) => {
                let per = match *per {
                    "device" => Per::Device,
                    "domain" => Per::Domain,
                    other => {
                        self.push(
                            Diagnostic::new(
                                Code::UnknownOption,
                                b.labels[2].span(),
                                format!("a kind runs per device or per domain, not per `{other}`"),
                            )
                            .label("unknown")
                            .help("write `per device` or `per domain`"),
                        );
                        return;
                    }
                };
                (n, per)
            }
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "a kind needs a name and `per device` or `per domain`",
                    )
                    .label("incomplete kind header")
                    .help("write `kind my_backup per device { ... }`"),
                );
                return;
            }
        };
        if let Some(first) = self.kind_spans.get(&name.name).copied() {
            self.duplicate("kind", &name.name, name.span, first);
            return;
        }
        self.kind_spans.insert(name.name.clone(), name.span);
        let context = format!("kind `{}`", name.name);
        let mut params: Vec<Param> = Vec::new();
        let mut param_spans: Vec<Span> = Vec::new();
        for s in &b.body {
            let Stmt::Param(p) = s else { continue };
            if let Some(i) = params.iter().position(|q| q.name == p.name.name) {
                self.duplicate("parameter", &p.name.name, p.name.span, param_spans[i]);
                continue;
            }
            if RESERVED.contains(&p.name.name.as_str()) {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateName,
                        p.name.span,
                        format!("`{}` is a built-in activity attribute", p.name.name),
                    )
                    .label("reserved name")
                    .help("activities already take devices, domains and on_failure: pick another name"),
                );
                continue;
            }
            let Some(ty) = ParamType::parse(&p.ty.name) else {
                // Steps may still name it: one error for the type, none for each use.
                self.poisoned.insert(p.name.name.clone());
                let known = [
                    "string", "int", "bool", "duration", "size", "script", "patterns",
                ];
                let help = match body::suggest(&p.ty.name, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("types: {}", known.join(", ")),
                };
                self.push(
                    Diagnostic::new(
                        Code::UnknownType,
                        p.ty.span,
                        format!("unknown parameter type `{}`", p.ty.name),
                    )
                    .label("unknown type")
                    .help(help),
                );
                continue;
            };
            let default = match &p.default {
                None => None,
                Some(e) => match self.value_of(ty, e, &format!("the default of `{}`", p.name.name))
                {
                    Some(v) => Some(v),
                    None => continue,
                },
            };
            params.push(Param {
                name: p.name.name.clone(),
                ty,
                default,
            });
            param_spans.push(p.name.span);
        }
        let mut kind = Kind {
            name: name.name.clone(),
            per,
            action: name.name.to_ascii_uppercase(),
            params,
            steps: Vec::new(),
        };
        let mut body = Body::split_with(&b.body, &context, true, self.sink);
        self.no_blocks(&body, &context);
        if let Some(a) = body.take("action") {
            if let Some(s) = body::string(&a.value, "action", self.sink) {
                kind.action = s.to_string();
            }
        }
        body.finish(&context, &["action"], self.sink);
        let decls: Vec<&StepDecl> = b
            .body
            .iter()
            .filter_map(|s| match s {
                Stmt::Step(st) => Some(st),
                _ => None,
            })
            .collect();
        let mut step_spans: Vec<Span> = Vec::new();
        for d in &decls {
            if let Some(i) = kind.steps.iter().position(|s| s.name == d.name.name) {
                self.duplicate("step", &d.name.name, d.name.span, step_spans[i]);
                continue;
            }
            if let Some(step) = self.step(&kind, d, &decls) {
                kind.steps.push(step);
                step_spans.push(d.name.span);
            }
        }
        self.step_order(&kind, &decls);
        self.program.kinds.insert(kind.name.clone(), kind);
    }

    fn step(&mut self, kind: &Kind, d: &StepDecl, all: &[&StepDecl]) -> Option<StepDef> {
        let call = self.action_call(kind, &d.call)?;
        let mut step = StepDef {
            name: d.name.name.clone(),
            call,
            when: None,
            unless: None,
            always: false,
            after: Vec::new(),
            timeout_ms: None,
            undo: None,
            on_failure: None,
        };
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        for m in &d.modifiers {
            let key = match m {
                Modifier::When(..) => "when",
                Modifier::Unless(..) => "unless",
                Modifier::Always(_) => "always",
                Modifier::After(..) => "after",
                Modifier::Timeout(..) => "timeout",
                Modifier::Undo(..) => "undo",
                Modifier::OnFailure(..) => "on_failure",
            };
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                self.push(
                    Diagnostic::new(
                        Code::DuplicateAttribute,
                        m.span(),
                        format!("step `{}` has `{key}` twice", d.name.name),
                    )
                    .label("given again here")
                    .also(*first, "first given here")
                    .help("remove one of them"),
                );
                continue;
            }
            seen.push((key, m.span()));
            match m {
                Modifier::When(p, _) | Modifier::Unless(p, _) => {
                    if kind.param(&p.name).is_some() {
                        if matches!(m, Modifier::When(..)) {
                            step.when = Some(p.name.clone());
                        } else {
                            step.unless = Some(p.name.clone());
                        }
                    } else if !self.poisoned.contains(&p.name) {
                        self.push(unknown_param(kind, &p.name, p.span));
                    }
                }
                Modifier::Always(_) => step.always = true,
                Modifier::After(names, _) => {
                    for n in names {
                        if all.iter().any(|s| s.name.name == n.name) {
                            step.after.push(n.name.clone());
                        } else {
                            self.push(unknown_step(
                                &n.name,
                                n.span,
                                &kind.name,
                                all.iter().map(|s| s.name.name.as_str()),
                            ));
                        }
                    }
                }
                Modifier::Timeout(e, _) => {
                    step.timeout_ms = body::duration(e, "timeout", self.sink)
                }
                Modifier::Undo(c, _) => step.undo = self.action_call(kind, c),
                Modifier::OnFailure(e, _) => step.on_failure = self.policy(e),
            }
        }
        Some(step)
    }

    /// Checks a built-in action call against its signature.
    fn action_call(&mut self, kind: &Kind, c: &Call) -> Option<ActionCall> {
        let Some(action) = Action::parse(&c.name) else {
            let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
            let help = match body::suggest(&c.name, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("built-in actions: {}", names.join(", ")),
            };
            self.push(
                Diagnostic::new(
                    Code::UnknownAction,
                    c.name_span,
                    format!("unknown action `{}`", c.name),
                )
                .label("not a built-in action")
                .help(help),
            );
            return None;
        };
        let (positional, named) = signature(action);
        let known: Vec<&str> = named.iter().map(|(n, _, _)| *n).collect();
        self.known_args(c, &known)?;
        let pos: Vec<&Expr> = c.positional().collect();
        if pos.len() != positional.len() {
            let expected: Vec<&str> = positional.iter().map(|(n, _)| *n).collect();
            self.push(
                Diagnostic::new(
                    Code::InvalidArguments,
                    c.span,
                    format!(
                        "{}() takes {} positional argument{}, found {}",
                        c.name,
                        positional.len(),
                        if positional.len() == 1 { "" } else { "s" },
                        pos.len()
                    ),
                )
                .label("wrong number of arguments")
                .help(if expected.is_empty() {
                    format!("write {}()", c.name)
                } else {
                    format!("write {}({})", c.name, expected.join(", "))
                }),
            );
            return None;
        }
        let mut args = BTreeMap::new();
        let mut ok = true;
        for ((name, ty), e) in positional.iter().zip(&pos) {
            match self.arg_value(kind, *ty, e) {
                Some(v) => {
                    args.insert((*name).to_string(), v);
                }
                None => ok = false,
            }
        }
        for (name, ty, required) in named {
            match c.named(name) {
                Some(e) => match self.arg_value(kind, *ty, e) {
                    Some(v) => {
                        args.insert((*name).to_string(), v);
                    }
                    None => ok = false,
                },
                None if *required => {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidArguments,
                            c.span,
                            format!("{}() needs `{name}`", c.name),
                        )
                        .label(format!("missing `{name} = ...`"))
                        .help(format!("add `{name} = ...` to the call")),
                    );
                    ok = false;
                }
                None => {}
            }
        }
        ok.then_some(ActionCall { action, args })
    }

    fn arg_value(&mut self, kind: &Kind, ty: ArgTy, e: &Expr) -> Option<ArgValue> {
        if let ExprKind::Ident(name) = &e.kind {
            match (ty, name.as_str()) {
                (ArgTy::Target, "device") => return Some(ArgValue::Device),
                (ArgTy::Target, "domain") if kind.per == super::model::Per::Domain => {
                    return Some(ArgValue::Domain)
                }
                (ArgTy::Target, "domain") => {
                    self.push(
                        Diagnostic::new(
                            Code::UnknownReference,
                            e.span,
                            format!("kind `{}` runs per device: it has no `domain`", kind.name),
                        )
                        .label("no domain here")
                        .help("use `device`, or declare the kind `per domain`"),
                    );
                    return None;
                }
                (ArgTy::Target, _) => {
                    self.push(
                        Diagnostic::new(
                            Code::UnknownReference,
                            e.span,
                            format!("`{name}` is not a target"),
                        )
                        .label("expected device or domain")
                        .help("the first argument of a dp action is `device` or `domain`"),
                    );
                    return None;
                }
                _ => {}
            }
            let Some(p) = kind.param(name) else {
                if !self.poisoned.contains(name) {
                    self.push(unknown_param(kind, name, e.span));
                }
                return None;
            };
            let expected = match ty {
                ArgTy::Duration => ParamType::Duration,
                ArgTy::String => ParamType::String,
                ArgTy::Script => ParamType::Script,
                ArgTy::Bool => ParamType::Bool,
                ArgTy::Backup => ParamType::Backup,
                ArgTy::Target => return None,
            };
            if p.ty != expected {
                self.push(
                    Diagnostic::new(
                        Code::WrongType,
                        e.span,
                        format!(
                            "parameter `{name}` is a {}, but this argument takes a {}",
                            p.ty.name(),
                            expected.name()
                        ),
                    )
                    .label(format!("expected a {}", expected.name()))
                    .help(format!(
                        "declare `{name}` as {}, or pass another parameter",
                        expected.name()
                    )),
                );
                return None;
            }
            return Some(ArgValue::Param(name.clone()));
        }
        let v = match ty {
            ArgTy::Target => {
                self.push(body::wrong_type(e, "`device` or `domain`", "the target"));
                return None;
            }
            ArgTy::Duration => {
                let ms = body::duration(e, "this argument", self.sink)?;
                Value::Duration(ms)
            }
            ArgTy::String => Value::Str(body::string(e, "this argument", self.sink)?.to_string()),
            ArgTy::Script => Value::Script(self.script(e, "this argument")?),
            ArgTy::Bool => Value::Bool(body::boolean(e, "this argument", self.sink)?),
            ArgTy::Backup => Value::Backup(self.backup_ref(e, "this argument")?),
        };
        Some(ArgValue::Literal(v))
    }

    /// A typed parameter value (`none` is allowed for every type).
    pub(super) fn value_of(&mut self, ty: ParamType, e: &Expr, what: &str) -> Option<Value> {
        if matches!(&e.kind, ExprKind::Ident(n) if n == "none") {
            return Some(Value::None);
        }
        Some(match ty {
            ParamType::String => Value::Str(body::string(e, what, self.sink)?.to_string()),
            ParamType::Int => Value::Int(body::integer(e, what, i64::MIN, i64::MAX, self.sink)?),
            ParamType::Bool => Value::Bool(body::boolean(e, what, self.sink)?),
            ParamType::Duration => Value::Duration(body::duration(e, what, self.sink)?),
            ParamType::Size => Value::Size(body::size(e, what, self.sink)?),
            ParamType::Script => Value::Script(self.script(e, what)?),
            ParamType::Patterns => Value::Patterns(
                body::patterns(e, what, self.sink)?
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect(),
            ),
            ParamType::Backup => Value::Backup(self.backup_ref(e, what)?),
        })
    }

    /// Cycles in `after`, and quiesce steps without a later `always` unquiesce.
    fn step_order(&mut self, kind: &Kind, decls: &[&StepDecl]) {
        let n = kind.steps.len();
        let index = |name: &str| kind.steps.iter().position(|s| s.name == name);
        let preds: Vec<Vec<usize>> = kind
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.after.is_empty() {
                    if i == 0 {
                        vec![]
                    } else {
                        vec![i - 1]
                    }
                } else {
                    s.after.iter().filter_map(|a| index(a)).collect()
                }
            })
            .collect();
        // Depth-first search for a cycle; 0 = unvisited, 1 = on stack, 2 = done.
        let mut state = vec![0u8; n];
        let mut reported = false;
        for start in 0..n {
            if state[start] != 0 || reported {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some((v, i)) = stack.pop() {
                if i < preds[v].len() {
                    stack.push((v, i + 1));
                    let w = preds[v][i];
                    if state[w] == 1 {
                        let cycle: Vec<&str> = stack
                            .iter()
                            .skip_while(|(x, _)| *x != w)
                            .map(|(x, _)| kind.steps[*x].name.as_str())
                            .collect();
                        let decl = decls.iter().find(|d| d.name.name == kind.steps[v].name);
                        let span = decl
                            .and_then(|d| {
                                d.modifiers.iter().find_map(|m| match m {
                                    Modifier::After(_, s) => Some(*s),
                                    _ => None,
                                })
                            })
                            .or(decl.map(|d| d.name.span));
                        if let Some(span) = span {
                            self.push(
                                Diagnostic::new(
                                    Code::AfterCycle,
                                    span,
                                    format!(
                                        "steps of kind `{}` wait on each other: {} -> {}",
                                        kind.name,
                                        cycle.join(" -> "),
                                        cycle.first().copied().unwrap_or("")
                                    ),
                                )
                                .label("this `after` closes the cycle")
                                .help("`after` replaces the default order; a step cannot come after itself"),
                            );
                        }
                        reported = true;
                        break;
                    } else if state[w] == 0 {
                        state[w] = 1;
                        stack.push((w, 0));
                    }
                } else {
                    state[v] = 2;
                }
            }
        }
        for (i, s) in kind.steps.iter().enumerate() {
            if s.call.action != Action::Quiesce {
                continue;
            }
            let released = kind.steps[i + 1..]
                .iter()
                .any(|t| t.always && t.call.action == Action::Unquiesce);
            if !released {
                if let Some(d) = decls.iter().find(|d| d.name.name == s.name) {
                    self.push(
                        Diagnostic::new(
                            Code::QuiesceWithoutRelease,
                            d.name.span,
                            format!(
                                "step `{}` quiesces, but no later `always` step unquiesces",
                                s.name
                            ),
                        )
                        .label("the appliance could stay quiesced")
                        .help("add `step unquiesce = dp.unquiesce(device, timeout = quiesce) when quiesce always` after it"),
                    );
                }
            }
        }
    }
}

fn unknown_param(kind: &Kind, name: &str, span: Span) -> Diagnostic {
    let names: Vec<&str> = kind.params.iter().map(|p| p.name.as_str()).collect();
    let help = match body::suggest(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if names.is_empty() => format!("kind `{}` declares no parameters", kind.name),
        None => format!("parameters of `{}`: {}", kind.name, names.join(", ")),
    };
    Diagnostic::new(
        Code::UnknownReference,
        span,
        format!("`{name}` is not a parameter of kind `{}`", kind.name),
    )
    .label("unknown name")
    .help(help)
}

/// DP0011 for a step name that the kind does not have.
pub(super) fn unknown_step<'n>(
    name: &str,
    span: Span,
    kind: &str,
    steps: impl Iterator<Item = &'n str> + Clone,
) -> Diagnostic {
    let help = match body::suggest(name, steps.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!(
            "steps of `{kind}`: {}",
            steps.collect::<Vec<_>>().join(", ")
        ),
    };
    Diagnostic::new(
        Code::UnknownStep,
        span,
        format!("kind `{kind}` has no step `{name}`"),
    )
    .label("unknown step")
    .help(help)
}
