//! Source text to [`Document`]: the pest parser and the lowering of its pairs.
//!
//! Lowering functions are named after the grammar rules they lower. Spans are copied out of
//! the pest pairs here, because pairs do not outlive the parse.

mod errors;
mod grammar;
mod literals;

use super::ast::*;
use crate::diag::{Code, Diagnostic, FileId, Span};
pub use errors::MAX_NESTING;
use errors::*;
use grammar::{Grammar, Rule};
pub use literals::{escape, parse_duration_ms, parse_size, unescape};
use pest::iterators::Pair;
use pest::Parser as _;

/// The outcome of parsing one file.
#[derive(Debug)]
pub struct Parsed {
    /// The document; `None` when the text has a syntax error.
    pub doc: Option<Document>,
    /// Syntax errors and literal problems (numbers out of range).
    pub diagnostics: Vec<Diagnostic>,
}

/// Files at least this large are parsed in parallel, one chunk of top-level items per core.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

/// Parses one file's text.
pub fn parse(file: FileId, text: &str) -> Parsed {
    if let Some(d) = too_deep(file, text) {
        return Parsed {
            doc: None,
            diagnostics: vec![d],
        };
    }
    if text.len() >= PARALLEL_MIN_BYTES {
        // At least two chunks even on one core, so the chunked path is always the one tested.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(2, 8);
        {
            if let Some(parsed) =
                split_points(text, threads).and_then(|cuts| parse_chunks(file, text, &cuts))
            {
                return parsed;
            }
        }
    }
    parse_sequential(file, text)
}

/// [`parse`] on the calling thread alone, whatever the size of the text.
pub fn parse_sequential(file: FileId, text: &str) -> Parsed {
    if let Some(d) = too_deep(file, text) {
        return Parsed {
            doc: None,
            diagnostics: vec![d],
        };
    }
    match parse_range(file, text, 0) {
        Ok((stmts, diagnostics)) => Parsed {
            doc: Some(Document { file, stmts }),
            diagnostics,
        },
        Err(err) => Parsed {
            doc: None,
            diagnostics: vec![syntax_error(file, text, &err)],
        },
    }
}

/// Parses `chunk`, a run of whole top-level items starting at byte `offset` of the file.
/// Statements and literal problems of one chunk.
type Lowered = (Vec<Stmt>, Vec<Diagnostic>);

fn parse_range(
    file: FileId,
    chunk: &str,
    offset: usize,
) -> Result<Lowered, Box<pest::error::Error<Rule>>> {
    let mut lower = Lower {
        file,
        text: chunk,
        offset,
        comments: comment_ranges(chunk),
        diagnostics: Vec::new(),
    };
    let mut pairs = Grammar::parse(Rule::file, chunk).map_err(Box::new)?;
    let stmts = pairs
        .next()
        .map(|file_pair| {
            file_pair
                .into_inner()
                .filter(|p| p.as_rule() != Rule::EOI)
                .map(|p| lower.stmt(p))
                .collect()
        })
        .unwrap_or_default();
    Ok((stmts, lower.diagnostics))
}

/// Parses the chunks between `cuts` on their own threads. `None` when any chunk fails: the
/// caller then parses the whole text again, so a syntax error is reported exactly as a
/// sequential parse reports it.
fn parse_chunks(file: FileId, text: &str, cuts: &[usize]) -> Option<Parsed> {
    let mut bounds = Vec::with_capacity(cuts.len() + 2);
    bounds.push(0);
    bounds.extend_from_slice(cuts);
    bounds.push(text.len());
    let results: Vec<Option<Lowered>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                scope.spawn(move || parse_range(file, &text[a..b], a).ok())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    let mut stmts = Vec::new();
    let mut diagnostics = Vec::new();
    for r in results {
        let (s, d) = r?;
        stmts.extend(s);
        diagnostics.extend(d);
    }
    Some(Parsed {
        doc: Some(Document { file, stmts }),
        diagnostics,
    })
}

/// Byte offsets that split `text` into about `parts` chunks of whole top-level items: each
/// just after a `}` that closes a top-level block (outside strings and comments). `None` when
/// the braces do not balance; the text then goes to the sequential parser for its error.
fn split_points(text: &str, parts: usize) -> Option<Vec<usize>> {
    let mut cuts = Vec::with_capacity(parts);
    let mut next_target = text.len() / parts;
    let mut depth = 0i64;
    for (i, b) in code_bytes(text) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
                if depth == 0 && i + 1 >= next_target {
                    cuts.push(i + 1);
                    if cuts.len() + 1 == parts {
                        break;
                    }
                    next_target = (cuts.len() + 1) * text.len() / parts;
                }
            }
            _ => {}
        }
    }
    (!cuts.is_empty()).then_some(cuts)
}

struct Lower<'t> {
    file: FileId,
    /// The text being parsed (a chunk of the file).
    text: &'t str,
    /// Where `text` starts in the file.
    offset: usize,
    /// Comment byte ranges, in order.
    comments: Vec<(u32, u32)>,
    diagnostics: Vec<Diagnostic>,
}

