//! The canonical formatter behind `dpplan fmt`.
//!
//! Canonical form: two-space indentation; one statement per line, except a block written on
//! one line that holds only attributes; the `=` of consecutive attributes, parameters and
//! steps aligned (and a run of steps also aligns its modifiers and trailing comments); at
//! most one blank line kept between statements; literals written exactly as in the source
//! (so the meaning cannot change); comments kept where they were. Formatting is idempotent:
//! formatting canonical text returns it unchanged.

use super::ast::*;
use crate::diag::Span;

/// A `#` comment: its byte range, newline excluded.
#[derive(Debug, Clone, Copy)]
struct Comment {
    start: u32,
    end: u32,
}

/// Every comment in `src`.
fn comments(src: &str) -> Vec<Comment> {
    super::parser::comment_ranges(src)
        .into_iter()
        .map(|(start, end)| Comment { start, end })
        .collect()
}

/// Formats a parsed document whose text is `src`.
pub fn format_document(src: &str, doc: &Document) -> String {
    let mut f = Fmt {
        src,
        comments: comments(src),
        next: 0,
        out: String::with_capacity(src.len() + src.len() / 8),
    };
    f.stmts(&doc.stmts, 0, src.len() as u32, 0);
    while f.out.ends_with("\n\n") {
        f.out.pop();
    }
    if f.out.is_empty() {
        return String::new();
    }
    if !f.out.ends_with('\n') {
        f.out.push('\n');
    }
    f.out
}

struct Fmt<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    /// The first comment not yet written.
    next: usize,
    out: String,
}

/// How consecutive statements line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunKind {
    Attr,
    Param,
    Step,
}

