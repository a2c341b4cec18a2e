//! Plain-text tables that fit a fixed width: columns sized to their content, the last column
//! (a message) cut to what is left. Colour is applied after padding, so it never moves text.

/// The width every table fits, whatever the terminal: output is the same in a pipe.
pub const WIDTH: usize = 80;

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

/// A column: its header and whether numbers are right-aligned.
#[derive(Debug, Clone)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// Right-aligned.
    pub right: bool,
    /// At most this many characters (longer cells are cut with `…`).
    pub max: usize,
    /// Never cut below this many characters to fit the width.
    pub min: usize,
}

impl Column {
    /// A left-aligned column of at most `max` characters, cut (down to 8, or its header)
    /// when the table would not fit.
    pub fn left(header: &'static str, max: usize) -> Column {
        Column {
            header,
            right: false,
            max,
            min: header.chars().count().max(8).min(max),
        }
    }

    /// A left-aligned column that is never cut (times, statuses).
    pub fn whole(header: &'static str) -> Column {
        Column {
            header,
            right: false,
            max: usize::MAX,
            min: usize::MAX,
        }
    }

    /// A right-aligned column (numbers), never cut.
    pub fn right(header: &'static str) -> Column {
        Column {
            header,
            right: true,
            max: usize::MAX,
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
    /// A table with these columns. When the rows are wider than [`WIDTH`], the last column
    /// is cut first, then the widest other one that may be cut, each down to its minimum.
    pub fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row of plain cells.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| (c, Tone::Plain)).collect());
    }

    /// Adds a row whose cells carry tones.
    pub fn toned_row(&mut self, cells: Vec<(String, Tone)>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row after the header, each ending in `\n`.
    pub fn render(&self, color: bool) -> String {
        let n = self.columns.len();
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|c| c.header.chars().count())
            .collect();
        for row in &self.rows {
            for (i, (cell, _)) in row.iter().enumerate().take(n) {
                let w = cell.chars().count().min(self.columns[i].max);
                widths[i] = widths[i].max(w);
            }
        }
        let mut total: usize = widths.iter().sum::<usize>() + 2 * n.saturating_sub(1);
        while total > WIDTH {
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

    #[test]
    fn fits_the_width_and_cuts_the_last_column() {
        let mut t = Table::new(vec![
            Column::right("ID"),
            Column::left("NAME", 10),
            Column::left("MESSAGE", WIDTH),
        ]);
        t.row(vec!["8".into(), "short".into(), "ok".into()]);
        t.row(vec!["7".into(), "a very long name".into(), "x".repeat(200)]);
        let text = t.render(false);
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
        assert!(text.contains("a very lo…"));
        assert!(text.starts_with("ID  NAME        MESSAGE\n"));
    }

    #[test]
    fn colour_does_not_move_text() {
        let mut t = Table::new(vec![Column::whole("S"), Column::right("N")]);
        t.toned_row(vec![
            ("FAILED".into(), Tone::Bad),
            ("1".into(), Tone::Plain),
        ]);
        let plain = t.render(false);
        let coloured = t.render(true);
        assert_eq!(
            coloured.replace("\x1b[31m", "").replace("\x1b[0m", ""),
            plain
        );
    }
}
