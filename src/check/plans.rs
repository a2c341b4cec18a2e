//! Rules for plans: `plan "NAME" { window, policies, stages, scripts, activities }`.

use super::body::{self, header_span, Body};
use super::context::Cx;
use super::kinds::unknown_step;
use super::load::STDLIB;
use super::model::{
    Action, Activity, ArgValue, DomainSel, OnWindowClose, Plan, Policy, Stages, Value,
};
use super::patterns::NameIndex;
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::{Attr, Block, ExprKind, Label, Stmt};
use std::collections::{BTreeMap, HashMap};

const PLAN: &[&str] = &[
    "on_failure",
    "stages",
    "on_window_close",
    "pre_plan",
    "post_plan",
    "schedule",
    "notify",
];

impl Cx<'_> {
    pub(super) fn plan(&mut self, b: &Block, index: &NameIndex, seen: &mut HashMap<String, Span>) {
        let (name, name_span) = match b.labels.as_slice() {
            [Label::Str(s)] if !s.value.is_empty() => (s.value.clone(), s.span),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "a plan needs a name: plan \"nightly\" { ... }",
                    )
                    .label("no name")
                    .help("name the plan in a string after `plan`"),
                );
                return;
            }
        };
        if let Some(first) = seen.get(&name).copied() {
            self.duplicate("plan", &name, name_span, first);
            return;
        }
        seen.insert(name.clone(), name_span);
        let context = format!("plan `{name}`");
        let mut body = Body::split(&b.body, &context, self.sink);
        let mut plan = Plan {
            name: name.clone(),
            window: None,
            on_failure: Policy::Stop,
            stages: Stages::Pipelined,
            on_window_close: OnWindowClose::Cancel,
            pre_plan: None,
            post_plan: None,
            activities: Vec::new(),
            schedule: None,
            notify: Vec::new(),
        };
        if let Some(a) = body.take("on_failure") {
            if let Some(p) = self.policy(&a.value) {
                plan.on_failure = p;
            }
        }
        if let Some(a) = body.take("stages") {
            if let Some(s) = self.option(a, &["pipelined", "lockstep"]) {
                plan.stages = if s == "lockstep" {
                    Stages::Lockstep
                } else {
                    Stages::Pipelined
                };
            }
        }
        if let Some(a) = body.take("on_window_close") {
            if let Some(s) = self.option(a, &["cancel", "sleep"]) {
                plan.on_window_close = if s == "sleep" {
                    OnWindowClose::Sleep
                } else {
                    OnWindowClose::Cancel
                };
            }
        }
        if let Some(a) = body.take("pre_plan") {
            plan.pre_plan = self.script(&a.value, "pre_plan");
            self.when_not_allowed(
                &a.value,
                "the pre-plan script",
                "the pre-plan script always runs before the tasks; `when` belongs on post_plan or a post script",
            );
        }
        if let Some(a) = body.take("post_plan") {
            plan.post_plan = self.script(&a.value, "post_plan");
        }
        if let Some(a) = body.take("notify") {
            plan.notify = self.plan_notifiers(a).unwrap_or_default();
        }
        // Read once the window is known: the schedule is read on the window's clock.
        let schedule = body.take("schedule");
        body.finish(&context, PLAN, self.sink);
        let mut window_at: Option<Span> = None;
        let mut labels: HashMap<String, Span> = HashMap::new();
        for blk in &body.blocks {
            match blk.kind.name.as_str() {
                "window" => {
                    if let Some(first) = window_at {
                        self.duplicate("block", "window", blk.kind.span, first);
                        continue;
                    }
                    window_at = Some(blk.kind.span);
                    plan.window = self.window(blk);
                }
                "activity" => {
                    if let Some(a) = self.activity(blk, index, &mut labels) {
                        plan.activities.push(a);
                    }
                }
                _ => self.push(body::unknown_block(blk, &context, &["window", "activity"])),
            }
        }
        if let Some(a) = schedule {
            plan.schedule = self.schedule(a, plan.window.as_ref());
        }
        if !b
            .body
            .iter()
            .any(|s| matches!(s, Stmt::Block(x) if x.kind.name == "activity"))
        {
            self.push(
                Diagnostic::new(
                    Code::EmptyPlan,
                    name_span,
                    format!("plan `{name}` has no activities"),
                )
                .label("backs up nothing")
                .help("add an activity, e.g. activity secure_backup { devices = \"*\" cert = \"backup-cert\" }"),
            );
        }
        self.program.plans.push(plan);
    }

    /// An identifier that must be one of `options`.
    fn option(&mut self, a: &Attr, options: &[&str]) -> Option<String> {
        match &a.value.kind {
            ExprKind::Ident(s) if options.contains(&s.as_str()) => Some(s.clone()),
            ExprKind::Ident(s) => {
                let help = match body::suggest(s, options.iter().copied()) {
                    Some(x) => format!("did you mean `{x}`?"),
                    None => format!("{} is one of: {}", a.key.name, options.join(", ")),
                };
                self.push(
                    Diagnostic::new(
                        Code::UnknownOption,
                        a.value.span,
                        format!("`{s}` is not a value of {}", a.key.name),
                    )
                    .label("unknown value")
                    .help(help),
                );
                None
            }
            _ => {
                let expected = options.join(" or ");
                self.push(body::wrong_type(&a.value, &expected, &a.key.name));
                None
            }
        }
    }

    fn activity(
        &mut self,
        b: &Block,
        index: &NameIndex,
        labels: &mut HashMap<String, Span>,
    ) -> Option<Activity> {
        let (kind_name, label) = match b.labels.as_slice() {
            [Label::Ident(k)] => (k, None),
            [Label::Ident(k), Label::Str(l)] => (k, Some(l)),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "an activity names its kind, and optionally a label",
                    )
                    .label("expected `activity KIND` or `activity KIND \"label\"`")
                    .help("write e.g. activity secure_backup { ... } or activity export_domain \"test\" { ... }"),
                );
                return None;
            }
        };
        if let Some(l) = label {
            if let Some(first) = labels.get(&l.value).copied() {
                self.duplicate("activity label", &l.value, l.span, first);
            } else {
                labels.insert(l.value.clone(), l.span);
            }
        }
        let context = match label {
            Some(l) => format!("activity `{}`", l.value),
            None => format!("activity `{}`", kind_name.name),
        };
        let kind = self.program.kinds.get(&kind_name.name).cloned();
        if kind.is_none() {
            let known: Vec<&str> = self.program.kinds.keys().map(String::as_str).collect();
            let in_std = STDLIB
                .iter()
                .find(|(_, text)| text.contains(&format!("kind {} per", kind_name.name)));
            let help = match (
                in_std,
                body::suggest(&kind_name.name, known.iter().copied()),
            ) {
                (Some((module, _)), _) => {
                    format!(
                        "`{}` is in the standard library: add `import \"{module}\"`",
                        kind_name.name
                    )
                }
                (None, Some(s)) => format!("did you mean `{s}`?"),
                (None, None) if known.is_empty() => {
                    "no kinds are defined: add `import \"std/datapower\"`".to_string()
                }
                (None, None) => format!("kinds: {}", known.join(", ")),
            };
            self.push(
                Diagnostic::new(
                    Code::UnknownKind,
                    kind_name.span,
                    format!("unknown activity kind `{}`", kind_name.name),
                )
                .label("unknown kind")
                .help(help),
            );
        }
        let mut body = Body::split(&b.body, &context, self.sink);
        let header = header_span(b);
        let mut ok = kind.is_some();
        let devices = match body.take("devices") {
            Some(a) => self.selection(a, index, true),
            None => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header,
                        format!("{context} does not say which devices"),
                    )
                    .label("no `devices`")
                    .help("add devices = \"QA*\" (a pattern) or a list of names"),
                );
                None
            }
        };
        ok &= devices.is_some();
        let domains_attr = body.take("domains");
        let mut domains = None;
        if let Some(k) = &kind {
            match (k.per, domains_attr) {
                (super::model::Per::Device, Some(a)) => {
                    self.push(
                        Diagnostic::new(
                            Code::DomainsNotAllowed,
                            a.key.span,
                            format!(
                                "kind `{}` backs up whole devices: it takes no domains",
                                k.name
                            ),
                        )
                        .label("not allowed here")
                        .help("remove `domains`, or use a per-domain kind such as export_domain"),
                    );
                    ok = false;
                }
                (super::model::Per::Domain, None) => {
                    self.push(
                        Diagnostic::new(
                            Code::MissingRequired,
                            header,
                            format!("{context} does not say which domains"),
                        )
                        .label("no `domains`")
                        .help("add domains = \"DOMAIN*\", a list of names, or `all` for one all-domains export"),
                    );
                    ok = false;
                }
                (super::model::Per::Domain, Some(a)) => {
                    domains = match &a.value.kind {
                        ExprKind::Ident(s) if s == "all" => Some(DomainSel::All),
                        _ => self.selection(a, index, false).map(DomainSel::Patterns),
                    };
                    ok &= domains.is_some();
                }
                (super::model::Per::Device, None) => {}
            }
        }
        let on_failure = match body.take("on_failure") {
            Some(a) => {
                let p = self.policy(&a.value);
                ok &= p.is_some();
                p
            }
            None => None,
        };
        let mut step_policies = BTreeMap::new();
        for blk in &body.blocks {
            if blk.kind.name != "on_failure" {
                self.push(body::unknown_block(blk, &context, &["on_failure"]));
                continue;
            }
            self.no_labels(blk);
            let pb = Body::split(&blk.body, "on_failure", self.sink);
            self.no_blocks(&pb, "on_failure");
            for a in pb.rest() {
                if let Some(k) = &kind {
                    if !k.steps.iter().any(|s| s.name == a.key.name) {
                        self.push(unknown_step(
                            &a.key.name,
                            a.key.span,
                            &k.name,
                            k.steps.iter().map(|s| s.name.as_str()),
                        ));
                        ok = false;
                        continue;
                    }
                }
                match self.policy(&a.value) {
                    Some(p) => {
                        step_policies.insert(a.key.name.clone(), p);
                    }
                    None => ok = false,
                }
            }
        }
        let mut params = BTreeMap::new();
        let mut spans = HashMap::new();
        if let Some(k) = &kind {
            for p in &k.params {
                match body.take(&p.name) {
                    Some(a) => match self.value_of(p.ty, &a.value, &format!("`{}`", p.name)) {
                        Some(v) => {
                            self.quiesce_floor(k, &p.name, &v, a.value.span);
                            if matches!(v, Value::Script(_)) && !runs_always(k, &p.name) {
                                self.when_not_allowed(
                                    &a.value,
                                    &format!("`{}`: kind `{}` runs it before the task's outcome is known", p.name, k.name),
                                    "`when` applies to post scripts (steps marked `always`), such as `post`",
                                );
                            }
                            params.insert(p.name.clone(), v);
                            spans.insert(p.name.clone(), a.value.span);
                        }
                        None => ok = false,
                    },
                    None => match &p.default {
                        Some(v) => {
                            params.insert(p.name.clone(), v.clone());
                        }
                        None => {
                            self.push(
                                Diagnostic::new(
                                    Code::MissingRequired,
                                    header,
                                    format!("{context} needs parameter `{}`", p.name),
                                )
                                .label(format!("`{}` missing", p.name))
                                .help(format!(
                                    "kind `{}` requires {} = ... ({})",
                                    k.name,
                                    p.name,
                                    p.ty.name()
                                )),
                            );
                            ok = false;
                        }
                    },
                }
            }
            let mut known: Vec<&str> = k.params.iter().map(|p| p.name.as_str()).collect();
            known.extend(["devices", "on_failure"]);
            if k.per == super::model::Per::Domain {
                known.push("domains");
            }
            body.finish(&context, &known, self.sink);
            for s in &k.steps {
                self.literal_quiesce_floor(s, b.kind.span);
            }
            if ok {
                let devices = devices.as_deref().unwrap_or_default();
                ok &= self.restore_rules(k, &context, header, devices, &params, &spans);
            }
        }
        if !ok {
            return None;
        }
        Some(Activity {
            kind: kind_name.name.clone(),
            label: label.map(|l| l.value.clone()),
            devices: devices.unwrap_or_default(),
            domains,
            params,
            on_failure,
            step_policies,
        })
    }

    /// `devices` or `domains`: a pattern or a list of them, never empty. Device patterns are
    /// checked against the inventory.
    fn selection(&mut self, a: &Attr, index: &NameIndex, devices: bool) -> Option<Vec<String>> {
        let pats = body::patterns(&a.value, &a.key.name, self.sink)?;
        let empty = pats.is_empty() || pats.iter().any(|(p, _)| p.is_empty());
        if empty {
            let span = pats
                .iter()
                .find(|(p, _)| p.is_empty())
                .map(|(_, s)| *s)
                .unwrap_or(a.value.span);
            self.push(
                Diagnostic::new(
                    Code::EmptyPattern,
                    span,
                    format!("`{}` selects nothing", a.key.name),
                )
                .label("empty")
                .help(format!(
                    "give at least one non-empty name or pattern, e.g. {} = \"{}\"",
                    a.key.name,
                    if devices { "QA*" } else { "DOMAIN*" }
                )),
            );
            return None;
        }
        if devices {
            for (p, span) in &pats {
                if super::patterns::is_literal(p) && !index.any_match(p) {
                    self.unknown_device(p, *span);
                } else if !index.any_match(p) {
                    let help = format!("no inventory device matches `{p}`; at run time this gives one SKIPPED task");
                    self.push(
                        Diagnostic::new(
                            Code::PatternMatchesNothing,
                            *span,
                            format!("`{p}` matches no inventory device"),
                        )
                        .label("matches nothing")
                        .help(help),
                    );
                }
            }
        }
        Some(pats.into_iter().map(|(p, _)| p).collect())
    }

    /// DP0039 with a did-you-mean for a literal device name that names no device.
    fn unknown_device(&mut self, name: &str, span: Span) {
        let help = match super::body::suggest(
            name,
            self.program.devices.iter().map(|d| d.name.as_str()),
        ) {
            Some(s) => format!("did you mean `{s}`? (device names are case-sensitive)"),
            None => "no inventory device has this name (names are case-sensitive); a pattern such as \"QA*\" selects several".to_string(),
        };
        self.push(
            Diagnostic::new(
                Code::UnknownDevice,
                span,
                format!("no device is named `{name}` in the inventory"),
            )
            .label("unknown device")
            .help(help),
        );
    }

    /// DP0020 for an activity value under 60s that feeds a quiesce timeout.
    fn quiesce_floor(&mut self, k: &super::model::Kind, param: &str, v: &Value, span: Span) {
        let Value::Duration(ms) = v else { return };
        let feeds_quiesce = k.steps.iter().any(|s| {
            matches!(s.call.action, Action::Quiesce | Action::Unquiesce)
                && matches!(s.call.args.get("timeout"), Some(ArgValue::Param(p)) if p == param)
        });
        if feeds_quiesce && *ms < 60_000 {
            self.push(quiesce_too_short(span, *ms));
        }
    }

    /// DP0020 for a literal quiesce timeout under 60s written in a kind.
    fn literal_quiesce_floor(&mut self, s: &super::model::StepDef, at: Span) {
        if !matches!(s.call.action, Action::Quiesce) {
            return;
        }
        if let Some(ArgValue::Literal(Value::Duration(ms))) = s.call.args.get("timeout") {
            if *ms < 60_000 {
                self.push(quiesce_too_short(at, *ms));
            }
        }
    }
}

fn quiesce_too_short(span: Span, ms: u64) -> Diagnostic {
    Diagnostic::new(
        Code::QuiesceTooShort,
        span,
        format!(
            "quiesce timeout {} is under the appliance's minimum of 60s",
            human_ms(ms)
        ),
    )
    .label("under 60s")
    .help("DataPower rejects quiesce timeouts under 60 seconds: use 60s or more")
}

fn human_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Whether some `always` step of kind `k` runs script parameter `param` (a post script,
/// where `when` means something).
fn runs_always(k: &super::model::Kind, param: &str) -> bool {
    k.steps.iter().any(|s| {
        s.always
            && s.call.action == Action::Run
            && s.call
                .args
                .values()
                .any(|a| matches!(a, ArgValue::Param(p) if p == param))
    })
}
