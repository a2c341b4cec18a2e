//! From syntax trees to a checked [`Program`], with every diagnostic found in one pass.
//!
//! [`check`] loads a root file and its imports ([`load`]), then runs the rule groups:
//! [`fleet`] (settings, store, inventory), [`kinds`] (activity kinds and their steps),
//! [`notify`] (notifiers), [`plans`] (plans, windows, schedules, activities) and [`exec`]
//! (recovery policies and scripts). Nothing here touches an appliance or prints; it depends on
//! [`crate::syntax`] and [`crate::diag`], and on [`crate::schedule`] for what cron
//! expressions and windows mean.

pub mod body;
mod cron;
mod exec;
mod fleet;
mod kinds;
pub mod load;
pub mod model;
pub mod notify;
pub mod patterns;
mod plans;
pub mod restore;
mod window;

pub use load::Root;
pub use model::*;

use crate::diag::{Diagnostic, FileId, Severity, Sink, SourceMap, Span};
use crate::syntax::{Block, Document, Stmt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The result of checking one root file.
#[derive(Debug)]
pub struct Checked {
    /// Every file loaded (the root and its imports).
    pub sources: SourceMap,
    /// What the files mean. Complete only when there are no errors.
    pub program: Program,
    /// Errors and warnings, in the order found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }

    /// The text stored with a run: every source file, each behind a header line.
    pub fn stored_text(&self) -> String {
        let mut out = String::new();
        for (_, f) in self.sources.iter() {
            out.push_str(&format!("# ==== {} ====\n", f.name));
            out.push_str(&f.text);
            if !f.text.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }
}

/// Checks the plan file at `path` and everything it imports.
pub fn check_file(path: &Path) -> Checked {
    check(&Root::Path(path.to_path_buf()))
}

/// Checks a root file and everything it imports.
pub fn check(root: &Root) -> Checked {
    let mut sink = Sink::new();
    let loaded = load::load(root, &mut sink);
    let mut cx = Cx {
        sources: &loaded.sources,
        sink: &mut sink,
        program: Program::default(),
        scripts: HashMap::new(),
        device_spans: HashMap::new(),
        kind_spans: HashMap::new(),
        poisoned: std::collections::HashSet::new(),
        notifier_names: Vec::new(),
        notifiers_used: std::collections::HashSet::new(),
        now: chrono::Utc::now(),
        base_dirs: loaded
            .sources
            .iter()
            .map(|(_, f)| absolute(f.base_dir()))
            .collect(),
    };
    cx.program_items(&loaded.docs);
    let program = cx.program;
    let mut diagnostics = sink.into_vec();
    // Stable order: by file, then position; the pass itself found them in rule order.
    diagnostics.sort_by_key(|d| d.span.map(|s| (s.file, s.start)).unwrap_or_default());
    Checked {
        sources: loaded.sources,
        program,
        diagnostics,
    }
}

/// `dir` made absolute against the current directory, so that a path resolved against it
/// means the same file whatever the current directory is later: scripts run in their plan's
/// directory, and a stored run is resumed from anywhere.
fn absolute(dir: PathBuf) -> PathBuf {
    if dir.as_os_str().is_empty() {
        return std::env::current_dir().unwrap_or_default();
    }
    std::path::absolute(&dir).unwrap_or(dir)
}

/// `path` as the user would write it: relative to the current directory when it is under it.
pub(crate) fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// What one script path turned out to be on disk (cached: thousands of plans may share one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptState {
    Ok,
    Missing,
    NotExecutable,
}

/// The checking context shared by the rule groups.
struct Cx<'a> {
    sources: &'a SourceMap,
    sink: &'a mut Sink,
    program: Program,
    scripts: HashMap<PathBuf, ScriptState>,
    /// Where each device was declared, for duplicate reports.
    device_spans: HashMap<String, Span>,
    /// Where each kind was declared, for duplicate reports.
    kind_spans: HashMap<String, Span>,
    /// Parameters of the kind being checked whose declaration was wrong (already reported).
    poisoned: std::collections::HashSet<String>,
    /// Each file's directory, absolute, where its relative paths resolve (by `FileId`).
    base_dirs: Vec<PathBuf>,
    /// Every notifier declared, valid or not, with where its name is (for plans' `notify`).
    notifier_names: Vec<(String, Span)>,
    /// The notifiers some plan names (or most likely meant to).
    notifiers_used: std::collections::HashSet<String>,
    /// When the check runs: schedules are looked at from here on.
    now: chrono::DateTime<chrono::Utc>,
}

