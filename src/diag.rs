//! Diagnostics as data: stable codes, severities, spans into source files, labels and help.
//!
//! The syntax and check layers produce [`Diagnostic`] values and never print them; the CLI
//! renders them (miette for people, JSON and SARIF for machines). Codes never change meaning
//! once released, and each one has a page in `docs/diagnostics/`, embedded here so that
//! `dpplan explain` works from the binary alone (a missing page fails the build).
//!
//! This module depends on nothing else in the crate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identifies one loaded source file inside a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// The file the range is in.
    pub file: FileId,
    /// Byte offset of the first byte.
    pub start: u32,
    /// Byte offset one past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// One source file: its name as shown to users, where it lives, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (the path as the user gave it, or `std/...`).
    pub name: String,
    /// The file on disk; `None` for the embedded standard library and stdin.
    pub path: Option<PathBuf>,
    /// The text.
    pub text: Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// A file from its name, location and text.
    pub fn new(name: impl Into<String>, path: Option<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        let text: Arc<str> = text.into();
        let mut line_starts = vec![0u32];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX)),
        );
        SourceFile {
            name: name.into(),
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line] as usize;
        let end = (offset as usize).min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map(|s| s.chars().count())
            .unwrap_or(end.saturating_sub(start));
        (line + 1, col + 1)
    }

    /// The number of lines.
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

/// Every source file loaded for one check, addressed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(u32::try_from(self.files.len() - 1).unwrap_or(u32::MAX))
    }

    /// The file with this id.
    ///
    /// Ids come only from [`SourceMap::add`] on this map, so the lookup cannot miss.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// All files, in load order.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// The source text a span covers.
    pub fn slice(&self, span: Span) -> &str {
        self.get(span.file)
            .text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The plan is accepted; `--deny-warnings` turns these into failures.
    Warning,
    /// The plan is rejected.
    Error,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

macro_rules! codes {
    ($($code:ident $variant:ident $sev:ident $title:literal,)*) => {
        /// A stable diagnostic code. Each has a page in `docs/diagnostics/`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $title]
                $variant,
            )*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as written: `DP0001`.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => stringify!($code),)* }
            }

            /// The severity every diagnostic with this code has.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }

            /// A short title.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }

            /// The explanation page (Markdown), as `dpplan explain` prints it.
            pub fn page(self) -> &'static str {
                match self {
                    $(Code::$variant => include_str!(concat!(
                        env!("CARGO_MANIFEST_DIR"), "/docs/diagnostics/", stringify!($code), ".md"
                    )),)*
                }
            }

            /// Looks a code up by its name, case-insensitively (`dp0007` works too).
            pub fn parse(s: &str) -> Option<Code> {
                let s = s.trim().to_ascii_uppercase();
                match s.as_str() { $(stringify!($code) => Some(Code::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    DP0001 Syntax Error "syntax error",
    DP0002 ImportNotFound Error "import not found",
    DP0003 ImportCycle Error "import cycle",
    DP0004 UnknownBlock Error "unknown block",
    DP0005 UnknownAttribute Error "unknown attribute",
    DP0006 DuplicateAttribute Error "duplicate attribute",
    DP0007 DuplicateName Error "duplicate name",
    DP0008 WrongType Error "wrong value type",
    DP0009 MissingRequired Error "missing required attribute or parameter",
    DP0010 UnknownKind Error "unknown activity kind",
    DP0011 UnknownStep Error "unknown step",
    DP0012 InvalidPolicy Error "invalid recovery policy",
    DP0013 InvalidRetry Error "invalid retry",
    DP0014 UnknownOption Error "unknown option value",
    DP0015 OutOfRange Error "value out of range",
    DP0016 InvalidClockTime Error "invalid clock time",
    DP0017 UnknownDay Error "unknown day",
    DP0018 UnknownTimeZone Error "unknown time zone",
    DP0019 EmptyWindow Error "empty maintenance window",
    DP0020 QuiesceTooShort Error "quiesce timeout under 60s",
    DP0021 EmptyPattern Error "empty device or domain selection",
    DP0022 DeviceWithoutHost Error "device without host",
    DP0023 PortOutOfRange Error "port out of range",
    DP0024 PatternMatchesNothing Warning "pattern matches no inventory device",
    DP0025 LiteralSecret Error "secret written literally",
    DP0026 ScriptNotFound Error "script not found",
    DP0027 ScriptNotExecutable Error "script not executable",
    DP0028 AfterCycle Error "cycle in step order",
    DP0029 QuiesceWithoutRelease Error "quiesce without an always release",
    DP0030 DomainsNotAllowed Error "domains on a kind without domains",
    DP0031 UnknownAction Error "unknown action",
    DP0032 UnknownReference Error "unknown reference",
    DP0033 TlsInsecure Warning "TLS verification disabled",
    DP0034 PlainHttp Warning "plain HTTP",
    DP0035 InvalidArguments Error "invalid call arguments",
    DP0036 UnknownType Error "unknown parameter type",
    DP0037 IncompleteWindow Error "incomplete maintenance window",
    DP0038 EmptyPlan Warning "plan without activities",
    DP0039 UnknownDevice Error "unknown device name",
    DP0040 WhenNotAllowed Error "script condition where it has no meaning",
    DP0041 UnresolvedSecret Warning "secret or file not found",
    DP0042 FolderClash Warning "device names that differ only in case",
    DP0043 UnreadableFile Error "plan file that cannot be read as text",
    DP0044 InvalidSchedule Error "invalid schedule",
    DP0045 ScheduleOutsideWindow Warning "schedule outside the maintenance window",
    DP0046 UnknownOutcome Error "unknown run outcome",
    DP0047 InvalidChannel Error "invalid notification channel",
    DP0048 UnknownNotifier Error "unknown notifier",
    DP0049 UnusedNotifier Warning "notifier no plan uses",
    DP0050 RestoreNotConfirmed Error "secure restore not confirmed",
    DP0051 BackupNeverResolves Error "restore source that can never resolve",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a plan: what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    /// The stable code; it also decides the severity.
    pub code: Code,
    /// One sentence naming the problem.
    pub message: String,
    /// The offending token; `None` when the problem has no place in a file (a missing root file).
    pub span: Option<Span>,
    /// The text under the primary span.
    pub label: String,
    /// Further places in the same file, with their own text.
    pub secondary: Vec<(Span, String)>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `span`.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A diagnostic that points at no source text.
    pub fn nowhere(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: None,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
        }
    }

    /// Sets the primary label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets the help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a secondary label (ignored by renderers when it is in another file).
    pub fn also(mut self, span: Span, label: impl Into<String>) -> Self {
        self.secondary.push((span, label.into()));
        self
    }

    /// The severity, from the code.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

/// Collects diagnostics during a pass; the pass never stops at the first one.
#[derive(Debug, Default)]
pub struct Sink {
    diagnostics: Vec<Diagnostic>,
}

impl Sink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one diagnostic.
    pub fn push(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Whether any error (not warning) was recorded.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }

    /// Everything recorded, in order of discovery.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.diagnostics
    }

    /// Appends several diagnostics.
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(ds);
    }
}
