//! Where a command's output goes: data to stdout (a closed pipe is quiet), and whether
//! stderr gets colour.

use super::error::CliError;
use super::screen;
use std::io::Write as _;

/// Writes `text` to stdout; [`CliError::ClosedPipe`] when the reader has gone (quietly:
/// `dpplan ... | head` is not a failure to report). Every command's data goes through here;
/// the print macros that remain (lines on stderr, the narration of `demo` and `sim`) reach
/// the same [`CliError::ClosedPipe`] through the panic guard in [`run`](super::run()).
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CliError::ClosedPipe,
            _ => CliError::Stdout(e),
        })
}

/// Whether stderr gets colour.
pub(crate) fn color_stderr() -> bool {
    screen::Stream::Stderr.color()
}
