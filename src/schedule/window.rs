//! Maintenance windows: is a plan's window open at an instant, when does it next open, and how
//! it reads for people.

use crate::check::{Window, DAYS};
use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Utc,
};

/// Whether `window` is open at `now`. A window whose `to` is not after its `from` ends the
/// next day; the day it opens on is the one listed in `days`.
pub fn is_open(window: &Window, now: DateTime<Utc>) -> bool {
    let (weekday, minute) = match zone(window) {
        Some(tz) => wall_clock(&now.with_timezone(&tz)),
        None => wall_clock(&now.with_timezone(&chrono::Local)),
    };
    let on = |d: u8| window.days.contains(&d);
    let yesterday = (weekday + 6) % 7;
    match (window.from_min, window.to_min) {
        (Some(from), Some(to)) if from < to => on(weekday) && minute >= from && minute < to,
        (Some(from), Some(to)) => (on(weekday) && minute >= from) || (on(yesterday) && minute < to),
        _ => on(weekday),
    }
}

/// When `window` next opens after `now`: the first instant after `now` at which it goes from
/// closed to open (while it is open, the opening after this one closes). `None` when it never
/// opens within the next eight days: no days, or open all the time.
pub fn next_open(window: &Window, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let spans = match zone(window) {
        Some(tz) => spans(window, now, &tz),
        None => spans(window, now, &chrono::Local),
    };
    spans.iter().map(|s| s.0).find(|&start| start > now)
}

/// When `window`, open at `now`, closes; `None` when it is closed, or open all week.
pub fn closes(window: &Window, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !is_open(window, now) {
        return None;
    }
    let spans = match zone(window) {
        Some(tz) => spans(window, now, &tz),
        None => spans(window, now, &chrono::Local),
    };
    let horizon = spans.last()?.1;
    let end = spans.iter().find(|s| s.0 <= now && now < s.1)?.1;
    (end < horizon).then_some(end)
}

/// The window as people read it: `mon-fri 22:00-04:00 Europe/Berlin`, `every day all day
/// local time`.
pub fn describe(window: &Window) -> String {
    let times = match (window.from_min, window.to_min) {
        (Some(from), Some(to)) => format!("{}-{}", hhmm(from), hhmm(to)),
        _ => "all day".to_string(),
    };
    let zone = window.tz.as_deref().unwrap_or("local time");
    format!("{} {times} {zone}", days(&window.days))
}

/// An instant in the window's zone, with its offset: `2026-12-01 22:00 +01:00`.
pub fn local_time(window: &Window, t: DateTime<Utc>) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M %:z";
    match zone(window) {
        Some(tz) => t.with_timezone(&tz).format(FORMAT).to_string(),
        None => t.with_timezone(&chrono::Local).format(FORMAT).to_string(),
    }
}

/// Why a run ends OUTSIDE_WINDOW: the window and when it next opens.
pub fn closed_message(window: &Window, now: DateTime<Utc>) -> String {
    let next = match next_open(window, now) {
        Some(t) => format!("; next opens {}", local_time(window, t)),
        None => String::new(),
    };
    format!(
        "outside the plan's maintenance window {}{next}; --ignore-window runs anyway",
        describe(window)
    )
}

fn zone(window: &Window) -> Option<chrono_tz::Tz> {
    window.tz.as_deref().and_then(|z| z.parse().ok())
}