/// Byte ranges of every `#` comment (a `#` outside a string, to the end of its line).
pub(super) fn comment_ranges(src: &str) -> Vec<(u32, u32)> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'\n' => in_string = false,
            b'#' if !in_string => {
                let end = src[i..].find('\n').map(|n| i + n).unwrap_or(src.len());
                out.push((i as u32, end as u32));
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

impl Lower<'_> {
    /// The pair's span without the white space and comments pest lets rules end with.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        let bytes = self.text.as_bytes();
        let mut end = s.end();
        loop {
            while end > s.start() && bytes[end - 1].is_ascii_whitespace() {
                end -= 1;
            }
            // Inside or at the end of a comment: move before it.
            let i = self
                .comments
                .partition_point(|&(start, _)| (start as usize) < end);
            match i.checked_sub(1).map(|j| self.comments[j]) {
                Some((cs, ce)) if (ce as usize) >= end && (cs as usize) >= s.start() => {
                    end = cs as usize;
                }
                _ => break,
            }
        }
        Span::new(self.file, self.offset + s.start(), self.offset + end)
    }

    fn stmt(&mut self, pair: Pair<'_, Rule>) -> Stmt {
        match pair.as_rule() {
            Rule::import => Stmt::Import(self.import(pair)),
            Rule::param => Stmt::Param(self.param(pair)),
            Rule::step => Stmt::Step(self.step(pair)),
            Rule::attr => Stmt::Attr(self.attr(pair)),
            _ => Stmt::Block(self.block(pair)),
        }
    }

    fn import(&mut self, pair: Pair<'_, Rule>) -> Import {
        let span = self.span(&pair);
        let path = inner(pair)
            .next()
            .map(|p| self.string(p))
            .unwrap_or_else(|| StrLit {
                value: String::new(),
                span,
            });
        Import { path, span }
    }

    fn param(&mut self, pair: Pair<'_, Rule>) -> ParamDecl {
        let span = self.span(&pair);
        let mut inner = inner(pair);
        let name = self.next_ident(&mut inner, span);
        let ty = inner
            .next()
            .and_then(|p| p.into_inner().next())
            .map(|p| self.ident(p))
            .unwrap_or_else(|| Ident {
                name: String::new(),
                span,
            });
        let default = self.exprs(inner).pop();
        ParamDecl {
            name,
            ty,
            default,
            span,
        }
    }

    fn step(&mut self, pair: Pair<'_, Rule>) -> StepDecl {
        let span = self.span(&pair);
        let mut inner = inner(pair);
        let name = self.next_ident(&mut inner, span);
        let call = match inner.next() {
            Some(p) => self.call(p),
            None => Call {
                name: String::new(),
                name_span: span,
                args: Vec::new(),
                span,
            },
        };
        let modifiers = inner.map(|p| self.modifier(p)).collect();
        StepDecl {
            name,
            call,
            modifiers,
            span,
        }
    }

    fn modifier(&mut self, pair: Pair<'_, Rule>) -> Modifier {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = inner(pair);
        match rule {
            Rule::m_when => Modifier::When(self.next_ident(&mut inner, span), span),
            Rule::m_unless => Modifier::Unless(self.next_ident(&mut inner, span), span),
            Rule::m_always => Modifier::Always(span),
            Rule::m_after => Modifier::After(inner.map(|p| self.ident(p)).collect(), span),
            Rule::m_timeout => {
                let e = inner.next().map(|p| self.value(p));
                Modifier::Timeout(e.unwrap_or_else(|| empty_expr(span)), span)
            }
            Rule::m_undo => {
                let call = inner.next().map(|p| self.call(p));
                Modifier::Undo(
                    call.unwrap_or_else(|| Call {
                        name: String::new(),
                        name_span: span,
                        args: Vec::new(),
                        span,
                    }),
                    span,
                )
            }
            _ => {
                let e = self.exprs(inner).pop();
                Modifier::OnFailure(e.unwrap_or_else(|| empty_expr(span)), span)
            }
        }
    }

    fn attr(&mut self, pair: Pair<'_, Rule>) -> Attr {
        let span = self.span(&pair);
        let mut inner = inner(pair);
        let key = self.next_ident(&mut inner, span);
        let value = self.exprs(inner).pop().unwrap_or_else(|| empty_expr(span));
        Attr { key, value, span }
    }

    fn block(&mut self, pair: Pair<'_, Rule>) -> Block {
        let span = self.span(&pair);
        let mut inner = inner(pair);
        let kind = self.next_ident(&mut inner, span);
        let mut labels = Vec::new();
        let mut body = Vec::new();
        let mut close = Span::new(self.file, span.end as usize - 1, span.end as usize);
        let mut open = close;
        for p in inner {
            match p.as_rule() {
                Rule::string => labels.push(Label::Str(self.string(p))),
                Rule::ident => labels.push(Label::Ident(self.ident(p))),
                Rule::open_brace => open = self.span(&p),
                Rule::close_brace => close = self.span(&p),
                _ => body.push(self.stmt(p)),
            }
        }
        Block {
            kind,
            labels,
            body,
            span,
            open,
            close,
        }
    }

    /// Groups `value (kw_then value)*` sequences (the silent `expr` rule) into expressions.
    fn exprs<'i>(&mut self, pairs: impl Iterator<Item = Pair<'i, Rule>>) -> Vec<Expr> {
        let mut out: Vec<Expr> = Vec::new();
        let mut chained = false;
        for p in pairs {
            if p.as_rule() == Rule::kw_then {
                chained = true;
                continue;
            }
            let v = self.value(p);
            match out.last_mut() {
                Some(prev) if chained => {
                    let span = prev.span.to(v.span);
                    match &mut prev.kind {
                        ExprKind::Then(parts) => parts.push(v),
                        _ => {
                            let first = std::mem::replace(prev, empty_expr(span));
                            prev.kind = ExprKind::Then(vec![first, v]);
                        }
                    }
                    prev.span = span;
                }
                _ => out.push(v),
            }
            chained = false;
        }
        out
    }

    fn value(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        let text = pair.as_str();
        let kind = match pair.as_rule() {
            Rule::string => ExprKind::Str(self.string(pair).value),
            Rule::integer => match text.parse::<i64>() {
                Ok(n) => ExprKind::Int(n),
                Err(_) => {
                    self.out_of_range(span, "integer");
                    ExprKind::Int(0)
                }
            },
            Rule::boolean => ExprKind::Bool(text == "true"),
            Rule::duration => match parse_duration_ms(text) {
                Some(ms) => ExprKind::Duration(ms),
                None => {
                    self.out_of_range(span, "duration");
                    ExprKind::Duration(0)
                }
            },
            Rule::size => match parse_size(text) {
                Some(b) => ExprKind::Size(b),
                None => {
                    self.out_of_range(span, "size");
                    ExprKind::Size(0)
                }
            },
            Rule::percent => match text.trim_end_matches('%').parse::<u64>() {
                Ok(n) => ExprKind::Percent(n),
                Err(_) => {
                    self.out_of_range(span, "percentage");
                    ExprKind::Percent(0)
                }
            },
            Rule::time => {
                let (h, m) = text.split_once(':').unwrap_or((text, "0"));
                ExprKind::Time {
                    hour: h.parse().unwrap_or(99),
                    minute: m.parse().unwrap_or(99),
                }
            }
            Rule::list => ExprKind::List(self.exprs(inner(pair))),
            Rule::call => ExprKind::Call(self.call(pair)),
            _ => ExprKind::Ident(text.to_string()),
        };
        Expr { kind, span }
    }

    fn call(&mut self, pair: Pair<'_, Rule>) -> Call {
        let span = self.span(&pair);
        let mut inner = inner(pair);
        let (name, name_span) = match inner.next() {
            Some(p) => (p.as_str().to_string(), self.span(&p)),
            None => (String::new(), span),
        };
        let args = inner.map(|p| self.arg(p)).collect();
        Call {
            name,
            name_span,
            args,
            span,
        }
    }

    fn arg(&mut self, pair: Pair<'_, Rule>) -> Arg {
        let span = self.span(&pair);
        let mut children = inner(pair).peekable();
        if children
            .peek()
            .is_some_and(|p| p.as_rule() == Rule::named_arg)
        {
            let Some(named) = children.next() else {
                return Arg {
                    name: None,
                    value: empty_expr(span),
                    span,
                };
            };
            let mut inner = inner(named);
            let name = self.next_ident(&mut inner, span);
            let value = self.exprs(inner).pop().unwrap_or_else(|| empty_expr(span));
            Arg {
                name: Some(name),
                value,
                span,
            }
        } else {
            Arg {
                name: None,
                value: self
                    .exprs(children)
                    .pop()
                    .unwrap_or_else(|| empty_expr(span)),
                span,
            }
        }
    }

    fn string(&mut self, pair: Pair<'_, Rule>) -> StrLit {
        let span = self.span(&pair);
        let text = pair.as_str();
        let body = text.get(1..text.len().saturating_sub(1)).unwrap_or("");
        StrLit {
            value: unescape(body),
            span,
        }
    }

    fn ident(&mut self, pair: Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn next_ident<'i>(
        &mut self,
        inner: &mut impl Iterator<Item = Pair<'i, Rule>>,
        span: Span,
    ) -> Ident {
        inner.next().map(|p| self.ident(p)).unwrap_or(Ident {
            name: String::new(),
            span,
        })
    }

    fn out_of_range(&mut self, span: Span, what: &str) {
        self.diagnostics.push(
            Diagnostic::new(Code::OutOfRange, span, format!("this {what} is too large"))
                .label("out of range")
                .help("use a smaller value"),
        );
    }
}

/// A pair's children without the keyword tokens.
fn inner(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner().filter(|p| {
        !matches!(
            p.as_rule(),
            Rule::kw_import
                | Rule::kw_param
                | Rule::kw_step
                | Rule::kw_when
                | Rule::kw_unless
                | Rule::kw_always
                | Rule::kw_after
                | Rule::kw_timeout
                | Rule::kw_undo
                | Rule::kw_on_failure
        )
    })
}

fn empty_expr(span: Span) -> Expr {
    Expr {
        kind: ExprKind::Ident(String::new()),
        span,
    }
}
