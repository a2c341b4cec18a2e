//! Maintenance windows: is a plan's window open at an instant?

use crate::check::Window;
use chrono::{DateTime, Datelike, Timelike, Utc};

/// Whether `window` is open at `now`. A window whose `to` is not after its `from` ends the
/// next day; the day it opens on is the one listed in `days`.
pub fn is_open(window: &Window, now: DateTime<Utc>) -> bool {
    let (weekday, minute) = match window
        .tz
        .as_deref()
        .and_then(|z| z.parse::<chrono_tz::Tz>().ok())
    {
        Some(tz) => {
            let t = now.with_timezone(&tz);
            (
                t.weekday().num_days_from_monday() as u8,
                t.hour() * 60 + t.minute(),
            )
        }
        None => {
            let t = now.with_timezone(&chrono::Local);
            (
                t.weekday().num_days_from_monday() as u8,
                t.hour() * 60 + t.minute(),
            )
        }
    };
    let on = |d: u8| window.days.contains(&d);
    let yesterday = (weekday + 6) % 7;
    match (window.from_min, window.to_min) {
        (Some(from), Some(to)) if from < to => on(weekday) && minute >= from && minute < to,
        (Some(from), Some(to)) => (on(weekday) && minute >= from) || (on(yesterday) && minute < to),
        _ => on(weekday),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn past_midnight_in_a_zone() {
        // Mon-Fri 22:00-04:00 Berlin (UTC+1 in November).
        let w = Window {
            days: vec![0, 1, 2, 3, 4],
            from_min: Some(22 * 60),
            to_min: Some(4 * 60),
            tz: Some("Europe/Berlin".into()),
        };
        assert!(is_open(&w, at("2026-11-23T21:30:00Z"))); // Mon 22:30
        assert!(!is_open(&w, at("2026-11-23T20:30:00Z"))); // Mon 21:30
        assert!(is_open(&w, at("2026-11-24T02:00:00Z"))); // Tue 03:00, opened Mon
        assert!(!is_open(&w, at("2026-11-24T03:30:00Z"))); // Tue 04:30
        assert!(!is_open(&w, at("2026-11-29T01:00:00Z"))); // Sun 02:00, Sat not listed
        assert!(is_open(&w, at("2026-11-28T01:00:00Z"))); // Sat 02:00, opened Fri
    }

    #[test]
    fn same_day_and_whole_days() {
        let w = Window {
            days: vec![5, 6],
            from_min: None,
            to_min: None,
            tz: Some("UTC".into()),
        };
        assert!(is_open(&w, at("2026-11-28T12:00:00Z")));
        assert!(!is_open(&w, at("2026-11-27T12:00:00Z")));
        let w = Window {
            days: (0..7).collect(),
            from_min: Some(60),
            to_min: Some(120),
            tz: Some("UTC".into()),
        };
        assert!(is_open(&w, at("2026-11-27T01:59:00Z")));
        assert!(!is_open(&w, at("2026-11-27T02:00:00Z")));
    }
}
