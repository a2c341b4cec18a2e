//! The exit codes every command returns through, and the diagnostics' output formats.
//!
//! A leaf of the CLI: the commands and the error boundary import these from here, never
//! from `mod.rs`.

use clap::ValueEnum;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: errors found (or a failed run).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: dpplan itself failed.
pub const EXIT_INTERNAL: u8 = 3;
/// Exit code: the reader of standard output (or error) went away, as `dpplan ... | head`
/// does; what a death by SIGPIPE shows in a shell (128 + 13).
pub const EXIT_CLOSED_PIPE: u8 = 141;

/// Output formats for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Rendered for people, with source snippets.
    Human,
    /// A JSON array of diagnostics.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
}
