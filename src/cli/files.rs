//! `dpplan verify` and `dpplan prune`: the store's files checked against their manifests,
//! and retention applied.

use super::report::{open_state, store_error, StateArg};
use super::{out, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE};
use crate::check;
use crate::engine::clock::{Clock, SystemClock};
use crate::report::prune::{self, Policy};
use crate::report::verify::{self, Verified};
use crate::store::{History, Journal, Record, RunDetail};
use chrono::{DateTime, Utc};
use clap::Args;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// `dpplan verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A run's number, a manifest, or a folder to search for manifests (default: the newest
    /// run).
    #[arg(value_name = "RUN|PATH")]
    pub target: Option<String>,
    /// The store's root, for a run (default: the store of the plan file the run was started
    /// from).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArg,
}

/// `dpplan prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The plan file whose store block sets `keep_last` and/or `keep_days`.
    pub file: PathBuf,
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The time to age backups against (RFC 3339), instead of the clock: for tests.
    #[arg(long, hide = true, value_name = "TIME")]
    pub now: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub state: StateArg,
}

/// `dpplan verify`: exit 0 when every file is as recorded, 1 on any problem.
pub fn verify(args: VerifyArgs) -> u8 {
    if let Some(t) = &args.target {
        let p = Path::new(t);
        if p.exists() {
            return verify_path(p);
        }
        if t.parse::<u64>().is_err() {
            eprintln!("error: {t} is neither a run's number nor an existing file or folder");
            return EXIT_USAGE;
        }
    }
    let store = match open_state(&args.state) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let id = match args.target.as_deref().map(str::parse::<u64>) {
        Some(Ok(id)) => id,
        _ => match store.runs(None, 1) {
            Ok(r) if !r.is_empty() => r[0].id,
            Ok(_) => {
                eprintln!("error: no runs in the state file");
                return EXIT_FAILED;
            }
            Err(e) => return store_error(&e),
        },
    };
    let detail = match store.run(id) {
        Ok(d) => d,
        Err(e) => return store_error(&e),
    };
    let root = match args.store.clone().or_else(|| store_of_run(&detail)) {
        Some(r) => r,
        None => {
            eprintln!("error: cannot tell where run {id}'s store is; name it with --store DIR");
            return EXIT_USAGE;
        }
    };
    let pruned: HashSet<u32> = match store.log(id, None) {
        Ok(lines) => lines
            .iter()
            .filter(|l| prune::is_prune_message(&l.message))
            .filter_map(|l| l.task)
            .collect(),
        Err(e) => return store_error(&e),
    };
    drop(store);
    let v = verify::run(&root, &detail, &pruned);
    for (task, why) in &v.skipped {
        eprintln!("task {task} not checked: {why}");
    }
    finish(&v, Some(&root))
}

fn verify_path(p: &Path) -> u8 {
    let mut v = Verified::default();
    if p.is_dir() {
        match verify::find_manifests(p) {
            Ok(found) if found.is_empty() => {
                eprintln!("error: no manifests under {}", p.display());
                return EXIT_FAILED;
            }
            Ok(found) => found.iter().for_each(|m| v.manifest(m)),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", p.display());
                return EXIT_FAILED;
            }
        }
    } else {
        v.manifest(p);
    }
    finish(&v, None)
}

