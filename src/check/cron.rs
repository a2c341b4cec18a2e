//! Rules for a plan's `schedule = "CRON"`: five fields that parse and name a date that exists,
//! and, with a window, some scheduled time inside it.

use super::context::Cx;
use super::model::{Schedule, Window};
use crate::diag::{Code, Diagnostic, Span};
use crate::schedule::{self, window, Cron, CronError};
use crate::syntax::{Attr, ExprKind};

const EXAMPLE: &str = "schedule = \"0 22 * * mon-fri\"";
const FIVE: &str = "minute hour day-of-month month day-of-week";

impl Cx<'_> {
    /// `schedule = "CRON"`, read on the clock of `window`'s zone (else the host's).
    pub(super) fn schedule(&mut self, a: &Attr, window: Option<&Window>) -> Option<Schedule> {
        let ExprKind::Str(expr) = &a.value.kind else {
            self.push(super::body::wrong_type(
                &a.value,
                "a cron expression in a string",
                "schedule",
            ));
            return None;
        };
        let span = a.value.span;
        let cron = match Cron::parse(expr) {
            Ok(c) => c,
            Err(e) => {
                let d = self.cron_error(expr, span, &e);
                self.push(d);
                return None;
            }
        };
        if let Some(w) = window {
            let until = self.now + chrono::Duration::days(schedule::LOOKAHEAD_DAYS);
            if schedule::first_in_window(&cron, w, self.now, until).is_none() {
                self.push(
                    Diagnostic::new(
                        Code::ScheduleOutsideWindow,
                        span,
                        format!("no time of schedule `{expr}` falls inside the plan's window"),
                    )
                    .label("always outside the window")
                    .help(format!(
                        "the window is {}; a run started outside it ends OUTSIDE_WINDOW: schedule a time inside it, e.g. \"{}\"",
                        window::describe(w),
                        inside(w)
                    )),
                );
            }
        }
        Some(Schedule { cron: expr.clone() })
    }

    fn cron_error(&self, expr: &str, span: Span, e: &CronError) -> Diagnostic {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (message, label, help) = match e {
            CronError::Empty => (
                "the schedule is empty".to_string(),
                "no fields".to_string(),
                format!("write five fields, {FIVE}: {EXAMPLE}"),
            ),
            CronError::Nickname { nickname, fields } => (
                format!("schedule `{expr}`: `{nickname}` is a nickname, not five fields"),
                "nickname".to_string(),
                match fields {
                    Some(f) => format!("write the five fields it stands for: schedule = \"{f}\""),
                    None => format!("write five fields, {FIVE}: {EXAMPLE}"),
                },
            ),
            CronError::FieldCount { found } => (
                format!("schedule `{expr}` has {found} fields; a schedule has five"),
                format!("{found} fields"),
                match found {
                    6 => format!(
                        "seconds are not supported: {FIVE}; without the first field: \"{}\"",
                        fields[1..].join(" ")
                    ),
                    7 => format!(
                        "seconds and years are not supported: {FIVE}; without the first and last fields: \"{}\"",
                        fields[1..6].join(" ")
                    ),
                    _ => format!("the fields are {FIVE}, e.g. {EXAMPLE}"),
                },
            ),
            CronError::Field {
                name,
                text,
                offset,
                reason,
                ..
            } => {
                let d = Diagnostic::new(
                    Code::InvalidSchedule,
                    self.inside_string(span, expr, *offset, text.len()),
                    format!("schedule `{expr}`: `{text}` is not a valid {name}"),
                )
                .label(format!("the {name} field"))
                .help(format!("{reason}; the fields are {FIVE}"));
                return d;
            }
            CronError::Invalid(why) => (
                format!("schedule `{expr}` does not parse: {why}"),
                "invalid schedule".to_string(),
                format!("the fields are {FIVE}, e.g. {EXAMPLE}"),
            ),
            CronError::Never => (
                format!("schedule `{expr}` never fires: no date matches it"),
                "no such date".to_string(),
                "the day-of-month and month fields name no date that exists (such as 30 February): correct them".to_string(),
            ),
        };
        Diagnostic::new(Code::InvalidSchedule, span, message)
            .label(label)
            .help(help)
    }

    /// The span of `len` bytes at `offset` in the value of the string literal at `span`, when
    /// the literal holds no escapes (else the whole literal).
    fn inside_string(&self, span: Span, value: &str, offset: usize, len: usize) -> Span {
        let raw = self.sources.slice(span);
        if raw.len() == value.len() + 2 {
            let start = span.start as usize + 1 + offset;
            Span::new(span.file, start, start + len)
        } else {
            span
        }
    }
}

/// A schedule that fires when window `w` opens: its opening time on its days.
fn inside(w: &Window) -> String {
    let (minute, hour) = match (w.from_min, w.to_min) {
        (Some(from), Some(_)) => (from % 60, from / 60),
        _ => (0, 0),
    };
    format!("{minute} {hour} * * {}", cron_days(&w.days))
}

/// Days as a day-of-week field: `*`, `mon-fri`, `sat,sun`, `mon,wed-fri`.
fn cron_days(days: &[u8]) -> String {
    let sorted = window::weekdays(days);
    if sorted.len() == 7 || sorted.is_empty() {
        return "*".into();
    }
    window::day_ranges(&sorted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggested_schedules_fire_inside_their_window() {
        let w = Window {
            days: vec![0, 1, 2, 3, 4],
            from_min: Some(22 * 60 + 30),
            to_min: Some(4 * 60),
            tz: Some("Europe/Berlin".into()),
        };
        assert_eq!(inside(&w), "30 22 * * mon-fri");
        let start = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let cron = Cron::parse(&inside(&w)).expect("parses");
        assert!(
            schedule::first_in_window(&cron, &w, start, start + chrono::Duration::days(8))
                .is_some()
        );
        assert_eq!(cron_days(&[5, 6]), "sat,sun");
        assert_eq!(cron_days(&[0, 2, 3, 4]), "mon,wed-fri");
        assert_eq!(cron_days(&(0..7).collect::<Vec<_>>()), "*");
        let all_day = Window {
            days: vec![6],
            from_min: None,
            to_min: None,
            tz: None,
        };
        assert_eq!(inside(&all_day), "0 0 * * sun");
    }
}
