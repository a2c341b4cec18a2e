//! Rules for a plan's `window { days, from, to, tz }`.

use super::body::{self, Body};
use super::context::Cx;
use super::model::{Window, DAYS};
use crate::diag::{Code, Diagnostic};
use crate::syntax::{Block, Expr, ExprKind};

const WINDOW: &[&str] = &["days", "from", "to", "tz"];

impl Cx<'_> {
    pub(super) fn window(&mut self, b: &Block) -> Option<Window> {
        self.no_labels(b);
        let mut body = Body::split(&b.body, "window", self.sink);
        self.no_blocks(&body, "window");
        let mut w = Window {
            days: (0..7).collect(),
            from_min: None,
            to_min: None,
            tz: None,
        };
        let mut ok = true;
        if let Some(a) = body.take("days") {
            match &a.value.kind {
                ExprKind::List(items) if items.is_empty() => {
                    self.push(
                        Diagnostic::new(
                            Code::EmptyWindow,
                            a.value.span,
                            "the window opens on no day",
                        )
                        .label("no days")
                        .help("list the days, e.g. [mon, tue, wed, thu, fri], or drop `days` for every day"),
                    );
                    ok = false;
                }
                ExprKind::List(items) => {
                    let mut days = Vec::new();
                    for i in items {
                        match &i.kind {
                            ExprKind::Ident(d) => match DAYS.iter().position(|x| x == d) {
                                Some(n) => {
                                    if !days.contains(&(n as u8)) {
                                        days.push(n as u8);
                                    }
                                }
                                None => {
                                    let help = match body::suggest(&d.to_ascii_lowercase(), DAYS) {
                                        Some(s) => format!("did you mean `{s}`?"),
                                        None => format!("days: {}", DAYS.join(", ")),
                                    };
                                    self.push(
                                        Diagnostic::new(
                                            Code::UnknownDay,
                                            i.span,
                                            format!("`{d}` is not a day"),
                                        )
                                        .label("unknown day")
                                        .help(help),
                                    );
                                    ok = false;
                                }
                            },
                            _ => {
                                self.push(body::wrong_type(i, "a day such as mon", "each day"));
                                ok = false;
                            }
                        }
                    }
                    days.sort_unstable();
                    w.days = days;
                }
                _ => {
                    self.push(body::wrong_type(&a.value, "a list of days", "days"));
                    ok = false;
                }
            }
        }
        let from = body.take("from");
        let to = body.take("to");
        if let Some(a) = from {
            w.from_min = self.clock(&a.value, "from");
            ok &= w.from_min.is_some();
        }
        if let Some(a) = to {
            w.to_min = self.clock(&a.value, "to");
            ok &= w.to_min.is_some();
        }
        match (from, to) {
            (Some(a), None) | (None, Some(a)) => {
                let (has, missing) = if a.key.name == "from" {
                    ("from", "to")
                } else {
                    ("to", "from")
                };
                self.push(
                    Diagnostic::new(
                        Code::IncompleteWindow,
                        a.key.span,
                        format!("the window has `{has}` but no `{missing}`"),
                    )
                    .label(format!("`{missing}` missing"))
                    .help("give both from and to, or neither for a window open all day"),
                );
                ok = false;
            }
            (Some(_), Some(t)) => {
                if w.from_min.is_some() && w.from_min == w.to_min {
                    self.push(
                        Diagnostic::new(
                            Code::EmptyWindow,
                            t.value.span,
                            "the window closes when it opens: from and to are equal",
                        )
                        .label("same as from")
                        .help("for a window open all day, leave out from and to"),
                    );
                    ok = false;
                }
            }
            (None, None) => {}
        }
        if let Some(a) = body.take("tz") {
            if let Some(tz) = body::string(&a.value, "tz", self.sink) {
                if tz.parse::<chrono_tz::Tz>().is_ok() {
                    w.tz = Some(tz.to_string());
                } else {
                    let help = match zone_suggestion(tz) {
                        Some(z) => format!("did you mean `{z}`? (zone names are case-sensitive)"),
                        None if tz.contains('/') || tz == "UTC" => {
                            "use an IANA zone name such as Europe/Berlin or UTC (names are case-sensitive)".to_string()
                        }
                        None => format!("`{tz}` is not an IANA name: write e.g. Europe/Berlin or America/New_York"),
                    };
                    self.push(
                        Diagnostic::new(
                            Code::UnknownTimeZone,
                            a.value.span,
                            format!("unknown time zone `{tz}`"),
                        )
                        .label("not an IANA time zone")
                        .help(help),
                    );
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
        body.finish("window", WINDOW, self.sink);
        ok.then_some(w)
    }

    fn clock(&mut self, e: &Expr, what: &str) -> Option<u32> {
        match e.kind {
            ExprKind::Time { hour, minute } if hour < 24 && minute < 60 => Some(hour * 60 + minute),
            ExprKind::Time { .. } => {
                self.push(
                    Diagnostic::new(
                        Code::InvalidClockTime,
                        e.span,
                        format!("`{}` is not a time of day", self.sources.slice(e.span)),
                    )
                    .label("hours 00-23, minutes 00-59")
                    .help("write a 24-hour time such as 22:00; a window past midnight ends the next day"),
                );
                None
            }
            _ => {
                self.push(body::wrong_type(e, "a clock time", what));
                None
            }
        }
    }
}

/// The IANA zone a mistyped `tz` most likely meant: the same name in another case, else the
/// nearest name by edit distance.
fn zone_suggestion(tz: &str) -> Option<&'static str> {
    let names = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
    if let Some(z) = names.clone().find(|n| n.eq_ignore_ascii_case(tz)) {
        return Some(z);
    }
    // Only a misspelt Area/City: an abbreviation such as CEST is near many unrelated names.
    if !tz.contains('/') {
        return None;
    }
    super::body::suggest(tz, names.filter(|n| n.contains('/')))
}
