//! How the reports write times, durations and sizes, in the zone and width asked for.
//!
//! A leaf of the module: the pages import these from here, never from `mod.rs`.

use super::table::{Fit, Tone};
use chrono::{DateTime, SecondsFormat, Utc};

/// A time as JSON shows it: RFC 3339, UTC, milliseconds (`2026-09-21T14:13:20.000Z`).
pub fn json_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The zone pages show times in; every time shown carries its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC (`--utc`).
    Utc,
    /// An IANA zone, as `TZ=Europe/Berlin` names it.
    Named(chrono_tz::Tz),
    /// The host's zone (`/etc/localtime`, or a POSIX `TZ` rule), as chrono reads it.
    Local,
}

impl Zone {
    /// The zone a `TZ` value names: an IANA name (a leading `:` allowed), else the host's.
    pub fn from_tz(tz: Option<&str>) -> Zone {
        tz.map(|z| z.trim_start_matches(':'))
            .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
            .map_or(Zone::Local, Zone::Named)
    }

    /// `t` in this zone, formatted with chrono's `fmt`.
    pub fn format(self, t: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Utc => t.format(fmt).to_string(),
            Zone::Named(tz) => t.with_timezone(&tz).format(fmt).to_string(),
            Zone::Local => t.with_timezone(&chrono::Local).format(fmt).to_string(),
        }
    }

    /// A time as pages show it: `2026-11-30 18:02:11 +01:00`.
    pub fn time(self, t: DateTime<Utc>) -> String {
        self.format(t, "%Y-%m-%d %H:%M:%S %:z")
    }
}

/// How a page is rendered for where it goes: the table's fit and the zone of its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    /// Width and colour of its tables.
    pub fit: Fit,
    /// The zone of its times.
    pub zone: Zone,
}

/// A time in a run's tables, as time since the run started (its heading has the start):
/// `+42.1s`.
pub fn since_start(started: DateTime<Utc>, t: DateTime<Utc>) -> String {
    format!("+{}", duration(t - started))
}

pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A duration for people: `0.4s`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(d: chrono::Duration) -> String {
    let ms = d.num_milliseconds().max(0);
    let s = ms / 1000;
    if s < 60 {
        format!("{}.{}s", s, (ms % 1000) / 100)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// A size for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub(super) fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(json_time)
}

pub(super) fn toned(status: &str) -> (String, Tone) {
    (status.to_string(), Tone::of_status(status))
}

pub(super) fn plain(s: impl ToString) -> (String, Tone) {
    (s.to_string(), Tone::Plain)
}
