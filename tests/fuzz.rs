//! Property tests: random and mutated plans through parse, check and fmt.
//!
//! Guards: no input makes the front end panic; `fmt` is idempotent; and `fmt` preserves
//! meaning (the syntax tree of the formatted text equals the original's, spans aside).

use crate::support::root;
use dpplan::check::{self, Root};
use dpplan::diag::FileId;
use dpplan::syntax;
use proptest::prelude::*;

/// The syntax tree's debug form without spans: what the text means, not where it is.
fn shape(text: &str) -> Option<String> {
    let doc = syntax::parse(FileId(0), text).doc?;
    let dbg = format!("{doc:?}");
    let mut out = String::with_capacity(dbg.len());
    let mut rest = dbg.as_str();
    while let Some(i) = rest.find("Span {") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let close = after.find('}').expect("span closes");
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Checks the fmt properties for `text` (which must parse).
fn fmt_properties(text: &str) -> Result<(), TestCaseError> {
    let once = syntax::format(text).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let twice = syntax::format(&once).map_err(|e| {
        TestCaseError::fail(format!("formatted text does not parse: {e:?}\n{once}"))
    })?;
    prop_assert_eq!(&once, &twice, "fmt is not idempotent");
    prop_assert_eq!(
        shape(text),
        shape(&once),
        "fmt changed the meaning:\n{}",
        once
    );
    Ok(())
}

fn corpus() -> Vec<String> {
    let r = root();
    let mut files = Vec::new();
    for dir in ["plans", "stdlib", "tests/ui/valid", "tests/ui/invalid"] {
        for e in std::fs::read_dir(r.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "dpplan") {
                files.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    files.sort();
    files
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    "=",
    ":",
    "\"",
    "\\",
    "#",
    "\n",
    " ",
    "then",
    "retry(",
    "always",
    "when",
    "after",
    "undo",
    "step",
    "param",
    "import",
    "kind",
    "plan",
    "device",
    "activity",
    "on_failure",
    "1h30m",
    "500ms",
    "22:00",
    "99:99",
    "10%",
    "512MiB",
    "-1",
    "99999999999999999999",
    "all",
    "none",
    "\"x\"",
    "é",
    "\t",
    "store.discard()",
    "\"std/datapower\"",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize, usize),
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for e in edits {
        let n = s.len().max(1);
        match *e {
            Edit::Delete(at, len) => {
                let at = at % n;
                let end = (at + len % 40).min(s.len());
                if at < end {
                    s.drain(at..end);
                }
            }
            Edit::Insert(at, tok) => {
                let at = at % (s.len() + 1);
                let t: Vec<char> = TOKENS[tok % TOKENS.len()].chars().collect();
                s.splice(at..at, t);
            }
            Edit::Duplicate(from, len, to) => {
                let from = from % n;
                let end = (from + len % 60).min(s.len());
                let piece: Vec<char> = s[from.min(end)..end].to_vec();
                let to = to % (s.len() + 1);
                s.splice(to..to, piece);
            }
        }
    }
    s.into_iter().collect()
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Delete(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(a, b, c)| Edit::Duplicate(a, b, c)),
    ]
}

fn check_text(text: &str) {
    let checked = check::check(&Root::Text {
        name: "fuzz.dpplan".into(),
        text: text.to_string(),
        base: root().join("tests/ui/valid"),
    });
    // Every diagnostic points inside a loaded file.
    for d in &checked.diagnostics {
        if let Some(s) = d.span {
            let f = checked.sources.get(s.file);
            assert!(
                s.start <= s.end && (s.end as usize) <= f.text.len(),
                "{d:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_plans_never_panic_and_fmt_holds(seed in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
        let corpus = corpus();
        let text = apply(&corpus[seed % corpus.len()], &edits);
        check_text(&text);
        if syntax::parse(FileId(0), &text).doc.is_some() {
            fmt_properties(&text)?;
        }
    }

    #[test]
    fn random_text_never_panics(text in "[a-z{}\\[\\]()=,:\"#\\\\ \n0-9%.é_-]{0,200}") {
        check_text(&text);
        if syntax::parse(FileId(0), &text).doc.is_some() {
            fmt_properties(&text)?;
        }
    }
}

#[test]
fn fmt_holds_on_the_whole_corpus() {
    for text in corpus() {
        if syntax::parse(FileId(0), &text).doc.is_some() {
            fmt_properties(&text).unwrap();
        }
    }
}

#[test]
fn parallel_parse_equals_sequential_parse() {
    // Large files are parsed in chunks of top-level items on several threads; the result,
    // spans included, must be what one thread makes of the whole text. The corpus repeated
    // is well past the size where chunking starts, and holds comments, strings with braces
    // and escapes, and one-line blocks.
    let mut text = String::new();
    let corpus: Vec<String> = corpus()
        .into_iter()
        .filter(|t| syntax::parse_sequential(FileId(0), t).doc.is_some())
        .collect();
    while text.len() < 1_200_000 {
        for t in &corpus {
            text.push_str(t);
            text.push_str("\nsettings { x = \"}{#\\\"\" }  # } {\n");
        }
    }
    let seq = syntax::parse_sequential(FileId(0), &text);
    let par = syntax::parse(FileId(0), &text);
    assert!(seq.doc.is_some());
    assert_eq!(format!("{:?}", seq.doc), format!("{:?}", par.doc));
    assert_eq!(seq.diagnostics, par.diagnostics);
    // A syntax error anywhere is reported the same way too.
    let broken = text.replacen("settings { x", "settings { = x", 40);
    let seq = syntax::parse_sequential(FileId(0), &broken);
    let par = syntax::parse(FileId(0), &broken);
    assert!(seq.doc.is_none() && par.doc.is_none());
    assert_eq!(seq.diagnostics, par.diagnostics);
}

#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    // Runs on a test thread (2 MiB stack, unoptimised frames in debug builds): the deepest
    // nesting accepted must parse, check and format there; deeper is DP0001.
    let n = dpplan::syntax::MAX_NESTING - 1;
    let ok = format!("settings {{ x = {}{} }}\n", "[".repeat(n), "]".repeat(n));
    assert!(syntax::parse(FileId(0), &ok).doc.is_some());
    check_text(&ok);
    fmt_properties(&ok).unwrap();
    let deep = format!("settings {{ x = {} }}\n", "[(".repeat(50_000));
    let parsed = syntax::parse(FileId(0), &deep);
    assert!(parsed.doc.is_none());
    assert_eq!(parsed.diagnostics[0].code, dpplan::diag::Code::Syntax);
    assert!(parsed.diagnostics[0].message.contains("nest more than"));
    check_text(&deep);
}