impl Cx<'_> {
    fn push(&mut self, d: Diagnostic) {
        self.sink.push(d);
    }

    /// The directory paths in `file` resolve against.
    fn base_dir(&self, file: FileId) -> &std::path::Path {
        &self.base_dirs[file.0 as usize]
    }

    /// `file:line:col` of a span, for messages that point into another place.
    fn location(&self, span: Span) -> String {
        let f = self.sources.get(span.file);
        let (l, c) = f.line_col(span.start);
        format!("{}:{l}:{c}", f.name)
    }

    /// Sorts the top-level items of every file and checks them, kinds first (plans need
    /// them), then the fleet and the notifiers, then plans.
    fn program_items(&mut self, docs: &[Document]) {
        let mut settings: Vec<&Block> = Vec::new();
        let mut stores: Vec<&Block> = Vec::new();
        let mut inventories: Vec<&Block> = Vec::new();
        let mut kinds: Vec<&Block> = Vec::new();
        let mut plans: Vec<&Block> = Vec::new();
        let mut notifiers: Vec<&Block> = Vec::new();
        for doc in docs {
            for stmt in &doc.stmts {
                match stmt {
                    Stmt::Import(_) => {}
                    Stmt::Block(b) => match b.kind.name.as_str() {
                        "settings" => settings.push(b),
                        "store" => stores.push(b),
                        "inventory" => inventories.push(b),
                        "kind" => kinds.push(b),
                        "plan" => plans.push(b),
                        "notify" => notifiers.push(b),
                        _ => self.push(body::unknown_block(
                            b,
                            "a plan file",
                            &["settings", "store", "inventory", "notify", "kind", "plan"],
                        )),
                    },
                    other => self.push(top_level_statement(other)),
                }
            }
        }
        for k in kinds {
            self.kind(k);
        }
        self.settings(&settings);
        self.store(&stores);
        for inv in inventories {
            self.inventory(inv);
        }
        self.folder_clashes();
        for n in notifiers {
            self.notifier(n);
        }
        let index = patterns::NameIndex::new(self.program.devices.iter().map(|d| d.name.as_str()));
        let mut seen: HashMap<String, Span> = HashMap::new();
        for p in plans {
            self.plan(p, &index, &mut seen);
        }
        self.unused_notifiers();
    }

    /// DP0042 for devices whose names differ only in ASCII case: their folders in the store
    /// are one folder on a case-insensitive filesystem (SMB shares, macOS).
    fn folder_clashes(&mut self) {
        let mut seen: HashMap<String, (String, Span)> = HashMap::new();
        let mut found = Vec::new();
        for d in &self.program.devices {
            match seen.get(&d.name.to_ascii_lowercase()) {
                Some((first, first_span)) => {
                    found.push((d.name.clone(), d.span, first.clone(), *first_span))
                }
                None => {
                    seen.insert(d.name.to_ascii_lowercase(), (d.name.clone(), d.span));
                }
            }
        }
        for (name, span, first, first_span) in found {
            let mut d = Diagnostic::new(
                crate::diag::Code::FolderClash,
                span,
                format!("devices `{first}` and `{name}` differ only in case"),
            )
            .label("same folder as another device on a case-insensitive store")
            .help(format!(
                "`{first}` is declared at {}; on a case-insensitive store (SMB, macOS) both devices' backups go to one folder: rename one",
                self.location(first_span)
            ));
            if first_span.file == span.file {
                d = d.also(first_span, "the other device");
            }
            self.push(d);
        }
    }

    /// DP0007 for a second declaration of `name`.
    fn duplicate(&mut self, what: &str, name: &str, span: Span, first: Span) {
        let mut d = Diagnostic::new(
            crate::diag::Code::DuplicateName,
            span,
            format!("{what} `{name}` is declared twice"),
        )
        .label("declared again here");
        if first.file == span.file {
            d = d.also(first, "first declared here");
        }
        d = d.help(format!(
            "first declared at {}; names must be unique: rename or remove one",
            self.location(first)
        ));
        self.push(d);
    }
}

fn top_level_statement(stmt: &Stmt) -> Diagnostic {
    let (what, span) = match stmt {
        Stmt::Attr(a) => (format!("attribute `{}`", a.key.name), a.key.span),
        Stmt::Param(p) => ("`param`".to_string(), p.span),
        Stmt::Step(s) => ("`step`".to_string(), s.span),
        Stmt::Import(i) => ("`import`".to_string(), i.span),
        Stmt::Block(b) => (format!("block `{}`", b.kind.name), b.kind.span),
    };
    Diagnostic::new(
        crate::diag::Code::UnknownBlock,
        span,
        format!("{what} is not allowed at the top level"),
    )
    .label("unknown top-level item")
    .help("a plan file holds import, settings, store, inventory, notify, kind and plan items")
}
