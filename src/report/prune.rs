//! `prune`: retention of the store's backups (`keep_last`, `keep_days` in the store block).
//!
//! Backups are found by their manifests and grouped per (device, domain, action). In each
//! group, newest first, a backup is kept when it is among the newest `keep_last`, younger
//! than `keep_days`, the newest successful one, or belongs to a run that is not final (or
//! that this state file does not know); the rest are removed: their files first, the
//! manifest last (a crash between leaves a manifest the next prune finishes), then an
//! emptied secure-backup folder, each directory fsynced.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::verify::ManifestOnDisk;
use crate::backups as output;
use crate::backups::find_manifests;
use crate::store::{History, RunDetail, RunId, StoreError, TaskStatus};

/// How long backups are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep this many per device and domain.
    pub keep_last: Option<u32>,
    /// Keep those younger than this many days.
    pub keep_days: Option<u32>,
}

/// Why a backup stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Among the newest `keep_last`.
    Last,
    /// Younger than `keep_days`.
    Days,
    /// The newest successful backup of its device and domain.
    NewestSuccessful,
    /// Its run is not final.
    Unfinished,
    /// Its run is not in this state file.
    UnknownRun,
}

impl Keep {
    /// For people.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Last => "within keep_last",
            Keep::Days => "within keep_days",
            Keep::NewestSuccessful => "the newest successful backup",
            Keep::Unfinished => "its run is not finished",
            Keep::UnknownRun => "its run is not in the state file",
        }
    }
}

/// One backup in the store, and what retention decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The manifest.
    pub manifest: PathBuf,
    /// The run.
    pub run: RunId,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: String,
    /// The domain.
    pub domain: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The run's start (the timestamp in the file names).
    pub started: DateTime<Utc>,
    /// Its files (absolute), the manifest excluded.
    pub files: Vec<PathBuf>,
    /// Their recorded size.
    pub bytes: u64,
    /// `None`: to remove.
    pub keep: Option<Keep>,
}

/// One backup, as `prune --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupView {
    /// Its manifest, relative to the store.
    pub manifest: String,
    /// The run.
    pub run: RunId,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: String,
    /// The domain.
    pub domain: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The run's start (RFC 3339, UTC).
    pub started: String,
    /// Its files, the manifest excluded.
    pub files: usize,
    /// Their recorded size in bytes.
    pub bytes: u64,
    /// Why it stays (`last`, `days`, `newest_successful`, `unfinished`, `unknown_run`);
    /// `null` for one removed.
    pub keep: Option<Keep>,
    /// Why removing it failed, if it did.
    pub error: Option<String>,
}

impl BackupView {
    /// The view of `b`, its manifest relative to `root`.
    pub fn new(root: &Path, b: &Backup) -> BackupView {
        BackupView {
            manifest: b
                .manifest
                .strip_prefix(root)
                .unwrap_or(&b.manifest)
                .display()
                .to_string(),
            run: b.run,
            task: b.task,
            device: b.device.clone(),
            domain: b.domain.clone(),
            action: b.action.clone(),
            started: super::format::json_time(b.started),
            files: b.files.len(),
            bytes: b.bytes,
            keep: b.keep,
            error: None,
        }
    }
}

/// A manifest prune could not read, as `prune --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableView {
    /// The manifest.
    pub path: String,
    /// Why.
    pub why: String,
}

/// What `dpplan prune --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneView {
    /// Nothing was removed: this is what would be.
    pub dry_run: bool,
    /// The store's root.
    pub store: String,
    /// Backups removed (or, in a dry run, to remove); `error` set where removing failed.
    pub removed: Vec<BackupView>,
    /// Backups kept, each with why.
    pub kept: Vec<BackupView>,
    /// Bytes removed (or to remove).
    pub bytes_removed: u64,
    /// Manifests that could not be read; left alone.
    pub unreadable: Vec<UnreadableView>,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    /// Every backup with its decision, grouped per (device, domain, action), newest first.
    pub backups: Vec<Backup>,
    /// Manifests that could not be read, with why; they are left alone.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The store's backups with the decision for each.
