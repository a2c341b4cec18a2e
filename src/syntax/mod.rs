//! Source text to syntax tree, and back to canonical text.
//!
//! [`parse`] turns one file's text into a [`Document`] whose nodes all carry spans;
//! [`format`] writes a document back in canonical form (`dpplan fmt`). This layer knows
//! nothing of what the blocks mean: that is the checker's job. It depends only on
//! [`crate::diag`].

pub mod ast;
mod fmt;
mod parser;

pub use ast::*;
pub use fmt::format_document;
pub use parser::{
    escape, parse, parse_duration_ms, parse_sequential, parse_size, unescape, Parsed, MAX_NESTING,
};

use crate::diag::{Diagnostic, FileId};

/// Formats `text` canonically; the errors are the syntax errors that prevent it.
pub fn format(text: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = parse(FileId(0), text);
    match parsed.doc {
        Some(doc) => Ok(format_document(text, &doc)),
        None => Err(parsed.diagnostics),
    }
}
