//! Syntax errors for people: grammar rules named as users know them, and the common mistakes
//! (a bad escape, an unclosed brace, nesting too deep) found before pest's message.

use super::grammar::Rule;
use crate::diag::{Code, Diagnostic, FileId, Span};
use pest::error::{ErrorVariant, InputLocation};

/// Whether the string starting `line` holds an escape the grammar does not know.
pub(super) fn has_bad_escape(line: &str) -> bool {
    let mut chars = line.chars().skip(1);
    while let Some(c) = chars.next() {
        match c {
            '"' => return false,
            '\\' => match chars.next() {
                Some('"' | '\\' | 'n' | 't') => {}
                _ => return true,
            },
            _ => {}
        }
    }
    false
}

/// The byte offset of the innermost `{` never closed (outside strings and comments).
pub(super) fn unclosed_brace(text: &str) -> Option<usize> {
    let mut stack = Vec::new();
    for (i, b) in code_bytes(text) {
        match b {
            b'{' => stack.push(i),
            b'}' => {
                stack.pop();
            }
            _ => {}
        }
    }
    stack.pop()
}

/// The bytes of `text` that are code: outside strings and comments, with their offsets.
/// Quotes themselves are left out too. Strings end at a newline, as the grammar wants.
pub(super) fn code_bytes(text: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let bytes = text.as_bytes();
    let (mut in_string, mut in_comment, mut escaped) = (false, false, false);
    bytes.iter().enumerate().filter_map(move |(i, &b)| {
        if in_comment {
            in_comment = b != b'\n';
            return None;
        }
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' | b'\n' => in_string = false,
                _ => {}
            }
            return None;
        }
        match b {
            b'#' => {
                in_comment = true;
                None
            }
            b'"' => {
                in_string = true;
                None
            }
            _ => Some((i, b)),
        }
    })
}

/// How deeply blocks, lists and calls may nest. Real plans nest four or five levels; the
/// bound keeps the recursive parser and lowering far from the end of any thread's stack.
pub const MAX_NESTING: usize = 64;

/// A diagnostic for the first bracket that nests deeper than [`MAX_NESTING`].
pub(super) fn too_deep(file: FileId, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (i, b) in code_bytes(text) {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(
                        Diagnostic::new(
                            Code::Syntax,
                            Span::new(file, i, i + 1),
                            format!(
                                "blocks, lists and calls nest more than {MAX_NESTING} deep here"
                            ),
                        )
                        .label("too deep")
                        .help("a plan needs only a few levels; look for unclosed brackets"),
                    );
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// What users call each grammar rule.
pub(super) fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::import | Rule::param | Rule::step | Rule::attr | Rule::block => {
            "a statement such as `key = value` or `name { ... }`"
        }
        Rule::close_brace => "`}`",
        Rule::open_brace => "`{`",
        Rule::string => "a string such as \"QA*\"",
        Rule::duration => "a duration such as 30s",
        Rule::size => "a size such as 512MiB",
        Rule::percent => "a percentage such as 10%",
        Rule::time => "a clock time such as 22:00",
        Rule::integer => "an integer",
        Rule::boolean => "true or false",
        Rule::list => "a list such as [a, b]",
        Rule::call | Rule::path => "a call such as script(\"x.sh\")",
        Rule::ident | Rule::type_name => "a name",
        Rule::arg | Rule::named_arg => "a value",
        Rule::m_when
        | Rule::m_unless
        | Rule::m_always
        | Rule::m_after
        | Rule::m_timeout
        | Rule::m_undo
        | Rule::m_on_failure => {
            "a step modifier (when, unless, always, after, timeout, undo, on_failure)"
        }
        Rule::kw_then => "`then`",
        Rule::kw_when
        | Rule::kw_unless
        | Rule::kw_always
        | Rule::kw_after
        | Rule::kw_timeout
        | Rule::kw_undo
        | Rule::kw_on_failure => {
            "a step modifier (when, unless, always, after, timeout, undo, on_failure)"
        }
        Rule::kw_import | Rule::kw_param | Rule::kw_step => {
            "a statement such as `key = value` or `name { ... }`"
        }
        Rule::EOI => "end of file",
        _ => return None,
    })
}

pub(super) fn syntax_error(file: FileId, text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    // Point at the whole offending token, not one byte.
    let rest = &text[pos.min(text.len())..];
    let len = if rest.is_empty() {
        0
    } else if rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') {
        let number = rest.starts_with(|c: char| c.is_ascii_digit());
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '%' || (number && c == '.')))
            .unwrap_or(rest.len())
    } else {
        rest.chars().next().map(char::len_utf8).unwrap_or(0)
    };
    let found = if rest.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{}`", &rest[..len])
    };
    let span = Span::new(file, pos, pos + len);
    let (message, label) = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let value_rules = [
                Rule::string,
                Rule::duration,
                Rule::size,
                Rule::percent,
                Rule::time,
                Rule::integer,
                Rule::boolean,
                Rule::list,
                Rule::call,
                Rule::path,
            ];
            let values = positives.iter().filter(|r| value_rules.contains(r)).count();
            let mut names: Vec<&str> = if values >= 3 {
                // The silent `expr` rule shows up as every kind of value: name it once.
                let mut v = vec!["a value such as \"text\", 30s, 512MiB, 22:00, [a, b] or a name"];
                v.extend(
                    positives
                        .iter()
                        .filter(|r| !value_rules.contains(r) && **r != Rule::ident)
                        .filter_map(|r| rule_name(*r)),
                );
                v
            } else {
                positives.iter().filter_map(|r| rule_name(*r)).collect()
            };
            names.dedup();
            let mut seen = std::collections::HashSet::new();
            names.retain(|n| seen.insert(*n));
            let expected = match names.as_slice() {
                [] => "something else".to_string(),
                [one] => (*one).to_string(),
                [init @ .., last] => format!("{} or {}", init.join(", "), last),
            };
            (
                format!("unexpected {found}: expected {expected}"),
                format!("expected {expected}"),
            )
        }
        ErrorVariant::CustomError { message } => (message.clone(), message.clone()),
    };
    let line_rest = rest.split('\n').next().unwrap_or("");
    let token = &rest[..len];
    let help = if rest.starts_with('"') && !line_rest[1..].contains('"') {
        "a string must close with `\"` on the same line".to_string()
    } else if rest.starts_with('"') && has_bad_escape(line_rest) {
        "strings know only the escapes \\\" \\\\ \\n \\t".to_string()
    } else if rest.is_empty() {
        "a block may be missing its closing `}`".to_string()
    } else if token.starts_with(|c: char| c.is_ascii_digit()) && token.contains('.') {
        "numbers are whole: write 2, or a duration such as 1500ms".to_string()
    } else if token.starts_with(|c: char| c.is_ascii_digit()) && token.contains(char::is_alphabetic)
    {
        "durations use ms, s, m, h, d (30s, 1h30m); sizes use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
            .to_string()
    } else {
        "see docs/language.md for the syntax".to_string()
    };
    // At the end of the file, the useful place to point at is the block left open.
    if rest.trim().is_empty() {
        if let Some(open) = unclosed_brace(text) {
            return Diagnostic::new(
                Code::Syntax,
                Span::new(file, open, open + 1),
                "unexpected end of file: a block is never closed",
            )
            .label("this `{` has no matching `}`")
            .help("add the missing `}`");
        }
    }
    Diagnostic::new(Code::Syntax, span, message)
        .label(label)
        .help(help)
}
