//! When plans fall due: cron schedules and maintenance windows as instants.
//!
//! Pure arithmetic over the checked model: no clock (callers pass the instants), no I/O. The
//! checker reads `schedule = "..."` with [`Cron::parse`] and warns when no scheduled time falls
//! inside the plan's window ([`first_in_window`]); `dpplan plan` shows [`next_due`]; `dpplan
//! serve` starts runs at [`next_due`] and, after downtime, looks back with [`last_due`].
//!
//! A schedule is read in the zone of the plan's window (`tz`), else the host's zone, so
//! `0 22 * * mon-fri` is 22:00 on the wall clock all year round. Across a change of the clock
//! a time that does not happen (spring forward) runs at the end of the gap, and a time that
//! happens twice (fall back) runs once, the first time: as the window arithmetic in
//! [`window`] treats its opening times.

pub mod window;

use crate::check::{Plan, Window};
use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};

/// The five fields of a schedule, in order, with the values each takes.
pub const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day-of-week", "0-7 or sun-sat (0 and 7 are Sunday)"),
];

/// How far ahead [`first_in_window`] is asked to look by the checker: four years and a day,
/// so that a schedule of 29 February is seen.
pub const LOOKAHEAD_DAYS: i64 = 4 * 366 + 1;

/// Why a text is not a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Nothing but white space.
    #[error("the schedule is empty")]
    Empty,
    /// `@daily` and friends: dpplan takes the five fields only.
    #[error("`{nickname}` is a nickname, not five fields")]
    Nickname {
        /// The nickname as written.
        nickname: String,
        /// The five fields it stands for, when it is a known one.
        fields: Option<&'static str>,
    },
    /// Not five fields (six and seven are the forms with seconds and years).
    #[error("a schedule has five fields, found {found}")]
    FieldCount {
        /// How many fields were written.
        found: usize,
    },
    /// One field does not parse.
    #[error("`{text}` is not a valid {name} field")]
    Field {
        /// 0-based position among the five fields.
        index: usize,
        /// The field's name (`minute`).
        name: &'static str,
        /// The field as written.
        text: String,
        /// Byte offset of the field in the expression.
        offset: usize,
        /// What is wrong with it, for people.
        reason: String,
    },
    /// The fields parse, but not together (should not happen; kept so nothing panics).
    #[error("the schedule does not parse: {0}")]
    Invalid(String),
    /// It parses, but names no time that exists (`0 0 30 2 *`).
    #[error("the schedule never fires: no date matches it")]
    Never,
}

/// A five-field cron expression, parsed.
#[derive(Debug, Clone)]
pub struct Cron {
    cron: croner::Cron,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

impl Cron {
    /// Parses `expr`: five fields, minute hour day-of-month month day-of-week, with names
    /// (`mon`, `jan`, case-insensitive), ranges (`mon-fri`), lists (`1,15`) and steps (`*/15`,
    /// `0-30/10`). When both day fields are restricted, either matching is enough (as in
    /// Vixie cron). Checks that some date matches it.
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let fields = split_fields(expr);
        match fields.as_slice() {
            [] => return Err(CronError::Empty),
            [(_, one)] if one.starts_with('@') => {
                return Err(CronError::Nickname {
                    nickname: one.to_string(),
                    fields: nickname(one),
                })
            }
            f if f.len() != 5 => return Err(CronError::FieldCount { found: f.len() }),
            _ => {}
        }
        let parser = parser();
        let cron = match parser.parse(expr) {
            Ok(c) => c,
            Err(whole) => {
                // Find the field at fault: each alone, the others `*`.
                for (index, (offset, text)) in fields.iter().enumerate() {
                    let alone: Vec<&str> = (0..5)
                        .map(|i| if i == index { *text } else { "*" })
                        .collect();
                    if let Err(e) = parser.parse(&alone.join(" ")) {
                        return Err(CronError::Field {
                            index,
                            name: FIELDS[index].0,
                            text: text.to_string(),
                            offset: *offset,
                            reason: reason(index, text, &e),
                        });
                    }
                }
                return Err(CronError::Invalid(whole.to_string()));
            }
        };
        // A date that exists in some year (a search ends at year 5000, so this is bounded).
        let start = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        match start.map(|s| cron.find_next_occurrence(&s, true)) {
            Some(Ok(_)) => Ok(Cron { cron }),
            _ => Err(CronError::Never),
        }
    }

