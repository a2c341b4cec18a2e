//! Golden tests for diagnostics (STYLE.md habit 7).
//!
//! Each `tests/ui/invalid/NAME.dpplan` is checked by the real binary; what it prints to
//! stderr must equal `NAME.stderr` beside it, and its exit status must be 1 (0 for plans that
//! only warn). The file name starts with the code it is about, and that code must appear.
//! Every plan in `tests/ui/valid/` must check clean. All mismatches are reported at once.
//! `DPPLAN_BLESS=1 cargo test ui` rewrites the expected files; review the diff.

use crate::support::golden::Golden;
use crate::support::{root, Test};
use dpplan::diag::{Code, Severity};
use std::path::{Path, PathBuf};

fn plans_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ui folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dpplan"))
        .collect();
    v.sort();
    v
}

#[test]
fn invalid_plans_render_their_golden_diagnostics() {
    let ui = root().join("tests/ui");
    let mut g = Golden::new();
    let cases = plans_in(&ui.join("invalid"));
    assert!(cases.len() >= 60, "only {} invalid plans", cases.len());
    for plan in &cases {
        let name = plan.file_stem().unwrap().to_string_lossy().to_string();
        let rel = format!("invalid/{name}.dpplan");
        let ran = Test::new().cwd(&ui).args(["check", &rel]).run();
        let warns_only = Code::parse(&name[..name.len().min(6)])
            .is_some_and(|c| c.severity() == Severity::Warning);
        let want_status = if warns_only { 0 } else { 1 };
        if ran.status != want_status {
            g.fail(format!("{rel}: exit {} (wanted {want_status})", ran.status));
        }
        if let Some(code) = Code::parse(&name[..name.len().min(6)]) {
            if !ran.stderr.contains(code.as_str()) {
                g.fail(format!("{rel}: output does not mention {code}"));
            }
        }
        g.check(&plan.with_extension("stderr"), &rel, &ran.stderr);
    }
    g.assert_all();
}

#[test]
fn valid_plans_check_clean() {
    let ui = root().join("tests/ui");
    let cases = plans_in(&ui.join("valid"));
    assert!(cases.len() >= 4);
    for plan in cases {
        let rel = format!("valid/{}", plan.file_name().unwrap().to_string_lossy());
        Test::new()
            .cwd(&ui)
            .args(["check", "--deny-warnings", &rel])
            .run()
            .status(0)
            .stderr_has("no problems");
    }
}

#[test]
fn every_code_has_a_page_and_a_golden_test() {
    let names: Vec<String> = plans_in(&root().join("tests/ui/invalid"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for code in Code::ALL {
        let page = code.page();
        let title = format!("# {}: {}", code.as_str(), code.title());
        assert!(
            page.starts_with(&title),
            "docs/diagnostics/{code}.md must start with {title:?}"
        );
        assert!(page.contains("## Example"), "{code}.md has no example");
        assert!(
            names.iter().any(|n| n.starts_with(code.as_str())),
            "no tests/ui/invalid/{code}-*.dpplan"
        );
    }
}
