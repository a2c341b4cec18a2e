//! Helpers shared by the rule groups: splitting a block body into attributes and blocks,
//! typed value readers that report wrong types, and "did you mean" suggestions.

use crate::diag::{Code, Diagnostic, Sink, Span};
use crate::syntax::{Attr, Block, Expr, ExprKind, Stmt};

/// A block body sorted into attributes (first occurrence of each key) and nested blocks.
pub struct Body<'a> {
    attrs: Vec<&'a Attr>,
    taken: Vec<bool>,
    /// Nested blocks, in order.
    pub blocks: Vec<&'a Block>,
}

impl<'a> Body<'a> {
    /// Splits `stmts`; reports duplicate attributes and statements that belong elsewhere.
    pub fn split(stmts: &'a [Stmt], context: &str, sink: &mut Sink) -> Body<'a> {
        Self::split_with(stmts, context, false, sink)
    }

    /// Like [`Body::split`]; with `decls`, `param` and `step` statements are left to the
    /// caller (kinds declare them).
    pub fn split_with(stmts: &'a [Stmt], context: &str, decls: bool, sink: &mut Sink) -> Body<'a> {
        let mut attrs: Vec<&'a Attr> = Vec::new();
        let mut blocks = Vec::new();
        for s in stmts {
            match s {
                Stmt::Attr(a) => {
                    if let Some(first) = attrs.iter().find(|f| f.key.name == a.key.name) {
                        sink.push(
                            Diagnostic::new(
                                Code::DuplicateAttribute,
                                a.key.span,
                                format!("`{}` is set twice in {context}", a.key.name),
                            )
                            .label("set again here")
                            .also(first.key.span, "first set here")
                            .help("remove one of them"),
                        );
                    } else {
                        attrs.push(a);
                    }
                }
                Stmt::Block(b) => blocks.push(b),
                Stmt::Import(i) => sink.push(
                    Diagnostic::new(
                        Code::UnknownBlock,
                        i.span,
                        format!("`import` is not allowed in {context}"),
                    )
                    .label("not allowed here")
                    .help("imports go at the top level of a file"),
                ),
                Stmt::Param(_) | Stmt::Step(_) if decls => {}
                Stmt::Param(p) => sink.push(
                    Diagnostic::new(
                        Code::UnknownBlock,
                        p.span,
                        format!("`param` is not allowed in {context}"),
                    )
                    .label("not allowed here")
                    .help("parameters are declared inside `kind` blocks"),
                ),
                Stmt::Step(st) => sink.push(
                    Diagnostic::new(
                        Code::UnknownBlock,
                        st.span,
                        format!("`step` is not allowed in {context}"),
                    )
                    .label("not allowed here")
                    .help("steps are declared inside `kind` blocks"),
                ),
            }
        }
        let taken = vec![false; attrs.len()];
        Body {
            attrs,
            taken,
            blocks,
        }
    }

    /// Takes the attribute `key`, if present.
    pub fn take(&mut self, key: &str) -> Option<&'a Attr> {
        let i = self.attrs.iter().position(|a| a.key.name == key)?;
        self.taken[i] = true;
        Some(self.attrs[i])
    }

    /// The attributes not taken yet.
    pub fn rest(&self) -> impl Iterator<Item = &'a Attr> + '_ {
        self.attrs
            .iter()
            .zip(&self.taken)
            .filter(|(_, t)| !**t)
            .map(|(a, _)| *a)
    }

    /// Reports every attribute not taken as unknown in `context`.
    pub fn finish(&self, context: &str, known: &[&str], sink: &mut Sink) {
        for a in self.rest() {
            sink.push(unknown_attribute(a, context, known));
        }
    }
}

/// DP0005 for `a`, with a suggestion from `known`.
pub fn unknown_attribute(a: &Attr, context: &str, known: &[&str]) -> Diagnostic {
    let help = match suggest(&a.key.name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("{context} takes no attributes"),
        None => format!("{context} takes: {}", known.join(", ")),
    };
    let hint_block = matches!(
        a.key.name.as_str(),
        "window" | "defaults" | "device" | "activity" | "on_failure_block"
    );
    let help = if hint_block {
        format!(
            "`{}` is a block: write `{} {{ ... }}`",
            a.key.name, a.key.name
        )
    } else {
        help
    };
    Diagnostic::new(
        Code::UnknownAttribute,
        a.key.span,
        format!("unknown attribute `{}` in {context}", a.key.name),
    )
    .label("unknown attribute")
    .help(help)
}

/// DP0004 for a block that does not belong where it is.
pub fn unknown_block(b: &Block, context: &str, known: &[&str]) -> Diagnostic {
    let help = match suggest(&b.kind.name, known.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None if known.is_empty() => format!("{context} holds no blocks"),
        None => format!("{context} holds: {}", known.join(", ")),
    };
    Diagnostic::new(
        Code::UnknownBlock,
        b.kind.span,
        format!("unknown block `{}` in {context}", b.kind.name),
    )
    .label("unknown block")
    .help(help)
}

/// The span of a block's header: its kind and labels.
pub fn header_span(b: &Block) -> Span {
    let mut s = b.kind.span;
    if let Some(l) = b.labels.last() {
        s = s.to(l.span());
    }
    s
}

/// DP0008: `e` should have been `expected`.
pub fn wrong_type(e: &Expr, expected: &str, what: &str) -> Diagnostic {
    Diagnostic::new(
        Code::WrongType,
        e.span,
        format!("{what} must be {expected}, found {}", e.kind.describe()),
    )
    .label(format!("expected {expected}"))
    .help(type_help(expected))
}

fn type_help(expected: &str) -> String {
    match expected {
        "a boolean" => "write true or false".into(),
        "a duration" => "write a duration such as 30s, 5m or 1h30m".into(),
        "a size" => "write a size such as 512MiB or 20GiB".into(),
        "a size or a percentage" => {
            "write a size such as 20GiB, or a percentage such as 10%".into()
        }
        "an integer" => "write a whole number such as 8".into(),
        "a string" => "write a string in double quotes".into(),
        "a clock time" => "write a clock time such as 22:00".into(),
        "a script" => "write script(\"path/to/script.sh\")".into(),
        _ => format!("write {expected}"),
    }
}

/// Reads a boolean.
pub fn boolean(e: &Expr, what: &str, sink: &mut Sink) -> Option<bool> {
    match e.kind {
        ExprKind::Bool(b) => Some(b),
        _ => {
            sink.push(wrong_type(e, "a boolean", what));
            None
        }
    }
}

/// Reads a string.
pub fn string<'e>(e: &'e Expr, what: &str, sink: &mut Sink) -> Option<&'e str> {
    match &e.kind {
        ExprKind::Str(s) => Some(s),
        _ => {
            sink.push(wrong_type(e, "a string", what));
            None
        }
    }
}

