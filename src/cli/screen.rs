//! How output is laid out for where it goes: a terminal gets its width and colour (unless
//! `NO_COLOR`), a pipe or a file gets whole values and no colour; times are shown in the
//! local zone (`TZ`) or, with `--utc`, in UTC.

use crate::report::{Fit, Look, Zone};
use clap::Args;
use std::io::IsTerminal;

/// The width a terminal is assumed to have when neither `COLUMNS` nor the terminal tells.
const DEFAULT_WIDTH: usize = 80;

/// The `--utc` option of every command that shows times.
#[derive(Debug, Clone, Copy, Args)]
pub struct UtcArg {
    /// Show times in UTC instead of the local time zone (TZ).
    #[arg(long)]
    pub utc: bool,
}

impl UtcArg {
    /// The zone times are shown in.
    pub fn zone(self) -> Zone {
        if self.utc {
            Zone::Utc
        } else {
            Zone::from_tz(std::env::var("TZ").ok().as_deref())
        }
    }
}

/// An output stream of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output: data.
    Stdout,
    /// Standard error: diagnostics, progress, the outcome of a run.
    Stderr,
}

impl Stream {
    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => std::io::stdout().is_terminal(),
            Stream::Stderr => std::io::stderr().is_terminal(),
        }
    }

    /// The terminal's columns: `COLUMNS` when set, else what the terminal says, else 80.
    fn columns(self) -> usize {
        if let Some(n) = std::env::var("COLUMNS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
        {
            return n;
        }
        let size = match self {
            Stream::Stdout => rustix::termios::tcgetwinsize(std::io::stdout()),
            Stream::Stderr => rustix::termios::tcgetwinsize(std::io::stderr()),
        };
        size.ok()
            .map(|w| usize::from(w.ws_col))
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_WIDTH)
    }

    /// Whether this stream gets colour: a terminal, and `NO_COLOR` unset or empty.
    pub fn color(self) -> bool {
        std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && self.is_terminal()
    }

    /// How tables written to this stream are laid out: a terminal's width and colour, or
    /// (not a terminal) every value whole and no colour.
    pub fn fit(self) -> Fit {
        Fit {
            width: self.is_terminal().then(|| self.columns()),
            color: self.color(),
        }
    }

    /// Tables laid out for this stream, times in `zone`.
    pub fn look(self, zone: Zone) -> Look {
        Look {
            fit: self.fit(),
            zone,
        }
    }
}
