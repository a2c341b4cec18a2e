//! The checking context the rule groups share: [`Cx`] (the sink, the program being built,
//! what was seen so far), the order the top-level items are checked in, and small helpers.
//!
//! The leaf below the rule groups: each of them adds its rules to `Cx` in an `impl` block of
//! its own and imports it from here, never from `mod.rs`.

use super::body;
use super::model::Program;
use super::patterns;
use crate::diag::{Diagnostic, FileId, Sink, SourceMap, Span};
use crate::syntax::{Block, Document, Stmt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
pub(super) enum ScriptState {
    Ok,
    Missing,
    NotExecutable,
}

/// The checking context shared by the rule groups.
pub(super) struct Cx<'a> {
    pub(super) sources: &'a SourceMap,
    pub(super) sink: &'a mut Sink,
    pub(super) program: Program,
    pub(super) scripts: HashMap<PathBuf, ScriptState>,
    /// Where each device was declared, for duplicate reports.
    pub(super) device_spans: HashMap<String, Span>,
    /// Where each kind was declared, for duplicate reports.
    pub(super) kind_spans: HashMap<String, Span>,
    /// Parameters of the kind being checked whose declaration was wrong (already reported).
    pub(super) poisoned: std::collections::HashSet<String>,
    /// Each file's directory, absolute, where its relative paths resolve (by `FileId`).
    pub(super) base_dirs: Vec<PathBuf>,
    /// Every notifier declared, valid or not, with where its name is (for plans' `notify`).
    pub(super) notifier_names: Vec<(String, Span)>,
    /// The notifiers some plan names (or most likely meant to).
    pub(super) notifiers_used: std::collections::HashSet<String>,
    /// When the check runs: schedules are looked at from here on.
    pub(super) now: chrono::DateTime<chrono::Utc>,
}

impl Cx<'_> {
    pub(super) fn push(&mut self, d: Diagnostic) {
        self.sink.push(d);
    }

    /// The directory paths in `file` resolve against.
    pub(super) fn base_dir(&self, file: FileId) -> &std::path::Path {
        &self.base_dirs[file.0 as usize]
    }

    /// `file:line:col` of a span, for messages that point into another place.
    pub(super) fn location(&self, span: Span) -> String {
        let f = self.sources.get(span.file);
        let (l, c) = f.line_col(span.start);
        format!("{}:{l}:{c}", f.name)
    }

    /// Sorts the top-level items of every file and checks them, kinds first (plans need
    /// them), then the fleet and the notifiers, then plans.
    pub(super) fn program_items(&mut self, docs: &[Document]) {
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
    pub(super) fn duplicate(&mut self, what: &str, name: &str, span: Span, first: Span) {
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