    /// The first time strictly after `after`, on the clock of `tz` (an IANA name; `None` or
    /// an unknown name: the host's zone).
    pub fn next_after(&self, tz: Option<&str>, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match named_zone(tz) {
            Some(z) => self.next_in(&z, after, false),
            None => self.next_in(&chrono::Local, after, false),
        }
    }

    /// The latest time at or before `until`, on the clock of `tz`.
    pub fn last_until(&self, tz: Option<&str>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let find = |t: DateTime<Utc>| match named_zone(tz) {
            Some(z) => self
                .cron
                .find_previous_occurrence(&t.with_timezone(&z), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            None => self
                .cron
                .find_previous_occurrence(&t.with_timezone(&chrono::Local), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        };
        find(until)
    }

    fn next_in<Z: TimeZone>(
        &self,
        tz: &Z,
        after: DateTime<Utc>,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(tz), inclusive)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The next time plan `plan` falls due strictly after `after`: its next scheduled time when
/// it has a `schedule`; else the next opening of its window when it has one; else `None` (it
/// runs only when started by hand). A window that is open all the time never opens: `None`.
pub fn next_due(plan: &Plan, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tz = plan.window.as_ref().and_then(|w| w.tz.as_deref());
    match (&plan.schedule, &plan.window) {
        (Some(s), _) => Cron::parse(&s.cron).ok()?.next_after(tz, after),
        (None, Some(w)) => window::next_open(w, after),
        (None, None) => None,
    }
}

/// The latest time plan `plan` fell due in `(after, until]`, as [`next_due`] counts them: what
/// `dpplan serve` catches up on after being down. `None` when none fell due in that span.
pub fn last_due(plan: &Plan, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if until <= after {
        return None;
    }
    let tz = plan.window.as_ref().and_then(|w| w.tz.as_deref());
    let last = match (&plan.schedule, &plan.window) {
        (Some(s), _) => Cron::parse(&s.cron).ok()?.last_until(tz, until),
        (None, Some(w)) => last_opening(w, after, until),
        (None, None) => None,
    };
    last.filter(|t| *t > after)
}

/// The latest opening of `w` in `(after, until]`. A window that opens at all opens at least
/// once a week, so the openings of the last eight days are enough.
fn last_opening(w: &Window, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut t = after.max(until - chrono::Duration::days(8));
    let mut last = None;
    // At most one opening a day (touching spans are one); the bound only guards the loop.
    for _ in 0..32 {
        match window::next_open(w, t) {
            Some(open) if open <= until => {
                last = Some(open);
                t = open;
            }
            _ => break,
        }
    }
    last
}

/// The first time of `cron` in `(after, until]` at which window `w` is open, the schedule
/// read on the window's clock; `None` when there is none. Leapfrogs from a scheduled time
/// outside the window to the window's next opening and on to the next scheduled time, so it
/// takes a few steps per window opening, however often the schedule fires.
pub fn first_in_window(
    cron: &Cron,
    w: &Window,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tz = w.tz.as_deref();
    let mut t = cron.next_after(tz, after)?;
    // Each turn passes one window opening: a bound of two a day over the span.
    let turns = ((until - after).num_days().max(0) as usize + 8) * 2;
    for _ in 0..turns {
        if t > until {
            return None;
        }
        if window::is_open(w, t) {
            return Some(t);
        }
        let open = window::next_open(w, t)?;
        if open > until {
            return None;
        }
        t = match named_zone(tz) {
            Some(z) => cron.next_in(&z, open, true),
            None => cron.next_in(&chrono::Local, open, true),
        }?;
    }
    None
}

fn named_zone(tz: Option<&str>) -> Option<chrono_tz::Tz> {
    tz.and_then(|z| z.parse().ok())
}

/// The fields of `expr` with their byte offsets.
fn split_fields(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in expr.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &expr[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &expr[s..]));
    }
    out
}

/// The five fields a known nickname stands for.
fn nickname(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * sun",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// What is wrong with field `index` (`text`), from the parser's complaint.
fn reason(index: usize, text: &str, e: &croner::errors::CronError) -> String {
    let values = FIELDS[index].1;
    let said = e.to_string();
    if said.contains("Range out of bounds") {
        if index == 4 {
            format!("a range goes from a lower to a higher value and stays within {values}; a range past Saturday does not wrap around (write fri-sun,mon)")
        } else {
            format!("a range goes from a lower to a higher value within {values}")
        }
    } else if said.contains("out of bounds") {
        format!("out of range: {values}")
    } else if said.contains("Step cannot be zero") {
        "a step must be at least 1".to_string()
    } else if said.contains("single number steps") || text.starts_with('/') {
        "a step goes after `*` or a range: */5 or 0-30/5".to_string()
    } else if said.contains("illegal character") {
        format!("use {values}, `*`, ranges a-b, lists a,b and steps */n")
    } else {
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{OnWindowClose, Policy, Schedule, Stages};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn plan(schedule: Option<&str>, window: Option<Window>) -> Plan {
        Plan {
            name: "p".into(),
            window,
            on_failure: Policy::Stop,
            stages: Stages::Pipelined,
            on_window_close: OnWindowClose::Cancel,
            pre_plan: None,
            post_plan: None,
            activities: Vec::new(),
            schedule: schedule.map(|c| Schedule { cron: c.into() }),
            notify: Vec::new(),
        }
    }

    fn berlin(days: Vec<u8>, from: Option<u32>, to: Option<u32>) -> Window {
        Window {
            days,
            from_min: from,
            to_min: to,
            tz: Some("Europe/Berlin".into()),
        }
    }

    /// A window that is always open but names Berlin, so schedules read Berlin's clock.
    fn berlin_clock() -> Window {
        berlin((0..7).collect(), None, None)
    }

    #[test]
    fn day_names_ranges_lists_and_steps() {
        let p = plan(Some("0 22 * * mon-fri"), Some(berlin_clock()));
        // Friday 2026-12-04 22:00 CET is 21:00 UTC; then Monday.
        assert_eq!(
            next_due(&p, at("2026-12-04T12:00:00Z")),
            Some(at("2026-12-04T21:00:00Z"))
        );
        assert_eq!(
            next_due(&p, at("2026-12-04T21:00:00Z")),
            Some(at("2026-12-07T21:00:00Z")),
            "strictly after"
        );
        let p = plan(Some("30 1 * * sat,SUN"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-05T00:30:00Z"))
        );
        let p = plan(Some("*/20 9-10 1,15 jan *"), Some(berlin_clock()));
        let mut t = at("2026-12-01T00:00:00Z");
        let mut seen = Vec::new();
        for _ in 0..7 {
            t = next_due(&p, t).expect("due");
            seen.push(t);
        }
        assert_eq!(
            seen,
            [
                at("2027-01-01T08:00:00Z"),
                at("2027-01-01T08:20:00Z"),
                at("2027-01-01T08:40:00Z"),
                at("2027-01-01T09:00:00Z"),
                at("2027-01-01T09:20:00Z"),
                at("2027-01-01T09:40:00Z"),
                at("2027-01-15T08:00:00Z"),
            ]
        );
        // Both day fields restricted: either is enough (Tue 1 Dec, then Mon 7 Dec).
        let p = plan(Some("0 3 1 * mon"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2026-11-30T12:00:00Z")),
            Some(at("2026-12-01T02:00:00Z"))
        );
        assert_eq!(
            next_due(&p, at("2026-12-01T02:00:00Z")),
            Some(at("2026-12-07T02:00:00Z"))
        );
        // The month's first Friday; the month's last day.
        let p = plan(Some("0 3 * * fri#1"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2026-12-05T00:00:00Z")),
            Some(at("2027-01-01T02:00:00Z"))
        );
        let p = plan(Some("0 3 L * *"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2027-02-01T00:00:00Z")),
            Some(at("2027-02-28T02:00:00Z"))
        );
        // 7 is Sunday too.
        let p = plan(Some("0 12 * * 7"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2026-12-01T00:00:00Z")),
            Some(at("2026-12-06T11:00:00Z"))
        );
    }

    #[test]
    fn schedules_keep_the_wall_clock_across_daylight_saving_changes() {
        // 22:00 Berlin is 21:00 UTC in winter, 20:00 in summer (clocks go forward 2027-03-28).
        let p = plan(Some("0 22 * * *"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-27T21:00:00Z"))
        );
        assert_eq!(
            next_due(&p, at("2027-03-28T12:00:00Z")),
            Some(at("2027-03-28T20:00:00Z"))
        );
        // 02:30 does not happen on 2027-03-28 (02:00 -> 03:00): it runs at 03:00 CEST.
        let p = plan(Some("30 2 * * *"), Some(berlin_clock()));
        assert_eq!(
            next_due(&p, at("2027-03-27T12:00:00Z")),
            Some(at("2027-03-28T01:00:00Z"))
        );
        assert_eq!(
            next_due(&p, at("2027-03-28T01:00:00Z")),
            Some(at("2027-03-29T00:30:00Z"))
        );
        // 02:30 happens twice on 2026-10-25 (03:00 -> 02:00): it runs once, the first time.
        assert_eq!(
            next_due(&p, at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            next_due(&p, at("2026-10-25T00:30:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
        // Looking back over the same night finds the same single time.
        assert_eq!(
            last_due(&p, at("2026-10-24T12:00:00Z"), at("2026-10-25T12:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn without_a_schedule_a_window_opening_is_due() {
        // Mon-Fri 22:00-04:00 Berlin: Friday's window runs past midnight into Saturday.
        let w = berlin(vec![0, 1, 2, 3, 4], Some(22 * 60), Some(4 * 60));
        let p = plan(None, Some(w));
        // Saturday 02:00 Berlin is inside Friday's window: the next opening is Monday 22:00.
        assert_eq!(
            next_due(&p, at("2026-12-05T01:00:00Z")),
            Some(at("2026-12-07T21:00:00Z"))
        );
        // Looking back from Saturday noon: Friday 22:00.
        assert_eq!(
            last_due(&p, at("2026-11-01T00:00:00Z"), at("2026-12-05T11:00:00Z")),
            Some(at("2026-12-04T21:00:00Z"))
        );
        // Nothing opened in (Sat 01:00, Sun noon].
        assert_eq!(
            last_due(&p, at("2026-12-05T01:00:00Z"), at("2026-12-06T11:00:00Z")),
            None
        );
        // A window open all the time never opens; no window, nothing is due.
        assert_eq!(
            next_due(
                &plan(None, Some(berlin_clock())),
                at("2026-12-01T00:00:00Z")
            ),
            None
        );
        assert_eq!(
            next_due(&plan(None, None), at("2026-12-01T00:00:00Z")),
            None
        );
        assert_eq!(
            last_due(
                &plan(None, None),
                at("2026-12-01T00:00:00Z"),
                at("2026-12-09T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn last_due_is_the_latest_in_the_span() {
        let p = plan(Some("0 22 * * mon-fri"), Some(berlin_clock()));
        // Down from Thursday noon to Monday 08:00: Thursday's and Friday's runs fell due; the
        // latest is Friday's.
        assert_eq!(
            last_due(&p, at("2026-12-03T11:00:00Z"), at("2026-12-07T07:00:00Z")),
            Some(at("2026-12-04T21:00:00Z"))
        );
        // `until` itself counts; `after` does not.
        assert_eq!(
            last_due(&p, at("2026-12-03T11:00:00Z"), at("2026-12-03T21:00:00Z")),
            Some(at("2026-12-03T21:00:00Z"))
        );
        assert_eq!(
            last_due(&p, at("2026-12-03T21:00:00Z"), at("2026-12-04T20:00:00Z")),
            None
        );
        assert_eq!(
            last_due(&p, at("2026-12-05T00:00:00Z"), at("2026-12-04T00:00:00Z")),
            None
        );
    }

    #[test]
    fn schedule_inside_a_window_past_midnight() {
        // Friday 22:00 to Saturday 04:00 Berlin.
        let w = berlin(vec![4], Some(22 * 60), Some(4 * 60));
        let from = at("2026-12-01T00:00:00Z");
        let until = from + chrono::Duration::days(LOOKAHEAD_DAYS);
        // Saturday 02:00 is inside Friday's window.
        let sat = Cron::parse("0 2 * * sat").expect("parses");
        assert_eq!(
            first_in_window(&sat, &w, from, until),
            Some(at("2026-12-05T01:00:00Z"))
        );
        // Friday 02:00 is not (Thursday has no window), nor is any time on a weekday noon.
        let fri = Cron::parse("0 2 * * fri").expect("parses");
        assert_eq!(first_in_window(&fri, &w, from, until), None);
        let often = Cron::parse("*/5 9-17 * * *").expect("parses");
        assert_eq!(first_in_window(&often, &w, from, until), None);
        // Every minute: the window's opening.
        let every = Cron::parse("* * * * *").expect("parses");
        assert_eq!(
            first_in_window(&every, &w, from, until),
            Some(at("2026-12-04T21:00:00Z"))
        );
        // 29 February in a window only on Saturdays: the next such day is in 2048, past the look.
        let leap = Cron::parse("0 12 29 2 *").expect("parses");
        let sat_all_day = berlin(vec![5], None, None);
        assert_eq!(first_in_window(&leap, &sat_all_day, from, until), None);
        let any_day = berlin((0..7).collect(), Some(11 * 60), Some(13 * 60));
        assert_eq!(
            first_in_window(&leap, &any_day, from, until),
            Some(at("2028-02-29T11:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        let field = |e: &str| match Cron::parse(e) {
            Err(CronError::Field {
                name, text, offset, ..
            }) => (name, text, offset),
            other => panic!("{e}: {other:?}"),
        };
        assert_eq!(field("61 * * * *"), ("minute", "61".into(), 0));
        assert_eq!(field("0  24 * * *"), ("hour", "24".into(), 3));
        assert_eq!(field("0 0 0 * *"), ("day-of-month", "0".into(), 4));
        assert_eq!(field("0 0 * foo *"), ("month", "foo".into(), 6));
        assert_eq!(
            field("0 22 * * mon-fry"),
            ("day-of-week", "mon-fry".into(), 9)
        );
        assert_eq!(field("0 22 * * fri-mon").0, "day-of-week");
        assert_eq!(field("*/0 * * * *").0, "minute");
        assert_eq!(field("0/5 * * * *").0, "minute");
        match Cron::parse("0 22 * * fri-mon") {
            Err(CronError::Field { reason, .. }) => {
                assert!(reason.contains("does not wrap around"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Cron::parse("0 0 22 * * *").err(),
            Some(CronError::FieldCount { found: 6 })
        );
        assert_eq!(
            Cron::parse("0 0 22 * * * 2027").err(),
            Some(CronError::FieldCount { found: 7 })
        );
        assert_eq!(
            Cron::parse("0 22 *").err(),
            Some(CronError::FieldCount { found: 3 })
        );
        assert_eq!(Cron::parse("  ").err(), Some(CronError::Empty));
        assert_eq!(
            Cron::parse("@daily").err(),
            Some(CronError::Nickname {
                nickname: "@daily".into(),
                fields: Some("0 0 * * *")
            })
        );
        assert_eq!(Cron::parse("0 0 30 2 *").err(), Some(CronError::Never));
        assert!(Cron::parse("0 0 L * *").is_ok());
    }

    #[test]
    fn a_schedule_that_does_not_parse_is_never_due() {
        // The checker refuses such plans; a stored one that slipped through is simply idle.
        let p = plan(Some("not cron"), None);
        assert_eq!(next_due(&p, at("2026-12-01T00:00:00Z")), None);
        assert_eq!(
            last_due(&p, at("2026-12-01T00:00:00Z"), at("2026-12-09T00:00:00Z")),
            None
        );
    }
}
