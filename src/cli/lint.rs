//! `dpplan check`, `dpplan fmt` and `dpplan explain`.

use super::render::{self, Human};
use super::{color_stderr, Format, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE};
use crate::check;
use crate::diag::{Code, Severity, SourceMap};
use crate::syntax;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Expands directories into the `.dpplan` files below them, sorted.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "dpplan") {
            out.push(path);
        }
    }
    Ok(())
}

/// `dpplan check`: exit 0 clean (warnings allowed), 1 errors (or warnings when denied).
pub fn check(paths: &[PathBuf], format: Format, deny_warnings: bool) -> u8 {
    let files = match expand(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let color = color_stderr();
    let mut json_results = Vec::new();
    let mut seen = HashSet::new();
    let (mut errors, mut warnings) = (0usize, 0usize);
    let mut stderr = std::io::stderr().lock();
    for file in &files {
        let checked = check::check_file(file);
        let root = file.display().to_string();
        let human = (format == Format::Human && !checked.diagnostics.is_empty())
            .then(|| Human::new(&checked.sources, color));
        for d in &checked.diagnostics {
            // A file imported by several roots reports its problems once.
            let key = (
                d.span.map(|s| checked.sources.get(s.file).name.clone()),
                d.span.map(|s| (s.start, s.end)),
                d.code,
                d.message.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            match d.severity() {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            match &human {
                Some(h) => {
                    let _ = write!(stderr, "{}", h.render(d));
                }
                None => json_results.push(render::json_object(&checked.sources, d, &root)),
            }
        }
        // The process ends soon: freeing a large program node by node costs more than the
        // check of a clean plan, and the operating system reclaims it at once.
        std::mem::forget(checked);
    }
    let out = match format {
        Format::Human => None,
        Format::Json => Some(serde_json::Value::Array(json_results)),
        Format::Sarif => Some(render::sarif(&json_results)),
    };
    if let Some(v) = out {
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        let written = super::out(&format!("{text}\n"));
        if written != EXIT_OK {
            return written;
        }
    } else {
        let summary = summary(files.len(), errors, warnings);
        let _ = writeln!(stderr, "{summary}");
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

fn summary(files: usize, errors: usize, warnings: usize) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    if errors == 0 && warnings == 0 {
        format!("{} checked: no problems", plural(files, "file"))
    } else {
        format!(
            "{} checked: {}, {}",
            plural(files, "file"),
            plural(errors, "error"),
            plural(warnings, "warning")
        )
    }
}

/// `dpplan fmt`: rewrite in place, or with `--check` report what is not canonical.
pub fn fmt(paths: &[PathBuf], check_only: bool) -> u8 {
    if paths.len() == 1 && paths[0].as_os_str() == "-" {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: cannot read stdin: {e}");
            return EXIT_INTERNAL;
        }
        return match format_text("<stdin>", &text) {
            Some(out) => {
                if check_only && out != text {
                    print_diff("<stdin>", &text, &out);
                    return EXIT_FAILED;
                }
                if check_only {
                    return EXIT_OK;
                }
                super::out(&out)
            }
            None => EXIT_FAILED,
        };
    }
    let files = match expand(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut code = EXIT_OK;
    for file in &files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot read {name}: {e}");
                code = EXIT_FAILED;
                continue;
            }
        };
        let Some(out) = format_text(&name, &text) else {
            code = EXIT_FAILED;
            continue;
        };
        if out == text {
            continue;
        }
        if check_only {
            print_diff(&name, &text, &out);
            code = EXIT_FAILED;
        } else if let Err(e) = write_atomic(file, out.as_bytes()) {
            eprintln!("error: cannot write {name}: {e}");
            code = EXIT_INTERNAL;
        } else {
            eprintln!("formatted {name}");
        }
    }
    code
}

/// Formats `text`; on syntax errors renders them and returns `None`.
fn format_text(name: &str, text: &str) -> Option<String> {
    match syntax::format(text) {
        Ok(out) => Some(out),
        Err(diags) => {
            let mut sources = SourceMap::new();
            sources.add(crate::diag::SourceFile::new(name, None, text));
            let h = Human::new(&sources, color_stderr());
            for d in &diags {
                eprint!("{}", h.render(d));
            }
            None
        }
    }
}

fn print_diff(name: &str, old: &str, new: &str) {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string();
    print!("{text}");
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, and renames it over `path`,
/// so a crash leaves either the old file or the new one.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.dpplan-fmt.tmp"));
    let perms = std::fs::metadata(path).map(|m| m.permissions()).ok();
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Some(p) = perms {
            std::fs::set_permissions(&tmp, p)?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dpplan explain CODE`, or the list of codes.
pub fn explain(code: Option<&str>) -> u8 {
    match code {
        None => {
            for c in Code::ALL {
                println!(
                    "{}  {:<7}  {}",
                    c.as_str(),
                    c.severity().as_str(),
                    c.title()
                );
            }
            EXIT_OK
        }
        Some(s) => match Code::parse(s) {
            Some(c) => {
                print!("{}", c.page());
                EXIT_OK
            }
            None => {
                eprintln!("error: `{s}` is not a dpplan diagnostic code (they look like DP0007); `dpplan explain` lists them");
                EXIT_USAGE
            }
        },
    }
}
