//! From syntax trees to a checked [`Program`], with every diagnostic found in one pass.
//!
//! [`check`] loads a root file and its imports ([`load`]), then runs the rule groups:
//! [`fleet`] (settings, store, inventory), [`kinds`] (activity kinds and their steps),
//! [`notify`] (notifiers), [`plans`] (plans, windows, schedules, activities) and [`exec`]
//! (recovery policies and scripts). Nothing here touches an appliance or prints; it depends on
//! [`crate::syntax`] and [`crate::diag`], and on [`crate::schedule`] for what cron
//! expressions and windows mean.

pub mod body;
mod context;
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

use crate::diag::{Diagnostic, Severity, Sink, SourceMap};
use context::Cx;
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
