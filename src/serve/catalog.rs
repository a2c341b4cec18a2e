//! The plans `dpplan serve` runs: the plan files named on its command line (files, or every
//! `*.dpplan` file of a directory), each checked with its imports. A file that defines no
//! plan (a fleet file other plans import) adds nothing.

use crate::check::{self, Checked, Program};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One plan serve can run.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The plan's name.
    pub name: String,
    /// The file that defines it.
    pub file: PathBuf,
    /// The checked program of that file (with its imports).
    pub program: Arc<Program>,
    /// The text stored with each run (every source file).
    pub text: String,
    /// Warnings a run repeats in its log (certificate checks off, plain HTTP).
    pub warnings: Vec<String>,
}

/// Every plan, by name, and the problems of the last load.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The plans.
    pub plans: BTreeMap<String, Entry>,
    /// The problems of the last (re)load, by file: rendered diagnostics, or why the file
    /// could not be used. A plan of a file with problems keeps its previous version.
    pub problems: BTreeMap<PathBuf, String>,
}

/// A file rejected: its check result (for rendering) or a reason.
#[derive(Debug)]
pub enum Rejected {
    /// The file has errors.
    Errors(Box<Checked>),
    /// Something else is wrong: unreadable directory, a plan defined twice.
    Other(String),
}

/// The plan files under `paths`: files as named, and the `*.dpplan` files of directories
/// (not recursive), sorted; an error names a path that is neither.
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read the directory {}: {e}", p.display()))?;
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "dpplan"))
                .collect();
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    let mut absolute: Vec<PathBuf> = out
        .into_iter()
        .map(|f| std::path::absolute(&f).unwrap_or(f))
        .collect();
    absolute.dedup();
    Ok(absolute)
}

/// Loads the plans of `files`. `previous` is the catalog in use (a reload): the plans of a file
/// with problems keep their previous version. `warnings` picks a run's repeated warnings out
/// of a check result. Returns the catalog and the rejected files.
pub fn load(
    files: &[PathBuf],
    previous: Option<&Catalog>,
    warnings: &dyn Fn(&Checked) -> Vec<String>,
) -> (Catalog, Vec<(PathBuf, Rejected)>) {
    let mut catalog = Catalog::default();
    let mut rejected = Vec::new();
    let keep_old = |catalog: &mut Catalog, file: &Path| {
        if let Some(prev) = previous {
            for (name, e) in &prev.plans {
                if e.file == file {
                    catalog.plans.insert(name.clone(), e.clone());
                }
            }
        }
    };
    for file in files {
        let checked = check::check_file(file);
        if checked.has_errors() {
            keep_old(&mut catalog, file);
            rejected.push((file.clone(), Rejected::Errors(Box::new(checked))));
            continue;
        }
        let text = checked.stored_text();
        let repeated = warnings(&checked);
        let program = Arc::new(checked.program);
        let mut clash = None;
        for p in &program.plans {
            if let Some(other) = catalog.plans.get(&p.name).filter(|o| &o.file != file) {
                clash = Some(format!(
                    "plan \"{}\" is defined in {} and in {}; plan names must be unique",
                    p.name,
                    other.file.display(),
                    file.display()
                ));
            }
        }
        if let Some(why) = clash {
            keep_old(&mut catalog, file);
            rejected.push((file.clone(), Rejected::Other(why)));
            continue;
        }
        for p in &program.plans {
            catalog.plans.insert(
                p.name.clone(),
                Entry {
                    name: p.name.clone(),
                    file: file.clone(),
                    program: program.clone(),
                    text: text.clone(),
                    warnings: repeated.clone(),
                },
            );
        }
    }
    (catalog, rejected)
}

impl Entry {
    /// The checked plan.
    pub fn plan(&self) -> Option<&crate::check::Plan> {
        self.program.plan(&self.name)
    }
}
