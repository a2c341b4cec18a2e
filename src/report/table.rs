//! The one table renderer of the CLI: plain-text columns sized to their content, separated by
//! two spaces. Given a width (a terminal's), the last column is cut first, then the widest
//! other one that may be cut, each with `…`; without one (a pipe, a file) nothing is ever
//! cut. Colour is applied after padding, so it never moves text.

/// How a table is laid out for where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fit {
    /// The width to fit (a terminal's columns); `None` never cuts a value.
    pub width: Option<usize>,
    /// Colour statuses (a terminal, `NO_COLOR` unset).
    pub color: bool,
}

impl Fit {
    /// Whole values and no colour: what a pipe gets.
    pub const PLAIN: Fit = Fit {
        width: None,
        color: false,
    };
}

/// `text` made safe for a terminal: control characters (ESC, NUL, carriage returns, ...),
/// which a hostile appliance may put in a domain name or an error text, are shown escaped
/// (`\x1b`) instead of acting on the terminal; line breaks (and tabs) are kept only when
/// `lines` is set, else shown as `\n`.
pub fn printable(text: &str, lines: bool) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\t' if lines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let n = u32::from(c);
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{n:x}}}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// How a cell is coloured on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// No colour.
    Plain,
    /// Green: succeeded, completed.
    Good,
    /// Yellow: warnings, skipped, in progress.
    Warn,
    /// Red: failed.
    Bad,
}

impl Tone {
    /// The tone of a status name (`COMPLETED`, `FAILED`...).
    pub fn of_status(status: &str) -> Tone {
        match status {
            "COMPLETED" | "SUCCEEDED" => Tone::Good,
            "FAILED" | "ROLLED_BACK" | "CANCELLED" | "STORE_NOT_MOUNTED" | "STORE_OUT_OF_SPACE" => {
                Tone::Bad
            }
            "-" | "" => Tone::Plain,
            _ => Tone::Warn,
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Tone::Plain => None,
            Tone::Good => Some("\x1b[32m"),
            Tone::Warn => Some("\x1b[33m"),
            Tone::Bad => Some("\x1b[31m"),
        }
    }
}

/// A column: its header, its alignment, and how far it may be cut to fit a width.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// Right-aligned.
    pub right: bool,
    /// Never cut below this many characters to fit the width.
    pub min: usize,
}

impl Column {
    /// A left-aligned column that may be cut (down to 8 characters, or its header) when the
    /// table would not fit the width: names, patterns, messages.
    pub fn left(header: &'static str) -> Column {
        Column {
            header,
            right: false,
            min: header.chars().count().max(8),
        }
    }

    /// A left-aligned column that is never cut (times, statuses).
    pub fn whole(header: &'static str) -> Column {
        Column {
            header,
            right: false,
            min: usize::MAX,
        }
    }

    /// A right-aligned column (numbers), never cut.
    pub fn right(header: &'static str) -> Column {
        Column {
            header,
            right: true,
            min: usize::MAX,
        }
    }
}

/// A table being built.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<(String, Tone)>>,
}

