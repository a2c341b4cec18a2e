//! `dpplan verify` and `dpplan prune`: the store's files checked against their manifests,
//! and retention applied.

use super::codes::{EXIT_FAILED, EXIT_OK};
use super::error::{self, CliError};
use super::output::out;
use super::report::{json_out, open_state, StateArg};
use crate::check;
use crate::engine::clock::{Clock, SystemClock};
use crate::report::prune::{self, BackupView, PruneView, Retention, UnreadableView};
use crate::report::verify::{self, Outcome, Verified};
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
    /// Print what was found as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// Print what was (or would be) removed and kept as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fail at once (exit 1) when another process writes the state file, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub state: StateArg,
}

/// `dpplan verify`: exit 0 when every file is as recorded, 1 on any problem or when there was
/// nothing to verify.
pub fn verify(args: VerifyArgs) -> Result<u8, CliError> {
    if let Some(t) = &args.target {
        let p = Path::new(t);
        if p.exists() {
            return verify_path(p, args.json);
        }
        if t.parse::<u64>().is_err() {
            return Err(CliError::usage(format!(
                "{t} is neither a run's number nor an existing file or folder"
            )));
        }
    }
    let store = open_state(&args.state)?;
    let id = match args.target.as_deref().map(str::parse::<u64>) {
        Some(Ok(id)) => id,
        _ => match store.runs(None, 1)?.first() {
            Some(r) => r.id,
            None => return Err(CliError::failed("no runs in the state file")),
        },
    };
    let detail = store.run(id)?;
    let stored = store.stored_run(id).ok();
    let root = args
        .store
        .clone()
        .or_else(|| stored.as_deref().and_then(crate::engine::stored_store_root))
        .or_else(|| store_of_run(&detail))
        .ok_or_else(|| {
            CliError::usage(format!(
                "cannot tell where run {id}'s store is; name it with --store DIR"
            ))
        })?;
    let pruned: HashSet<u32> = store
        .log(id, None)?
        .iter()
        .filter(|l| prune::is_prune_message(&l.message))
        .filter_map(|l| l.task)
        .collect();
    drop(store);
    let v = verify::run(&root, &detail, &pruned);
    for (task, why) in &v.skipped {
        eprintln!("task {task} not checked: {why}");
    }
    let nothing = format!("run {id} recorded no backup files{}", tally(&detail));
    finish(&v, Some(id), Some(&root), &nothing, args.json)
}