/// Prints each problem (stdout) and a summary (stderr); the exit code.
fn finish(v: &Verified, root: Option<&Path>) -> u8 {
    let mut text = String::new();
    for p in &v.problems {
        let shown = root
            .and_then(|r| p.path.strip_prefix(r).ok())
            .unwrap_or(&p.path);
        text.push_str(&format!("{}: {}\n", shown.display(), p.what));
    }
    let code = out(&text);
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    eprintln!(
        "verified {} in {}: {}",
        plural(v.files, "file"),
        plural(v.manifests, "manifest"),
        if v.problems.is_empty() {
            "all as recorded".to_string()
        } else {
            plural(v.problems.len(), "problem")
        }
    );
    if code != EXIT_OK {
        code
    } else if v.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The store of the plan file a run was started from: the first file header of its stored
/// text names the file, which is checked again for its store block.
fn store_of_run(detail: &RunDetail) -> Option<PathBuf> {
    let first = detail.plan_text.lines().next()?;
    let name = first.strip_prefix("# ==== ")?.strip_suffix(" ====")?;
    let path = Path::new(name);
    if !path.is_file() {
        return None;
    }
    check::check_file(path).program.store.map(|s| s.path)
}

/// `dpplan prune`.
pub fn prune(args: PruneArgs) -> u8 {
    let checked = check::check_file(&args.file);
    if checked.has_errors() {
        eprintln!(
            "error: {} has errors; `dpplan check` lists them",
            args.file.display()
        );
        return EXIT_FAILED;
    }
    let Some(cfg) = checked.program.store else {
        eprintln!(
            "error: {} declares no store; nothing to prune",
            args.file.display()
        );
        return EXIT_FAILED;
    };
    let policy = Policy {
        keep_last: cfg.keep_last,
        keep_days: cfg.keep_days,
    };
    if policy.keep_last.is_none() && policy.keep_days.is_none() {
        eprintln!(
            "error: the store block of {} sets neither keep_last nor keep_days; prune keeps everything",
            args.file.display()
        );
        return EXIT_FAILED;
    }
    let root = cfg.path;
    if !root.is_dir() {
        eprintln!("error: the store {} does not exist", root.display());
        return EXIT_FAILED;
    }
    let path = super::run::state_path(args.state.state.as_deref());
    if !path.is_file() {
        eprintln!("error: no state file at {}", path.display());
        return EXIT_FAILED;
    }
    let store = match super::report::open_writer(&path, false) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = args.now.unwrap_or_else(|| SystemClock.now());
    let prune::Decided {
        backups,
        unreadable,
    } = match prune::plan(&root, &store, policy, now) {
        Ok(p) => p,
        Err(e) => return store_error(&e),
    };
    let mut code = EXIT_OK;
    for (p, e) in &unreadable {
        eprintln!("warning: {}: {e}; left alone", p.display());
    }
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_INTERNAL;
        }
    };
    let (mut removed, mut kept, mut bytes) = (0usize, 0usize, 0u64);
    let mut text = String::new();
    for b in &backups {
        if b.keep.is_some() {
            kept += 1;
            continue;
        }
        let rel = b.manifest.strip_prefix(&root).unwrap_or(&b.manifest);
        let line = format!(
            "{} (run {}, task {}, {} files, {})",
            rel.display(),
            b.run,
            b.task,
            b.files.len(),
            crate::report::size(b.bytes)
        );
        if args.dry_run {
            text.push_str(&format!("would remove {line}\n"));
            removed += 1;
            bytes += b.bytes;
            continue;
        }
        if let Err(e) = prune::remove(b) {
            eprintln!("error: removing {}: {e}", rel.display());
            code = EXIT_FAILED;
            continue;
        }
        text.push_str(&format!("removed {line}\n"));
        removed += 1;
        bytes += b.bytes;
        let record = Record::Log {
            task: Some(b.task),
            step: None,
            at: now,
            message: prune::log_message(&root, b),
        };
        if let Err(e) = rt.block_on(store.append(b.run, vec![record])) {
            eprintln!("error: recording the removal in run {}: {e}", b.run);
            code = EXIT_FAILED;
        }
    }
    let written = out(&text);
    eprintln!(
        "{} {removed} backup{} ({}); kept {kept}",
        if args.dry_run {
            "would remove"
        } else {
            "removed"
        },
        if removed == 1 { "" } else { "s" },
        crate::report::size(bytes)
    );
    if written != EXIT_OK {
        written
    } else {
        code
    }
}