pub fn plan(
    root: &Path,
    history: &dyn History,
    policy: Retention,
    now: DateTime<Utc>,
) -> Result<Decided, StoreError> {
    let mut unreadable = Vec::new();
    let manifests = match find_manifests(root) {
        Ok(m) => m,
        Err(e) => {
            unreadable.push((root.to_path_buf(), format!("cannot read the store: {e}")));
            Vec::new()
        }
    };
    let mut runs: HashMap<RunId, Option<RunDetail>> = HashMap::new();
    let mut groups: BTreeMap<(String, String, String), Vec<(Backup, bool)>> = BTreeMap::new();
    for path in manifests {
        let m = match ManifestOnDisk::read(&path) {
            Ok(m) => m,
            Err(e) => {
                unreadable.push((path, e));
                continue;
            }
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = runs.entry(m.run) {
            slot.insert(match history.run(m.run) {
                Ok(d) => Some(d),
                Err(StoreError::NoRun(_)) => None,
                Err(e) => return Err(e),
            });
        }
        let detail = runs.get(&m.run).and_then(|d| d.as_ref());
        // The run must be this state file's: its start is in the manifest's file names.
        let ts_of = |d: &RunDetail| output::timestamp(d.summary.started);
        let detail = detail.filter(|d| path.to_string_lossy().contains(&ts_of(d)));
        let task = detail.and_then(|d| d.tasks.iter().find(|t| t.task.id == m.task));
        let mut files: Vec<PathBuf> = m
            .files
            .iter()
            .filter_map(|e| ManifestOnDisk::file_path(&path, e))
            .collect();
        // Files the journal recorded for the task, in the manifest's folder.
        let dir = path.parent().unwrap_or(root).to_path_buf();
        for f in task.map(|t| t.files.as_slice()).unwrap_or_default() {
            if let Some(p) = output::inside(root, Path::new(&f.path)) {
                if p.parent() == Some(dir.as_path()) && !files.contains(&p) {
                    files.push(p);
                }
            }
        }
        let keep = match detail {
            None => Some(Keep::UnknownRun),
            Some(d) if !d.summary.status.is_final() => Some(Keep::Unfinished),
            Some(_) => None,
        };
        let successful =
            task.is_some_and(|t| matches!(t.status, TaskStatus::Succeeded | TaskStatus::Warning));
        let backup = Backup {
            manifest: path,
            run: m.run,
            task: m.task,
            device: m.device.clone(),
            domain: m.domain.clone(),
            action: m.action.clone(),
            started: detail.map(|d| d.summary.started).unwrap_or(m.started),
            bytes: m.files.iter().map(|e| e.size).sum(),
            files,
            keep,
        };
        groups
            .entry((m.device, m.domain, m.action))
            .or_default()
            .push((backup, successful));
    }
    let mut out = Vec::new();
    for (_, mut group) in groups {
        group.sort_by(|a, b| b.0.started.cmp(&a.0.started).then(b.0.run.cmp(&a.0.run)));
        let newest_ok = group.iter().position(|(b, ok)| *ok && b.keep.is_none());
        for (i, (mut b, _)) in group.into_iter().enumerate() {
            if b.keep.is_none() {
                let by_count = policy.keep_last.is_some_and(|n| i < n as usize);
                let by_age = policy
                    .keep_days
                    .is_some_and(|d| now - b.started < chrono::Duration::days(i64::from(d)));
                b.keep = if by_count {
                    Some(Keep::Last)
                } else if by_age {
                    Some(Keep::Days)
                } else if newest_ok == Some(i) {
                    Some(Keep::NewestSuccessful)
                } else {
                    None
                };
            }
            out.push(b);
        }
    }
    Ok(Decided {
        backups: out,
        unreadable,
    })
}

/// Removes a backup: its files, then its manifest, then its folder when emptied (a secure
/// backup's), fsyncing each directory touched. Files already gone are not an error.
pub fn remove(b: &Backup) -> std::io::Result<()> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for p in b.files.iter().chain(std::iter::once(&b.manifest)) {
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(d) = p.parent() {
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_path_buf());
            }
        }
    }
    for d in dirs {
        if b.action == "SECURE_BACKUP" && std::fs::remove_dir(&d).is_ok() {
            if let Some(parent) = d.parent() {
                output::sync_dir(parent)?;
            }
        } else {
            output::sync_dir(&d)?;
        }
    }
    Ok(())
}

/// The log line recorded in a run's journal for a removed backup. `verify` recognises its
/// prefix, `pruned:`.
pub fn log_message(root: &Path, b: &Backup) -> String {
    let rel = b
        .manifest
        .strip_prefix(root)
        .unwrap_or(&b.manifest)
        .display()
        .to_string();
    format!(
        "pruned: removed {} files ({}) and {rel}",
        b.files.len(),
        super::format::size(b.bytes)
    )
}

/// Whether a log message is one [`log_message`] wrote.
pub fn is_prune_message(message: &str) -> bool {
    message.starts_with("pruned:")
}
