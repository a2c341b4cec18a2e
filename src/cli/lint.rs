//! `dpplan check`, `dpplan fmt` and `dpplan explain`.

use super::codes::{Format, EXIT_FAILED, EXIT_OK};
use super::error::{self, CliError};
use super::output::color_stderr;
use super::render::{self, Human};
use crate::check;
use crate::diag::{Code, Severity, SourceMap};
use crate::syntax;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Expands directories into the `.dpplan` files below them, sorted. Symbolic links to
/// directories are not followed (a link loop would never end); links to files are. A
/// directory with no plan file is an error: a check of nothing must not pass.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).map_err(|e| CliError::io("cannot read", p, e))?;
            if found.is_empty() {
                return Err(CliError::failed(format!(
                    "no .dpplan files in {}",
                    p.display()
                )));
            }
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
        let entry = entry?;
        let path = entry.path();
        // The entry's own type: a symlink is not followed into a directory.
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "dpplan") {
            out.push(path);
        }
    }
    Ok(())
}

/// How many diagnostics of one file are rendered for people; the rest are counted (and all
/// are in `--format json`). A line of 20,000 mistakes would otherwise print its line 20,000
/// times.
const RENDERED_PER_FILE: usize = 50;

/// `dpplan check`: exit 0 clean (warnings allowed), 1 errors (or warnings when denied).
pub fn check(paths: &[PathBuf], format: Format, deny_warnings: bool) -> Result<u8, CliError> {
    let files = expand(paths)?;
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
        let mut rendered = 0usize;
        let mut unrendered = 0usize;
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
                Some(_) if rendered >= RENDERED_PER_FILE => unrendered += 1,
                Some(h) => {
                    rendered += 1;
                    let _ = write!(stderr, "{}", h.render(d));
                }
                None => json_results.push(render::json_object(&checked.sources, d, &root)),
            }
        }
        if unrendered > 0 {
            let _ = writeln!(
                stderr,
                "... and {unrendered} more in {root} (`--format json` lists every one)"
            );
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
        super::output::out(&format!("{text}\n"))?;
    } else {
        let summary = summary(files.len(), errors, warnings);
        let _ = writeln!(stderr, "{summary}");
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        // The diagnostics and the summary say why.
        Err(CliError::Reported(EXIT_FAILED))
    } else {
        Ok(EXIT_OK)
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
pub fn fmt(paths: &[PathBuf], check_only: bool) -> Result<u8, CliError> {
    if paths.len() == 1 && paths[0].as_os_str() == "-" {
        return fmt_stdin(check_only);
    }
    let files = expand(paths)?;
    // A file that cannot be read, parsed or written is reported and the others go on; the
    // command fails at the end.
    let mut failed = false;
    for file in &files {
        let name = file.display().to_string();
        let text = match check::load::read_plan_file(file) {
            Ok(t) => t,
            Err(source) => {
                error::print(&CliError::PlanFile {
                    path: file.clone(),
                    source,
                });
                failed = true;
                continue;
            }
        };
        let Some(out) = format_text(&name, &text) else {
            failed = true;
            continue;
        };
        if out == text {
            continue;
        }
        if check_only {
            print_diff(&name, &text, &out)?;
            failed = true;
        } else if let Err(e) = write_atomic(file, out.as_bytes()) {
            error::print(&CliError::io("cannot write", file, e));
            failed = true;
        } else {
            eprintln!("formatted {name}");
        }
    }
    if failed {
        Err(CliError::Reported(EXIT_FAILED))
    } else {
        Ok(EXIT_OK)
    }
}

/// `dpplan fmt -`: standard input formatted to standard output (with `--check`, a diff).
fn fmt_stdin(check_only: bool) -> Result<u8, CliError> {
    let mut bytes = Vec::new();
    let limit = check::load::MAX_PLAN_BYTES;
    std::io::stdin()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::failed(format!("cannot read stdin: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(CliError::failed(format!(
            "stdin is larger than {} MiB",
            limit / (1024 * 1024)
        )));
    }
    let text = check::load::text_of(bytes)
        .map_err(|e| CliError::failed(format!("cannot read stdin: {e}")))?;
    // Syntax errors are rendered by `format_text`.
    let out = format_text("<stdin>", &text).ok_or(CliError::Reported(EXIT_FAILED))?;
    if check_only && out != text {
        print_diff("<stdin>", &text, &out)?;
        return Err(CliError::Reported(EXIT_FAILED));
    }
    if !check_only {
        super::output::out(&out)?;
    }
    Ok(EXIT_OK)
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

/// The unified diff that would make `old` canonical, on stdout.
fn print_diff(name: &str, old: &str, new: &str) -> Result<(), CliError> {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(name, &format!("{name} (formatted)"))
        .to_string();
    super::output::out(&text)
}

/// Writes `bytes` over the plan file `path`, so a crash leaves either the old text or the
/// new one: a temporary file beside the real file (a symbolic link is followed, and stays a
/// link), fsynced, given the file's mode, owner and group, and renamed over it. A file with
/// several hard links is rewritten in place instead, or the rename would split the links.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let target = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&target)?;
    if meta.nlink() > 1 {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&target)?;
        f.write_all(bytes)?;
        return f.sync_all();
    }
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    // A new file of an unpredictable name, created exclusively and private (O_EXCL, 0600):
    // nothing planted in the directory is followed or overwritten; removed on any error.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".dpplan-fmt.tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // As root, the file keeps its owner; as its owner, this changes nothing.
    if let Err(e) = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid())) {
        if e.kind() != std::io::ErrorKind::PermissionDenied {
            return Err(e);
        }
    }
    tmp.as_file().set_permissions(meta.permissions())?;
    tmp.persist(&target).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// `dpplan explain CODE`, or the list of codes.
pub fn explain(code: Option<&str>) -> Result<u8, CliError> {
    match code {
        None => {
            let list: String = Code::ALL
                .iter()
                .map(|c| {
                    format!(
                        "{}  {:<7}  {}\n",
                        c.as_str(),
                        c.severity().as_str(),
                        c.title()
                    )
                })
                .collect();
            super::output::out(&list)?;
            Ok(EXIT_OK)
        }
        Some(s) => match Code::parse(s) {
            Some(c) => {
                super::output::out(c.page())?;
                Ok(EXIT_OK)
            }
            None => Err(CliError::usage(format!(
                "`{s}` is not a dpplan diagnostic code (they look like DP0007); `dpplan explain` lists them"
            ))),
        },
    }
}