fn wall_clock<T: Datelike + Timelike>(t: &T) -> (u8, u32) {
    (
        t.weekday().num_days_from_monday() as u8,
        t.hour() * 60 + t.minute(),
    )
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `mon-fri`, `sat-sun`, `mon,wed,fri`, `every day`.
fn days(days: &[u8]) -> String {
    let sorted = weekdays(days);
    if sorted.len() == 7 {
        return "every day".into();
    }
    day_ranges(&sorted)
}

/// The days 0-6 (Monday first) of `days`, sorted, each once.
pub(crate) fn weekdays(days: &[u8]) -> Vec<u8> {
    let mut sorted: Vec<u8> = days.iter().copied().filter(|d| *d < 7).collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// Sorted distinct weekdays as day names, consecutive ones as ranges: `mon-fri,sun`,
/// `mon,tue`: what windows show and cron's day-of-week field reads.
pub(crate) fn day_ranges(sorted: &[u8]) -> String {
    let mut runs: Vec<(u8, u8)> = Vec::new();
    for &d in sorted {
        match runs.last_mut() {
            Some(r) if r.1 + 1 == d => r.1 = d,
            _ => runs.push((d, d)),
        }
    }
    let name = |d: u8| DAYS[usize::from(d)];
    runs.iter()
        .map(|&(a, b)| match b - a {
            0 => name(a).to_string(),
            1 => format!("{},{}", name(a), name(b)),
            _ => format!("{}-{}", name(a), name(b)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The instant a wall-clock time of `tz` happens: the earlier of two in a repeated hour, and
/// the end of the gap for a time that a change to summer time skips.
fn instant<Z: TimeZone>(tz: &Z, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    for minutes in 0..=180 {
        let t = local + chrono::Duration::minutes(minutes);
        match tz.from_local_datetime(&t) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, _) => return Some(a.with_timezone(&Utc)),
            LocalResult::None => {}
        }
    }
    None
}

/// The spans the window is open, as instants, from the day before `now` for eight days,
/// sorted, with spans that touch merged.
fn spans<Z: TimeZone>(
    window: &Window,
    now: DateTime<Utc>,
    tz: &Z,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let today = now.with_timezone(tz).date_naive();
    let at = |d: NaiveDate, minutes: u32| {
        let time = NaiveTime::from_hms_opt(minutes / 60, minutes % 60, 0).unwrap_or(NaiveTime::MIN);
        instant(tz, d.and_time(time))
    };
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for offset in 0..9u64 {
        let Some(day) = today
            .checked_sub_days(Days::new(1))
            .and_then(|d| d.checked_add_days(Days::new(offset)))
        else {
            continue;
        };
        if !window
            .days
            .contains(&(day.weekday().num_days_from_monday() as u8))
        {
            continue;
        }
        let Some(next_day) = day.checked_add_days(Days::new(1)) else {
            continue;
        };
        let span = match (window.from_min, window.to_min) {
            (Some(from), Some(to)) if from < to => (at(day, from), at(day, to)),
            (Some(from), Some(to)) => (at(day, from), at(next_day, to)),
            _ => (at(day, 0), at(next_day, 0)),
        };
        let (Some(start), Some(end)) = span else {
            continue;
        };
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
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

    fn nightly() -> Window {
        // Mon-Fri 22:00-04:00 Berlin.
        Window {
            days: vec![0, 1, 2, 3, 4],
            from_min: Some(22 * 60),
            to_min: Some(4 * 60),
            tz: Some("Europe/Berlin".into()),
        }
    }

    #[test]
    fn next_open_past_midnight() {
        let w = nightly();
        // Tue 13:00 Berlin: tonight at 22:00 (UTC+1 in December).
        let now = at("2026-12-01T12:00:00Z");
        assert!(!is_open(&w, now));
        let next = next_open(&w, now).unwrap();
        assert_eq!(next, at("2026-12-01T21:00:00Z"));
        assert_eq!(local_time(&w, next), "2026-12-01 22:00 +01:00");
        assert!(is_open(&w, next));
        assert!(!is_open(&w, next - chrono::Duration::minutes(1)));
        // Sat 03:00, in Friday's window: open; it closes at 04:00, next opens Monday.
        let now = at("2026-12-05T02:00:00Z");
        assert!(is_open(&w, now));
        assert_eq!(closes(&w, now), Some(at("2026-12-05T03:00:00Z")));
        assert_eq!(next_open(&w, now), Some(at("2026-12-07T21:00:00Z")));
        // Sun noon: Monday 22:00.
        assert_eq!(
            next_open(&w, at("2026-12-06T11:00:00Z")),
            Some(at("2026-12-07T21:00:00Z"))
        );
        assert_eq!(closes(&w, at("2026-12-06T11:00:00Z")), None);
    }

    #[test]
    fn next_open_across_daylight_saving_changes() {
        // Every day 02:30-05:00 Berlin. On 2027-03-28 clocks go 02:00 -> 03:00: 02:30 does
        // not happen, the window opens at 03:00 CEST (01:00 UTC).
        let w = Window {
            days: (0..7).collect(),
            from_min: Some(150),
            to_min: Some(300),
            tz: Some("Europe/Berlin".into()),
        };
        assert_eq!(
            next_open(&w, at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-28T01:00:00Z"))
        );
        // The day after, 02:30 CEST is 00:30 UTC.
        assert_eq!(
            next_open(&w, at("2027-03-28T12:00:00Z")),
            Some(at("2027-03-29T00:30:00Z"))
        );
        // On 2026-10-25 clocks go 03:00 -> 02:00: 02:30 happens twice, the first (CEST,
        // 00:30 UTC) opens it.
        assert_eq!(
            next_open(&w, at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        // New York: 22:00 is 02:00 UTC in summer, 03:00 in winter (clocks go back 2026-11-01).
        let w = Window {
            days: (0..7).collect(),
            from_min: Some(22 * 60),
            to_min: Some(23 * 60),
            tz: Some("America/New_York".into()),
        };
        assert_eq!(
            next_open(&w, at("2026-10-31T12:00:00Z")),
            Some(at("2026-11-01T02:00:00Z"))
        );
        let next = next_open(&w, at("2026-11-01T12:00:00Z")).unwrap();
        assert_eq!(next, at("2026-11-02T03:00:00Z"));
        assert_eq!(local_time(&w, next), "2026-11-01 22:00 -05:00");
    }

    #[test]
    fn always_open_never_opens_again() {
        let w = Window {
            days: (0..7).collect(),
            from_min: None,
            to_min: None,
            tz: Some("UTC".into()),
        };
        let now = at("2026-12-01T12:00:00Z");
        assert!(is_open(&w, now));
        assert_eq!(next_open(&w, now), None);
        assert_eq!(closes(&w, now), None);
    }

    #[test]
    fn described_for_people() {
        assert_eq!(describe(&nightly()), "mon-fri 22:00-04:00 Europe/Berlin");
        let w = Window {
            days: vec![0, 2, 5, 6],
            from_min: None,
            to_min: None,
            tz: None,
        };
        assert_eq!(describe(&w), "mon,wed,sat,sun all day local time");
        assert_eq!(
            closed_message(&nightly(), at("2026-12-01T12:00:00Z")),
            "outside the plan's maintenance window mon-fri 22:00-04:00 Europe/Berlin; \
             next opens 2026-12-01 22:00 +01:00; --ignore-window runs anyway"
        );
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