/// Reads a duration in milliseconds.
pub fn duration(e: &Expr, what: &str, sink: &mut Sink) -> Option<u64> {
    match e.kind {
        ExprKind::Duration(ms) => Some(ms),
        _ => {
            sink.push(wrong_type(e, "a duration", what));
            None
        }
    }
}

/// Reads a size in bytes.
pub fn size(e: &Expr, what: &str, sink: &mut Sink) -> Option<u64> {
    match e.kind {
        ExprKind::Size(b) => Some(b),
        _ => {
            sink.push(wrong_type(e, "a size", what));
            None
        }
    }
}

/// Reads an integer within `min..=max`.
pub fn integer(e: &Expr, what: &str, min: i64, max: i64, sink: &mut Sink) -> Option<i64> {
    match e.kind {
        ExprKind::Int(n) if n < min || n > max => {
            let range = if max == i64::MAX {
                format!("at least {min}")
            } else {
                format!("between {min} and {max}")
            };
            sink.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    e.span,
                    format!("{what} must be {range}, found {n}"),
                )
                .label("out of range")
                .help(format!("use a value {range}")),
            );
            None
        }
        ExprKind::Int(n) => Some(n),
        _ => {
            sink.push(wrong_type(e, "an integer", what));
            None
        }
    }
}

/// Reads one pattern or a list of patterns (strings).
pub fn patterns(e: &Expr, what: &str, sink: &mut Sink) -> Option<Vec<(String, Span)>> {
    match &e.kind {
        ExprKind::Str(s) => Some(vec![(s.clone(), e.span)]),
        ExprKind::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for i in items {
                match &i.kind {
                    ExprKind::Str(s) => out.push((s.clone(), i.span)),
                    _ => {
                        sink.push(wrong_type(i, "a string", &format!("each of {what}")));
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        _ => {
            sink.push(wrong_type(e, "a string or a list of strings", what));
            None
        }
    }
}

/// The closest candidate to `word`, if close enough to be a plausible typo.
pub fn suggest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("max_paralel", ["max_parallel", "quiesce_grace"]),
            Some("max_parallel")
        );
        assert_eq!(suggest("zzz", ["max_parallel"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