impl<'a> Fmt<'a> {
    fn text(&self, span: Span) -> &'a str {
        self.src
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    fn comment_text(&self, c: Comment) -> &'a str {
        self.src[c.start as usize..c.end as usize].trim_end()
    }

    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    /// Whether a comment lies inside `span`.
    fn has_comment_in(&self, span: Span) -> bool {
        self.comments[self.next..]
            .iter()
            .take_while(|c| c.start < span.end)
            .any(|c| c.start >= span.start)
    }

    /// Skips comments that lie before `pos` (they were written verbatim).
    fn consume_until(&mut self, pos: u32) {
        while self.next < self.comments.len() && self.comments[self.next].start < pos {
            self.next += 1;
        }
    }

    /// Whether there is a blank line in `src[from..to]`.
    fn blank_between(&self, from: u32, to: u32) -> bool {
        let gap = self.src.get(from as usize..to as usize).unwrap_or("");
        gap.bytes().filter(|&b| b == b'\n').count() >= 2
    }

    /// The comment right after `pos` on the same line, if any.
    fn trailing_comment(&self, pos: u32) -> Option<Comment> {
        let c = *self.comments.get(self.next)?;
        let gap = self.src.get(pos as usize..c.start as usize)?;
        gap.bytes()
            .all(|b| b == b' ' || b == b'\t' || b == b'\r')
            .then_some(c)
    }

    /// Writes own-line comments that start before `pos`; returns where the last one ended.
    fn leading_comments(&mut self, pos: u32, level: usize, mut prev_end: u32, first: bool) -> u32 {
        let mut first = first;
        while self.next < self.comments.len() && self.comments[self.next].start < pos {
            let c = self.comments[self.next];
            if !first && self.blank_between(prev_end, c.start) {
                self.out.push('\n');
            }
            self.indent(level);
            self.out.push_str(self.comment_text(c));
            self.out.push('\n');
            self.next += 1;
            prev_end = c.end;
            first = false;
        }
        prev_end
    }

    /// Writes a list of statements at `level`, up to `end` (a closing brace or end of file).
    fn stmts(&mut self, stmts: &[Stmt], level: usize, end: u32, start: u32) {
        let mut prev_end = start;
        let mut first = true;
        let mut i = 0;
        while i < stmts.len() {
            // A run: consecutive statements of one alignable kind with nothing between them
            // but single newlines.
            let kind = run_kind(&stmts[i]);
            let mut j = i + 1;
            if let Some(k) = kind {
                while j < stmts.len()
                    && run_kind(&stmts[j]) == Some(k)
                    && !self.blank_between(stmts[j - 1].span().end, stmts[j].span().start)
                    && !self.comment_between(stmts[j - 1].span().end, stmts[j].span().start)
                {
                    j += 1;
                }
            }
            let run = &stmts[i..j];
            // Leading comments and blank line before the run.
            let run_start = run[0].span().start;
            let has_leading = self
                .comments
                .get(self.next)
                .is_some_and(|c| c.start < run_start);
            if !first && self.blank_between(prev_end, self.next_start(run_start)) {
                self.out.push('\n');
            }
            if has_leading {
                let last = self.leading_comments(run_start, level, prev_end, true);
                if self.blank_between(last, run_start) {
                    self.out.push('\n');
                }
            }
            prev_end = match kind {
                Some(k) => self.run(run, k, level),
                None => self.block_stmt(run[0].clone(), level),
            };
            first = false;
            i = j;
        }
        // Comments after the last statement, before the end.
        if self.next < self.comments.len() && self.comments[self.next].start < end {
            let c0 = self.comments[self.next].start;
            if !first && self.blank_between(prev_end, c0) {
                self.out.push('\n');
            }
            self.leading_comments(end, level, prev_end, true);
        }
    }

    /// Start of the next thing to write: the next comment if it comes before `pos`.
    fn next_start(&self, pos: u32) -> u32 {
        match self.comments.get(self.next) {
            Some(c) if c.start < pos => c.start,
            _ => pos,
        }
    }

    /// Whether an own-line comment stands between two positions.
    fn comment_between(&self, from: u32, to: u32) -> bool {
        self.comments[self.next..]
            .iter()
            .take_while(|c| c.start < to)
            .any(|c| c.start >= from && self.src[from as usize..c.start as usize].contains('\n'))
    }

    /// Writes an aligned run of attributes, parameters or steps; returns where it ended.
    fn run(&mut self, run: &[Stmt], kind: RunKind, level: usize) -> u32 {
        // Render each statement's columns (verbatim when a comment sits inside it), and take
        // its trailing comment, in source order so the comment cursor stays in step.
        let mut rows: Vec<Vec<String>> = Vec::with_capacity(run.len());
        let mut verbatim: Vec<bool> = Vec::with_capacity(run.len());
        let mut trailing = Vec::with_capacity(run.len());
        let mut end = 0;
        for s in run {
            let v = self.has_comment_in(s.span());
            verbatim.push(v);
            rows.push(if v {
                vec![self.text(s.span()).to_string()]
            } else {
                self.columns(s)
            });
            if v {
                self.consume_until(s.span().end);
            }
            let e = s.span().end;
            let t = self.trailing_comment(e);
            if let Some(c) = t {
                self.next += 1;
                end = c.end;
            } else {
                end = e;
            }
            trailing.push(t);
        }
        let ncols = match kind {
            RunKind::Attr => 2,
            RunKind::Param => 3,
            RunKind::Step => 3,
        };
        let mut widths = vec![0usize; ncols];
        for (row, v) in rows.iter().zip(&verbatim) {
            if *v {
                continue;
            }
            // The last column is padded only when something follows it.
            for (c, cell) in row.iter().enumerate().take(ncols - 1) {
                let next_nonempty = row[c + 1..].iter().any(|s| !s.is_empty());
                if next_nonempty || c == 0 {
                    widths[c] = widths[c].max(cell.chars().count());
                }
            }
        }
        let mut lines: Vec<String> = Vec::with_capacity(rows.len());
        for (row, v) in rows.iter().zip(&verbatim) {
            if *v {
                lines.push(row[0].clone());
                continue;
            }
            let mut line = String::new();
            let last = row.iter().rposition(|s| !s.is_empty()).unwrap_or(0);
            for (c, cell) in row.iter().enumerate() {
                if c > last {
                    break;
                }
                line.push_str(cell);
                if c < last {
                    let pad = widths[c].saturating_sub(cell.chars().count());
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(separator(kind, c));
                }
            }
            lines.push(line);
        }
        // Trailing comments, aligned across the run.
        let cwidth = lines
            .iter()
            .zip(&trailing)
            .filter(|(_, t)| t.is_some())
            .map(|(l, _)| l.lines().last().map(|x| x.chars().count()).unwrap_or(0))
            .max()
            .unwrap_or(0);
        for (line, t) in lines.iter().zip(&trailing) {
            self.indent(level);
            self.out.push_str(line);
            if let Some(c) = t {
                let w = line.lines().last().map(|x| x.chars().count()).unwrap_or(0);
                self.out
                    .extend(std::iter::repeat_n(' ', cwidth.saturating_sub(w) + 2));
                self.out.push_str(self.comment_text(*c));
            }
            self.out.push('\n');
        }
        end
    }

    /// The aligned columns of one statement.
    fn columns(&self, s: &Stmt) -> Vec<String> {
        match s {
            Stmt::Attr(a) => vec![a.key.name.clone(), self.expr(&a.value)],
            Stmt::Param(p) => vec![
                format!("param {}", p.name.name),
                p.ty.name.clone(),
                p.default.as_ref().map(|d| self.expr(d)).unwrap_or_default(),
            ],
            Stmt::Step(st) => {
                let mods: Vec<String> = st.modifiers.iter().map(|m| self.modifier(m)).collect();
                vec![
                    format!("step {}", st.name.name),
                    self.call(&st.call),
                    mods.join(" "),
                ]
            }
            Stmt::Import(i) => vec![format!("import {}", self.text(i.path.span))],
            Stmt::Block(_) => vec![String::new()],
        }
    }

    fn modifier(&self, m: &Modifier) -> String {
        match m {
            Modifier::When(i, _) => format!("when {}", i.name),
            Modifier::Unless(i, _) => format!("unless {}", i.name),
            Modifier::Always(_) => "always".to_string(),
            Modifier::After(names, _) => format!(
                "after {}",
                names
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Modifier::Timeout(e, _) => format!("timeout {}", self.expr(e)),
            Modifier::Undo(c, _) => format!("undo {}", self.call(c)),
            Modifier::OnFailure(e, _) => format!("on_failure {}", self.expr(e)),
        }
    }

    /// Writes an import or a block; returns where it ended (trailing comment included).
    fn block_stmt(&mut self, s: Stmt, level: usize) -> u32 {
        match s {
            Stmt::Block(b) => self.block(&b, level),
            other => {
                let span = other.span();
                let line = if self.has_comment_in(span) {
                    let t = self.text(span).to_string();
                    self.consume_until(span.end);
                    t
                } else {
                    self.columns(&other).join(" ")
                };
                self.indent(level);
                self.out.push_str(&line);
                self.finish_line(span.end)
            }
        }
    }

    /// Ends the current line, with the trailing comment after `pos` if there is one.
    fn finish_line(&mut self, pos: u32) -> u32 {
        let end = if let Some(c) = self.trailing_comment(pos) {
            self.out.push_str("  ");
            self.out.push_str(self.comment_text(c));
            self.next += 1;
            c.end
        } else {
            pos
        };
        self.out.push('\n');
        end
    }

    fn block(&mut self, b: &Block, level: usize) -> u32 {
        let mut header = b.kind.name.clone();
        for l in &b.labels {
            header.push(' ');
            header.push_str(self.text(l.span()));
        }
        // Comments between the labels and the brace move above the block.
        self.leading_comments(b.open.start, level, b.span.start, true);
        let inner = Span {
            file: b.span.file,
            start: b.open.end,
            end: b.close.start,
        };
        let one_line = !self.text(b.span).contains('\n')
            && !self.has_comment_in(inner)
            && b.body.iter().all(|s| matches!(s, Stmt::Attr(_)));
        self.indent(level);
        self.out.push_str(&header);
        if b.body.is_empty() && !self.has_comment_in(inner) {
            self.out.push_str(" {}");
            return self.finish_line(b.span.end);
        }
        if one_line {
            let parts: Vec<String> = b.body.iter().map(|s| self.columns(s).join(" = ")).collect();
            self.out.push_str(" { ");
            self.out.push_str(&parts.join("  "));
            self.out.push_str(" }");
            return self.finish_line(b.span.end);
        }
        self.out.push_str(" {");
        let body_start = self.finish_line(b.open.end);
        self.stmts(&b.body, level + 1, b.close.start, body_start);
        self.indent(level);
        self.out.push('}');
        self.finish_line(b.span.end)
    }

    fn expr(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::List(items) => {
                let parts: Vec<String> = items.iter().map(|i| self.expr(i)).collect();
                format!("[{}]", parts.join(", "))
            }
            ExprKind::Call(c) => self.call(c),
            ExprKind::Then(parts) => parts
                .iter()
                .map(|p| self.expr(p))
                .collect::<Vec<_>>()
                .join(" then "),
            _ => self.text(e.span).to_string(),
        }
    }

    fn call(&self, c: &Call) -> String {
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| match &a.name {
                Some(n) => format!("{} = {}", n.name, self.expr(&a.value)),
                None => self.expr(&a.value),
            })
            .collect();
        format!("{}({})", c.name, args.join(", "))
    }
}

fn run_kind(s: &Stmt) -> Option<RunKind> {
    match s {
        Stmt::Attr(_) => Some(RunKind::Attr),
        Stmt::Param(_) => Some(RunKind::Param),
        Stmt::Step(_) => Some(RunKind::Step),
        _ => None,
    }
}

/// What stands between column `c` and the next in a run.
fn separator(kind: RunKind, c: usize) -> &'static str {
    match (kind, c) {
        (RunKind::Attr, _) => " = ",
        (RunKind::Param, 0) => " : ",
        (RunKind::Param, _) => " = ",
        (RunKind::Step, 0) => " = ",
        (RunKind::Step, _) => " ",
    }
}
