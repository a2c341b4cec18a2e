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

/// The largest plan file read: far above any real plan, far below what would exhaust memory
/// (`/dev/zero` given as a plan is refused, not read forever).
pub const MAX_PLAN_BYTES: u64 = 16 * 1024 * 1024;

/// Why a plan file cannot be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path does not exist (or cannot be reached).
    #[error("{0}")]
    Missing(std::io::Error),
    /// A directory, FIFO, device or socket: reading it would hang or mean nothing.
    #[error("it is not a regular file (a {0})")]
    NotAFile(&'static str),
    /// Larger than [`MAX_PLAN_BYTES`].
    #[error("it is larger than {} MiB", MAX_PLAN_BYTES / (1024 * 1024))]
    TooLarge,
    /// Not UTF-8.
    #[error("it is not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    /// Any other I/O error.
    #[error("{0}")]
    Io(std::io::Error),
}

impl ReadError {
    /// Whether the file is simply not there (an import that names nothing).
    pub fn is_missing(&self) -> bool {
        matches!(self, ReadError::Missing(_))
    }
}

/// Reads a plan file as text: a regular file (a symlink to one is followed), at most
/// [`MAX_PLAN_BYTES`], UTF-8, with a leading byte-order mark dropped.
pub fn read_plan_file(path: &Path) -> Result<String, ReadError> {
    // Opened without blocking (a FIFO would block the open itself), then the open file is
    // looked at: the path cannot be swapped between the look and the read.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
    };
    let file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::Missing(e)),
        Err(e) => {
            // A directory cannot be opened for reading everywhere; name it as one.
            return match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => Err(ReadError::NotAFile("directory")),
                _ => Err(ReadError::Missing(e)),
            };
        }
    };
    let meta = file.metadata().map_err(ReadError::Io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_char_device() || ft.is_block_device() {
            "device"
        } else if ft.is_socket() {
            "socket"
        } else {
            "special file"
        };
        return Err(ReadError::NotAFile(what));
    }
    if meta.len() > MAX_PLAN_BYTES {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    {
        use std::io::Read;
        file.take(MAX_PLAN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
    }
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(ReadError::TooLarge);
    }
    text_of(bytes)
}

/// Plan text from bytes: UTF-8 required, a leading byte-order mark dropped.
pub fn text_of(mut bytes: Vec<u8>) -> Result<String, ReadError> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

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
        Root::Path(path) => match read_plan_file(path) {
            Ok(text) => {
                let key = key_for(path);
                let file = SourceFile::new(path.display().to_string(), Some(path.clone()), text);
                loader.file(key, file, sink);
            }
            Err(e) => {
                let code = if e.is_missing() {
                    Code::ImportNotFound
                } else {
                    Code::UnreadableFile
                };
                sink.push(
                    Diagnostic::nowhere(code, format!("cannot read `{}`: {e}", path.display()))
                        .help("check the path given on the command line"),
                )
            }
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
        match read_plan_file(&path) {
            Ok(text) => {
                let file = SourceFile::new(path.display().to_string(), Some(path.clone()), text);
                self.file(key, file, sink);
            }
            Err(e) if !e.is_missing() => sink.push(
                Diagnostic::new(
                    Code::UnreadableFile,
                    span,
                    format!("cannot import `{target}`: {e}"),
                )
                .label("imported here")
                .help(format!("{} must be a UTF-8 plan file", path.display())),
            ),
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
