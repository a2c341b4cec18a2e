//! Golden files: what a test produced, compared with a file in the repository; with
//! `DPPLAN_BLESS=1` set, written into it instead (review the diff before committing). One
//! helper for every golden test (report pages, diagnostics, SOMA requests).

use std::path::Path;

/// Collects the differences of several golden comparisons, to report them all at once.
#[derive(Debug, Default)]
pub struct Golden {
    bless: bool,
    failures: Vec<String>,
}

impl Golden {
    /// Comparing, or blessing when `DPPLAN_BLESS` is set.
    pub fn new() -> Golden {
        Golden {
            bless: std::env::var_os("DPPLAN_BLESS").is_some(),
            failures: Vec::new(),
        }
    }

    /// Whether the files are being rewritten.
    pub fn blessing(&self) -> bool {
        self.bless
    }

    /// Records a failure that is not a difference (a wrong exit status...).
    pub fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    /// Compares `actual` with the file at `path` (`label` names it in the report), or
    /// writes it there when blessing.
    pub fn check(&mut self, path: &Path, label: &str, actual: &str) {
        if self.bless {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(path, actual).unwrap();
            return;
        }
        match std::fs::read_to_string(path) {
            Ok(want) if want == actual => {}
            Ok(want) => self.failures.push(format!(
                "{label}: output differs from {}\n{}",
                path.display(),
                similar::TextDiff::from_lines(want.as_str(), actual)
                    .unified_diff()
                    .header("expected", "actual")
            )),
            Err(_) => self.failures.push(format!(
                "{label}: no {} (run with DPPLAN_BLESS=1)",
                path.display()
            )),
        }
    }

    /// Fails with every difference found.
    #[track_caller]
    pub fn assert_all(self) {
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}
