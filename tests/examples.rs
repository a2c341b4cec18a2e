//! Every example is a test (STYLE.md habit 10): each plan in plans/ and the stdlib checks
//! clean (no warnings either) and is already in canonical format.

use crate::support::{root, Test};

#[test]
fn plans_and_stdlib_check_clean_and_are_canonical() {
    let r = root();
    let mut files: Vec<_> = std::fs::read_dir(r.join("plans"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dpplan"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "plans/ holds {} plans", files.len());
    files.push(r.join("stdlib/datapower.dpplan"));
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert_eq!(
            dpplan::syntax::format(&text).expect("parses"),
            text,
            "{} is not canonical: run dpplan fmt",
            f.display()
        );
        let checked = dpplan::check::check_file(f);
        let diagnostics = crate::support::without_missing_secrets(checked.diagnostics);
        assert!(
            diagnostics.is_empty(),
            "{}: {:#?}",
            f.display(),
            diagnostics
        );
    }
    // Through the binary too: nothing but the secrets and CA files this machine lacks.
    let ran = Test::new()
        .cwd(&r)
        .args(["check", "--format", "json", "plans"])
        .run()
        .status(0);
    for d in ran.json().as_array().unwrap() {
        assert_eq!(d["code"], "DP0041", "{d}");
    }
}