/// ` (its 4 tasks: 3 CANCELLED, 1 SKIPPED)`: the statuses of a run's tasks, or ` (no tasks)`.
fn tally(detail: &RunDetail) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for t in &detail.tasks {
        let s = t.status.as_str();
        match counts.iter_mut().find(|(name, _)| *name == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    if counts.is_empty() {
        return " (it has no tasks)".into();
    }
    let n = detail.tasks.len();
    let each: Vec<String> = counts.iter().map(|(s, c)| format!("{c} {s}")).collect();
    format!(
        " (its {n} task{}: {})",
        if n == 1 { "" } else { "s" },
        each.join(", ")
    )
}

fn verify_path(p: &Path, json: bool) -> Result<u8, CliError> {
    let mut v = Verified::default();
    if p.is_dir() {
        crate::backups::find_manifests(p)
            .map_err(|e| CliError::io("cannot read", p, e))?
            .iter()
            .for_each(|m| v.manifest(m));
    } else {
        v.manifest(p);
    }
    let nothing = if p.is_dir() {
        format!("no manifests listing files under {}", p.display())
    } else {
        format!("{} lists no files", p.display())
    };
    finish(&v, None, None, &nothing, json)
}

/// Prints each problem (stdout; or everything as JSON with `json`) and a summary (stderr);
/// `Ok` only when files were checked and all are as recorded. `nothing` says why there was
/// nothing to verify, when there was not.
fn finish(
    v: &Verified,
    run: Option<u64>,
    root: Option<&Path>,
    nothing: &str,
    json: bool,
) -> Result<u8, CliError> {
    let written = if json {
        json_out(&v.view(run, root))
    } else {
        let mut text = String::new();
        for p in &v.problems {
            text.push_str(&format!("{}: {}\n", Verified::shown(p, root), p.what));
        }
        out(&text)
    };
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let outcome = v.outcome();
    let result = match outcome {
        Outcome::NothingToVerify => Err(CliError::failed(format!("nothing to verify: {nothing}"))),
        Outcome::AsRecorded | Outcome::Problems => {
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
            if outcome == Outcome::AsRecorded {
                Ok(EXIT_OK)
            } else {
                Err(CliError::Reported(EXIT_FAILED))
            }
        }
    };
    match written {
        // A closed pipe (or stdout failing) decides the exit code; what there was to say
        // about the files is said all the same.
        Err(w) => {
            if let Err(e) = &result {
                error::print(e);
            }
            Err(w)
        }
        Ok(()) => result,
    }
}

/// The store of the plan file a run was started from, for runs that stored no program
/// (those that ended in pre-validation): the first file header of its stored text names the
/// file, which is checked again for its store block.
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
pub fn prune(args: PruneArgs) -> Result<u8, CliError> {
    let checked = check::check_file(&args.file);
    if checked.has_errors() {
        return Err(CliError::PlanErrors { path: args.file });
    }
    let Some(cfg) = checked.program.store else {
        return Err(CliError::failed(format!(
            "{} declares no store; nothing to prune",
            args.file.display()
        )));
    };
    let policy = Retention {
        keep_last: cfg.keep_last,
        keep_days: cfg.keep_days,
    };
    if policy.keep_last.is_none() && policy.keep_days.is_none() {
        return Err(CliError::failed(format!(
            "the store block of {} sets neither keep_last nor keep_days; prune keeps everything",
            args.file.display()
        )));
    }
    let root = cfg.path;
    if !root.is_dir() {
        return Err(CliError::failed(format!(
            "the store {} does not exist",
            root.display()
        )));
    }
    let path = super::run::state_path(args.state.state.as_deref());
    if !path.is_file() {
        return Err(CliError::NoStateFile { path });
    }
    let store = super::report::open_writer(&path, args.no_wait)?;
    let now = args.now.unwrap_or_else(|| SystemClock.now());
    let prune::Decided {
        backups,
        unreadable,
    } = prune::plan(&root, &store, policy, now)?;
    // A backup that cannot be removed, or its removal recorded, is reported and the rest go
    // on; the command fails at the end.
    let mut failed = false;
    for (p, e) in &unreadable {
        eprintln!("warning: {}: {e}; left alone", p.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(CliError::Runtime)?;
    let mut view = PruneView {
        dry_run: args.dry_run,
        store: root.display().to_string(),
        removed: Vec::new(),
        kept: Vec::new(),
        bytes_removed: 0,
        unreadable: unreadable
            .iter()
            .map(|(p, why)| UnreadableView {
                path: p.display().to_string(),
                why: why.clone(),
            })
            .collect(),
    };
    let mut text = String::new();
    for b in &backups {
        let mut bv = BackupView::new(&root, b);
        if b.keep.is_some() {
            view.kept.push(bv);
            continue;
        }
        let line = format!(
            "{} (run {}, task {}, {} files, {})",
            bv.manifest,
            b.run,
            b.task,
            b.files.len(),
            crate::report::size(b.bytes)
        );
        if args.dry_run {
            text.push_str(&format!("would remove {line}\n"));
            view.bytes_removed += b.bytes;
            view.removed.push(bv);
            continue;
        }
        if let Err(e) = prune::remove(b) {
            bv.error = Some(e.to_string());
            error::print(&CliError::io("removing", &bv.manifest, e));
            failed = true;
            view.removed.push(bv);
            continue;
        }
        text.push_str(&format!("removed {line}\n"));
        view.bytes_removed += b.bytes;
        view.removed.push(bv);
        let record = Record::Log {
            task: Some(b.task),
            step: None,
            at: now,
            message: prune::log_message(&root, b),
        };
        if let Err(e) = rt.block_on(store.append(b.run, vec![record])) {
            error::print(&CliError::failed(format!(
                "recording the removal in run {}: {e}",
                b.run
            )));
            failed = true;
        }
    }
    let written = if args.json {
        json_out(&view)
    } else {
        out(&text)
    };
    let removed = view.removed.iter().filter(|b| b.error.is_none()).count();
    eprintln!(
        "{} {removed} backup{} ({}); kept {}",
        if args.dry_run {
            "would remove"
        } else {
            "removed"
        },
        if removed == 1 { "" } else { "s" },
        crate::report::size(view.bytes_removed),
        view.kept.len()
    );
    written?;
    if failed {
        Err(CliError::Reported(EXIT_FAILED))
    } else {
        Ok(EXIT_OK)
    }
}
