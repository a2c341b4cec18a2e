//! Rules for `settings`, `store` and `inventory` (defaults and devices).

use super::body::{self, header_span, Body};
use super::context::Cx;
use super::model::{Device, Secret, Space, StoreConfig};
use crate::diag::{Code, Diagnostic, Span};
use crate::syntax::{Attr, Block, Expr, ExprKind, Label};

const SETTINGS: &[&str] = &[
    "backups_enabled",
    "max_parallel",
    "appliance_min_free",
    "quiesce_grace",
    "max_export_size",
    "keep_runs",
    "keep_days",
];
const STORE: &[&str] = &["require_remote", "min_free", "keep_last", "keep_days"];
const DEVICE: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "tls",
    "tls_ca",
    "insecure",
    "timeout",
    "download_timeout",
];

/// Device attributes as written in one `defaults` or `device` block.
#[derive(Debug, Default, Clone)]
struct DeviceAttrs {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<Secret>,
    tls: Option<bool>,
    tls_ca: Option<String>,
    insecure: Option<bool>,
    timeout_ms: Option<u64>,
    download_timeout_ms: Option<u64>,
}

impl Cx<'_> {
    pub(super) fn settings(&mut self, blocks: &[&Block]) {
        if let Some((first, rest)) = blocks.split_first() {
            for b in rest {
                self.duplicate("block", "settings", b.kind.span, first.kind.span);
            }
        }
        let Some(b) = blocks.first() else { return };
        self.no_labels(b);
        let mut body = Body::split(&b.body, "settings", self.sink);
        self.no_blocks(&body, "settings");
        let s = &mut self.program.settings;
        if let Some(a) = body.take("backups_enabled") {
            if let Some(v) = body::boolean(&a.value, "backups_enabled", self.sink) {
                s.backups_enabled = v;
            }
        }
        if let Some(a) = body.take("max_parallel") {
            if let Some(v) = body::integer(&a.value, "max_parallel", 1, 100_000, self.sink) {
                s.max_parallel = v as u32;
            }
        }
        if let Some(a) = body.take("appliance_min_free") {
            if let Some(v) = body::size(&a.value, "appliance_min_free", self.sink) {
                s.appliance_min_free = v;
            }
        }
        if let Some(a) = body.take("quiesce_grace") {
            if let Some(v) = body::duration(&a.value, "quiesce_grace", self.sink) {
                s.quiesce_grace_ms = v;
            }
        }
        if let Some(a) = body.take("max_export_size") {
            if let Some(v) = body::size(&a.value, "max_export_size", self.sink) {
                s.max_export_bytes = v;
            }
        }
        for (key, slot) in [
            ("keep_runs", &mut s.keep_runs),
            ("keep_days", &mut s.keep_days),
        ] {
            if let Some(a) = body.take(key) {
                *slot = body::integer(&a.value, key, 1, i64::from(u32::MAX), self.sink)
                    .map(|v| v as u32);
            }
        }
        body.finish("settings", SETTINGS, self.sink);
    }

    pub(super) fn store(&mut self, blocks: &[&Block]) {
        if let Some((first, rest)) = blocks.split_first() {
            for b in rest {
                self.duplicate("block", "store", b.kind.span, first.kind.span);
            }
        }
        let Some(b) = blocks.first() else { return };
        let path = match b.labels.as_slice() {
            [Label::Str(s)] if !s.value.is_empty() => self.base_dir(b.span.file).join(&s.value),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "the store needs its path: store \"/data/backup/store\" { ... }",
                    )
                    .label("no path")
                    .help("name the store's directory in a string after `store`"),
                );
                return;
            }
        };
        let mut body = Body::split(&b.body, "store", self.sink);
        self.no_blocks(&body, "store");
        let mut store = StoreConfig {
            path,
            require_remote: false,
            min_free: None,
            keep_last: None,
            keep_days: None,
        };
        if let Some(a) = body.take("require_remote") {
            store.require_remote =
                body::boolean(&a.value, "require_remote", self.sink).unwrap_or(false);
        }
        if let Some(a) = body.take("min_free") {
            store.min_free = match a.value.kind {
                ExprKind::Size(b) => Some(Space::Bytes(b)),
                ExprKind::Percent(p) if p <= 100 => Some(Space::Percent(p as u8)),
                ExprKind::Percent(p) => {
                    self.push(
                        Diagnostic::new(
                            Code::OutOfRange,
                            a.value.span,
                            format!("min_free must be at most 100%, found {p}%"),
                        )
                        .label("out of range")
                        .help("write a percentage from 0% to 100%, or a size such as 20GiB"),
                    );
                    None
                }
                _ => {
                    self.push(body::wrong_type(
                        &a.value,
                        "a size or a percentage",
                        "min_free",
                    ));
                    None
                }
            };
        }
        for (key, slot) in [
            ("keep_last", &mut store.keep_last),
            ("keep_days", &mut store.keep_days),
        ] {
            if let Some(a) = body.take(key) {
                *slot = body::integer(&a.value, key, 1, i64::from(u32::MAX), self.sink)
                    .map(|v| v as u32);
            }
        }
        body.finish("store", STORE, self.sink);
        self.program.store = Some(store);
    }

    pub(super) fn inventory(&mut self, b: &Block) {
        self.no_labels(b);
        let body = Body::split(&b.body, "inventory", self.sink);
        body.finish("inventory", &[], self.sink);
        let mut defaults = DeviceAttrs::default();
        let mut defaults_at: Option<Span> = None;
        for blk in &body.blocks {
            if blk.kind.name == "defaults" {
                if let Some(first) = defaults_at {
                    self.duplicate("block", "defaults", blk.kind.span, first);
                    continue;
                }
                defaults_at = Some(blk.kind.span);
                self.no_labels(blk);
                defaults = self.device_attrs(blk, "inventory defaults");
            }
        }
        for blk in &body.blocks {
            match blk.kind.name.as_str() {
                "defaults" => {}
                "device" => self.device(blk, &defaults),
                _ => self.push(body::unknown_block(
                    blk,
                    "inventory",
                    &["defaults", "device"],
                )),
            }
        }
    }

    fn device(&mut self, b: &Block, defaults: &DeviceAttrs) {
        let (name, name_span) = match b.labels.as_slice() {
            [Label::Str(s)] if !s.value.is_empty() => (s.value.clone(), s.span),
            _ => {
                self.push(
                    Diagnostic::new(
                        Code::MissingRequired,
                        header_span(b),
                        "a device needs a name: device \"QA1\" { ... }",
                    )
                    .label("no name")
                    .help("name the device in a string after `device`"),
                );
                return;
            }
        };
        let own = self.device_attrs(b, &format!("device `{name}`"));
        if let Some(first) = self.device_spans.get(&name).copied() {
            self.duplicate("device", &name, name_span, first);
            return;
        }
        self.device_spans.insert(name.clone(), name_span);
        let host = own.host.or_else(|| defaults.host.clone());
        let Some(host) = host else {
            self.push(
                Diagnostic::new(
                    Code::DeviceWithoutHost,
                    name_span,
                    format!("device `{name}` has no host"),
                )
                .label("no `host` here or in the inventory's defaults")
                .help("add host = \"name.example.com\" to the device"),
            );
            return;
        };
        let tls_ca = own
            .tls_ca
            .or_else(|| defaults.tls_ca.clone())
            .map(|p| self.base_dir(b.span.file).join(p));
        self.program.devices.push(Device {
            name,
            host,
            port: own.port.or(defaults.port).unwrap_or(5550),
            user: own.user.or_else(|| defaults.user.clone()),
            password: own.password.or_else(|| defaults.password.clone()),
            tls: own.tls.or(defaults.tls).unwrap_or(true),
            tls_ca,
            insecure: own.insecure.or(defaults.insecure).unwrap_or(false),
            timeout_ms: own.timeout_ms.or(defaults.timeout_ms).unwrap_or(60_000),
            download_timeout_ms: own
                .download_timeout_ms
                .or(defaults.download_timeout_ms)
                .unwrap_or(3_600_000),
            max_export_bytes: self.program.settings.max_export_bytes,
            span: name_span,
            at: self.location(name_span),
        });
    }

    fn device_attrs(&mut self, b: &Block, context: &str) -> DeviceAttrs {
        let mut body = Body::split(&b.body, context, self.sink);
        self.no_blocks(&body, context);
        let mut d = DeviceAttrs::default();
        if let Some(a) = body.take("host") {
            d.host = body::string(&a.value, "host", self.sink).map(str::to_string);
            if d.host.as_deref() == Some("") {
                self.push(
                    Diagnostic::new(Code::DeviceWithoutHost, a.value.span, "host is empty")
                        .label("empty host")
                        .help("write the device's host name or address"),
                );
                d.host = None;
            }
        }
        if let Some(a) = body.take("port") {
            d.port = self.port(&a.value);
        }
        if let Some(a) = body.take("user") {
            d.user = body::string(&a.value, "user", self.sink).map(str::to_string);
        }
        if let Some(a) = body.take("password") {
            d.password = self.secret(a);
            if let Some(secret) = &d.password {
                self.unresolved_secret(secret, a.value.span);
            }
        }
        if let Some(a) = body.take("tls") {
            d.tls = body::boolean(&a.value, "tls", self.sink);
            if d.tls == Some(false) {
                self.push(
                    Diagnostic::new(
                        Code::PlainHttp,
                        a.span,
                        "tls = false sends credentials and backups in plain HTTP",
                    )
                    .label("plain HTTP")
                    .help("use plain HTTP only against a simulator; real appliances speak HTTPS"),
                );
            }
        }
        if let Some(a) = body.take("tls_ca") {
            d.tls_ca = body::string(&a.value, "tls_ca", self.sink).map(str::to_string);
            if let Some(p) = &d.tls_ca {
                let full = self.base_dir(b.span.file).join(p);
                if !full.is_file() {
                    self.push(
                        Diagnostic::new(
                            Code::UnresolvedSecret,
                            a.value.span,
                            format!("the CA file `{p}` does not exist"),
                        )
                        .label("no such file")
                        .help(format!(
                            "paths are relative to the plan file's directory (looked for {}); a run refuses to start without it",
                            super::context::shown(&full)
                        )),
                    );
                }
            }
        }
        if let Some(a) = body.take("insecure") {
            d.insecure = body::boolean(&a.value, "insecure", self.sink);
            if d.insecure == Some(true) {
                self.push(
                    Diagnostic::new(
                        Code::TlsInsecure,
                        a.span,
                        "insecure = true accepts any certificate the appliance presents",
                    )
                    .label("certificate verification disabled")
                    .help("give the appliance's CA with tls_ca = \"certs/dp-ca.pem\" instead"),
                );
            }
        }
        if let Some(a) = body.take("timeout") {
            d.timeout_ms = body::duration(&a.value, "timeout", self.sink);
        }
        if let Some(a) = body.take("download_timeout") {
            d.download_timeout_ms = body::duration(&a.value, "download_timeout", self.sink);
        }
        body.finish(context, DEVICE, self.sink);
        d
    }

    fn port(&mut self, e: &Expr) -> Option<u16> {
        match e.kind {
            ExprKind::Int(n) if (1..=65535).contains(&n) => Some(n as u16),
            ExprKind::Int(n) => {
                self.push(
                    Diagnostic::new(
                        Code::PortOutOfRange,
                        e.span,
                        format!("port {n} is out of range"),
                    )
                    .label("not a TCP port")
                    .help("a port is between 1 and 65535 (the XML management default is 5550)"),
                );
                None
            }
            _ => {
                self.sink.push(body::wrong_type(e, "an integer", "port"));
                None
            }
        }
    }

    /// DP0041 when a secret cannot be read here: the run would refuse to start (CI often
    /// lacks the secrets, so this only warns).
    pub(super) fn unresolved_secret(&mut self, secret: &Secret, span: Span) {
        let (message, label, help) = match secret {
            Secret::Env(v) if std::env::var_os(v).is_none() => (
                format!("environment variable `{v}` is not set"),
                "unset here",
                format!("set {v} in the environment of `dpplan run`; a run refuses to start without it"),
            ),
            Secret::File(p) if !p.is_file() => (
                format!("the secret file `{}` does not exist", super::context::shown(p)),
                "no such file",
                "paths are relative to the plan file's directory; a run refuses to start without it".to_string(),
            ),
            _ => return,
        };
        self.push(
            Diagnostic::new(Code::UnresolvedSecret, span, message)
                .label(label)
                .help(help),
        );
    }

    /// `env("VAR")` or `file("path")`; anything literal is refused.
    pub(super) fn secret(&mut self, a: &Attr) -> Option<Secret> {
        let e = &a.value;
        match &e.kind {
            ExprKind::Str(_) | ExprKind::Int(_) => {
                self.push(
                    Diagnostic::new(
                        Code::LiteralSecret,
                        e.span,
                        format!("`{}` is written literally in the plan", a.key.name),
                    )
                    .label("secret in plain text")
                    .help("read it from the environment or a file: env(\"DP_PASSWORD\") or file(\"secrets/dp.pass\")"),
                );
                None
            }
            ExprKind::Call(c) if c.name == "env" || c.name == "file" => {
                let args: Vec<&Expr> = c.positional().collect();
                let value = match (args.as_slice(), c.args.len()) {
                    ([one], 1) => match &one.kind {
                        ExprKind::Str(s) if !s.is_empty() => Some(s.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(v) = value else {
                    self.push(
                        Diagnostic::new(
                            Code::InvalidArguments,
                            c.span,
                            format!("{}() takes one non-empty string", c.name),
                        )
                        .label("invalid arguments")
                        .help(format!("write {}(\"NAME\")", c.name)),
                    );
                    return None;
                };
                Some(if c.name == "env" {
                    Secret::Env(v)
                } else {
                    Secret::File(self.base_dir(c.span.file).join(v))
                })
            }
            _ => {
                self.push(body::wrong_type(
                    e,
                    "env(\"VAR\") or file(\"path\")",
                    &a.key.name,
                ));
                None
            }
        }
    }

    /// Reports labels on a block that takes none.
    pub(super) fn no_labels(&mut self, b: &Block) {
        if let Some(l) = b.labels.first() {
            let d = Diagnostic::new(
                Code::Syntax,
                l.span(),
                format!("`{}` takes no name", b.kind.name),
            )
            .label("unexpected name")
            .help(format!("write `{} {{ ... }}`", b.kind.name));
            self.push(d);
        }
    }

    /// Reports nested blocks in a block that takes none.
    pub(super) fn no_blocks(&mut self, body: &Body<'_>, context: &str) {
        for blk in &body.blocks {
            self.push(body::unknown_block(blk, context, &[]));
        }
    }
}
