//! The docs are tested like code: every example in a diagnostics page triggers its code (and
//! nothing else), and every dpplan block of the language reference parses.

use crate::support::{root, Test};
use dpplan::diag::Code;

/// The ```dpplan blocks of a Markdown text.
fn dpplan_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = md;
    while let Some(i) = rest.find("```dpplan\n") {
        let body = &rest[i + 10..];
        let end = body.find("```").expect("block closes");
        out.push(body[..end].to_string());
        rest = &body[end..][3..];
    }
    out
}

#[test]
fn each_diagnostic_page_example_triggers_its_code() {
    for code in Code::ALL {
        // DP0003's example is two files that import each other; tests/ui covers it.
        if *code == Code::ImportCycle {
            continue;
        }
        let page = code.page();
        let example_at = page.find("## Example").expect("example section");
        let example = dpplan_blocks(&page[example_at..])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{code}: no dpplan block in its example"));
        let mut t = Test::new().file("example.dpplan", &example);
        if *code == Code::ScriptNotExecutable {
            // The page's example names a script that exists without its executable bit.
            t = t.file("scripts/post-plan.sh", "#!/bin/sh\n");
        }
        if *code == Code::UnreadableFile {
            std::fs::write(t.path().join("latin1.dpplan"), b"plan \"caf\xe9\" {}\n").unwrap();
        }
        if *code == Code::WhenNotAllowed {
            t = t.script("scripts/pre-plan.sh", "#!/bin/sh\n");
        }
        let ran = t
            .args(["check", "--format", "json", "example.dpplan"])
            .run();
        let codes: Vec<String> = ran
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["code"].as_str().unwrap().to_string())
            .collect();
        assert!(
            !codes.is_empty() && codes.iter().all(|c| c == code.as_str()),
            "{code}'s example gives {codes:?}\n{example}"
        );
    }
}

#[test]
fn language_reference_examples_parse() {
    let md = std::fs::read_to_string(root().join("docs/language.md")).unwrap();
    let blocks = dpplan_blocks(&md);
    assert!(blocks.len() >= 15, "{} examples", blocks.len());
    for b in blocks {
        assert!(dpplan::syntax::format(&b).is_ok(), "does not parse:\n{b}");
    }
}