impl Table {
    /// A table with these columns. When the rows are wider than the width they must fit,
    /// the last column is cut first, then the widest other one that may be cut, each down to
    /// its minimum.
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|c| (printable(&c, false), Tone::Plain))
                .collect(),
        );
    }

    /// Adds a row whose cells carry tones.
    pub fn toned_row(&mut self, cells: Vec<(String, Tone)>) {
        self.rows.push(
            cells
                .into_iter()
                .map(|(c, t)| (printable(&c, false), t))
                .collect(),
        );
    }

    /// The table as text, one line per row after the header, each ending in `\n`.
    pub fn render(&self, fit: Fit) -> String {
        let color = fit.color;
        let n = self.columns.len();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.header.chars().count())
            .collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate().take(n) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut total: usize = widths.iter().sum::<usize>() + 2 * n.saturating_sub(1);
        let width = fit.width.unwrap_or(usize::MAX);
        while total > width {
            let can = |i: usize| widths[i] > self.columns[i].min;
            let pick = if n > 0 && can(n - 1) {
                Some(n - 1)
            } else {
                (0..n).filter(|&i| can(i)).max_by_key(|&i| (widths[i], i))
            };
            let Some(i) = pick else { break };
            widths[i] -= 1;
            total -= 1;
        }
        let mut out = String::new();
        let header: Vec<(String, Tone)> = self
            .columns
            .iter()
            .map(|c| (c.header.to_string(), Tone::Plain))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, col) in self.columns.iter().enumerate() {
                let (cell, tone) = row
                    .get(i)
                    .map(|(c, t)| (c.as_str(), *t))
                    .unwrap_or(("", Tone::Plain));
                let text = cut(cell, widths[i]);
                let pad = widths[i] - text.chars().count();
                let last = i + 1 == n;
                if i > 0 {
                    line.push_str("  ");
                }
                if col.right {
                    line.push_str(&" ".repeat(pad));
                }
                match tone.code().filter(|_| color) {
                    Some(code) => {
                        line.push_str(code);
                        line.push_str(&text);
                        line.push_str("\x1b[0m");
                    }
                    None => line.push_str(&text),
                }
                if !col.right && !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` cut to `width` characters, ending in `…` when cut.
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Terminal control from a device is shown, not obeyed; plain text is untouched.
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("QA1", false), "QA1");
        assert_eq!(printable("日本", false), "日本");
        assert_eq!(
            printable("a\x1b]0;x\x07b\0c", false),
            "a\\x1b]0;x\\x07b\\x00c"
        );
        assert_eq!(printable("one\ntwo\tx", false), "one\\ntwo\\tx");
        assert_eq!(printable("one\ntwo\tx", true), "one\ntwo\tx");
        assert_eq!(printable("\u{9b}31m", false), "\\x9b31m");
        let mut t = Table::new(vec![Column::left("NAME")]);
        t.row(vec!["evil\x1b[2J".into()]);
        assert!(!t.render(Fit::PLAIN).contains('\x1b'));
    }

    fn sample() -> Table {
        let mut t = Table::new(vec![
            Column::right("ID"),
            Column::left("NAME"),
            Column::whole("STATUS"),
            Column::left("MESSAGE"),
        ]);
        t.row(vec!["8".into(), "short".into(), "OK".into(), "ok".into()]);
        t.row(vec![
            "7".into(),
            "prod-nightly-with-a-very-long-name".into(),
            "FAILED".into(),
            "x".repeat(200),
        ]);
        t
    }

    #[test]
    fn a_width_cuts_the_last_column_first_then_the_widest() {
        let fit = |w| Fit {
            width: Some(w),
            color: false,
        };
        // Wide enough for everything but the message: only the message is cut.
        let text = sample().render(fit(120));
        for line in text.lines() {
            assert!(line.chars().count() <= 120, "{line}");
        }
        assert!(
            text.contains("prod-nightly-with-a-very-long-name"),
            "{text}"
        );
        assert!(text.contains("x…"), "{text}");
        assert!(text.starts_with("ID  NAME  "), "{text}");
        // Narrow: the message down to its minimum, then the name.
        let text = sample().render(fit(40));
        for line in text.lines() {
            assert!(line.chars().count() <= 40, "{line}");
        }
        assert!(
            text.contains("xxxxxxx…"),
            "the message at its minimum: {text}"
        );
        assert!(text.contains(" prod-nightly-with…  "), "{text}");
        assert!(text.contains("FAILED"), "statuses are never cut: {text}");
    }

    #[test]
    fn without_a_width_nothing_is_cut() {
        let text = sample().render(Fit::PLAIN);
        assert!(
            text.contains("prod-nightly-with-a-very-long-name"),
            "{text}"
        );
        assert!(text.contains(&"x".repeat(200)), "{text}");
        assert!(!text.contains('…'), "{text}");
    }

    #[test]
    fn colour_does_not_move_text() {
        let mut t = Table::new(vec![Column::whole("S"), Column::right("N")]);
        t.toned_row(vec![
            ("FAILED".into(), Tone::Bad),
            ("1".into(), Tone::Plain),
        ]);
        let plain = t.render(Fit::PLAIN);
        let coloured = t.render(Fit {
            width: None,
            color: true,
        });
        assert_eq!(
            coloured.replace("\x1b[31m", "").replace("\x1b[0m", ""),
            plain
        );
    }
}
