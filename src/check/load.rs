//! Loading a root file and everything it imports, transitively.
//!
//! `import "std/NAME"` resolves to the standard library embedded in the binary; any other
//! path is relative to the importing file's directory. Each file is parsed once, however
//! often it is imported; an import cycle is a diagnostic, not a hang.

use crate::diag::{Code, Diagnostic, FileId, Sink, SourceFile, SourceMap, Span};
use crate::syntax::{self, Document, Stmt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The embedded standard library: (import path, source).
pub const STDLIB: &[(&str, &str)] = &[(
    "std/datapower",
    include_str!("../../stdlib/datapower.dpplan"),
)];

/// The root file of a check.
#[derive(Debug, Clone)]
pub enum Root {
    /// A file on disk.
    Path(PathBuf),
    /// Text with a display name (stdin), and the directory its relative paths resolve in.
    Text {
        /// Name shown in diagnostics.
        name: String,
        /// The text.
        text: String,
        /// Base directory for imports and scripts.
        base: PathBuf,
    },
}

/// Every file of a program, parsed, with the problems found while loading.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The loaded sources.
    pub sources: SourceMap,
    /// Parsed documents, imports before the files importing them.
    pub docs: Vec<Document>,
}

/// Loads `root` and its imports.
pub fn load(root: &Root, sink: &mut Sink) -> Loaded {
    let mut loader = Loader {
        loaded: Loaded::default(),
        done: HashMap::new(),
        stack: Vec::new(),
    };
    match root {
        Root::Path(path) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = key_for(path);
                let file = SourceFile::new(path.display().to_string(), Some(path.clone()), text);
                loader.file(key, file, sink);
            }
            Err(e) => sink.push(
                Diagnostic::nowhere(
                    Code::ImportNotFound,
                    format!("cannot read `{}`: {e}", path.display()),
                )
                .help("check the path given on the command line"),
            ),
        },
        Root::Text { name, text, base } => {
            let file = SourceFile::new(name.clone(), Some(base.join(name)), text.as_str());
            loader.file(format!("text:{name}"), file, sink);
        }
    }
    loader.loaded
}

struct Loader {
    loaded: Loaded,
    /// Files already parsed, by key (canonical path or `std/...`).
    done: HashMap<String, FileId>,
    /// Keys of the files being loaded, innermost last: a repeat is a cycle.
    stack: Vec<String>,
}

fn key_for(path: &Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

impl Loader {
    fn file(&mut self, key: String, file: SourceFile, sink: &mut Sink) {
        let base = file.base_dir();
        let text = file.text.clone();
        let id = self.loaded.sources.add(file);
        self.done.insert(key.clone(), id);
        let parsed = syntax::parse(id, &text);
        sink.extend(parsed.diagnostics);
        let Some(doc) = parsed.doc else { return };
        self.stack.push(key);
        for stmt in &doc.stmts {
            if let Stmt::Import(imp) = stmt {
                self.import(&imp.path.value, imp.path.span, &base, sink);
            }
        }
        self.stack.pop();
        self.loaded.docs.push(doc);
    }

    fn import(&mut self, target: &str, span: Span, base: &Path, sink: &mut Sink) {
        if let Some(rest) = target.strip_prefix("std/") {
            let Some((name, text)) = STDLIB.iter().find(|(n, _)| *n == target) else {
                let known: Vec<&str> = STDLIB.iter().map(|(n, _)| *n).collect();
                sink.push(
                    Diagnostic::new(
                        Code::ImportNotFound,
                        span,
                        format!("the standard library has no module `{rest}`"),
                    )
                    .label("unknown module")
                    .help(format!("available: {}", known.join(", "))),
                );
                return;
            };
            let key = (*name).to_string();
            if self.cycle(&key, span, sink) || self.done.contains_key(&key) {
                return;
            }
            self.file(key, SourceFile::new(*name, None, *text), sink);
            return;
        }
        let mut path = base.join(target);
        if !path.exists() && path.extension().is_none() {
            path.set_extension("dpplan");
        }
        let key = key_for(&path);
        if self.cycle(&key, span, sink) || self.done.contains_key(&key) {
            return;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let file = SourceFile::new(path.display().to_string(), Some(path.clone()), text);
                self.file(key, file, sink);
            }
            Err(e) => sink.push(
                Diagnostic::new(
                    Code::ImportNotFound,
                    span,
                    format!("cannot import `{target}`: {e}"),
                )
                .label("imported here")
                .help(format!(
                    "the path is relative to the importing file's directory (looked for {})",
                    path.display()
                )),
            ),
        }
    }

    fn cycle(&self, key: &str, span: Span, sink: &mut Sink) -> bool {
        let Some(pos) = self.stack.iter().position(|k| k == key) else {
            return false;
        };
        let chain: Vec<&str> = self.stack[pos..]
            .iter()
            .map(|k| k.rsplit('/').next().unwrap_or(k))
            .collect();
        sink.push(
            Diagnostic::new(
                Code::ImportCycle,
                span,
                format!(
                    "import cycle: {} -> {}",
                    chain.join(" -> "),
                    chain.first().copied().unwrap_or("")
                ),
            )
            .label("this import closes the cycle")
            .help("move what both files need into a third file that both import"),
        );
        true
    }
}
