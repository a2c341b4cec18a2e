//! `dpplan backups`: the store's catalogue as a value: every backup its manifests describe,
//! with a quick check of its files and the last restore or drill that read it.

use super::format::{json_time, size, Look};
use super::table::{self, Column, Table};
use crate::backups::catalogue::Entry;
use crate::store::{History, StoreError, TaskStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The last restore or restore drill that read a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillView {
    /// The run.
    pub run: u64,
    /// `RESTORE_DRILL`, `IMPORT_DOMAIN` or `SECURE_RESTORE`.
    pub action: String,
    /// `SUCCEEDED` (it would restore, or did), `FAILED` or `ROLLED_BACK`.
    pub status: String,
    /// When the task ended (RFC 3339, UTC).
    pub at: String,
}

/// Restores and drills read backups: which each one read last, from the newest `max_runs`
/// runs of the history, by the backup's path (canonical where it can be).
pub fn last_drills(
    history: &dyn History,
    max_runs: usize,
) -> Result<HashMap<PathBuf, DrillView>, StoreError> {
    let mut found: HashMap<PathBuf, DrillView> = HashMap::new();
    for run in history.runs(None, max_runs)? {
        let detail = history.run(run.id)?;
        for t in &detail.tasks {
            if !["RESTORE_DRILL", "IMPORT_DOMAIN", "SECURE_RESTORE"]
                .contains(&t.task.action.as_str())
            {
                continue;
            }
            let status = match t.status {
                TaskStatus::Succeeded => "SUCCEEDED",
                TaskStatus::Failed => "FAILED",
                TaskStatus::RolledBack => "ROLLED_BACK",
                _ => continue,
            };
            let Some(source) = crate::store::TaskFacts::from_pairs(&t.facts).and_then(|f| f.source)
            else {
                continue;
            };
            let at: DateTime<Utc> = t.finished.unwrap_or(run.started);
            // Newest run first: the first seen is the last.
            found
                .entry(canonical(Path::new(&source)))
                .or_insert(DrillView {
                    run: run.id,
                    action: t.task.action.clone(),
                    status: status.to_string(),
                    at: json_time(at),
                });
        }
    }
    Ok(found)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// One backup of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogueRow {
    /// The device.
    pub device: String,
    /// The domain (`all-domains` for secure backups and all-domains exports).
    pub domain: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub kind: String,
    /// When its backup step started (RFC 3339, UTC).
    pub time: String,
    /// The run that wrote it.
    pub run: u64,
    /// The device's firmware then.
    pub firmware: String,
    /// Bytes, as recorded.
    pub size: u64,
    /// What a restore reads: the export ZIP or the secure backup's folder, relative to the
    /// store.
    pub path: String,
    /// Whether its files are all present with their recorded sizes (`ok`, or what is wrong):
    /// a quick check; `dpplan verify` reads every byte.
    pub check: String,
    /// The last restore or restore drill that read it, if the state file knows one.
    pub last_drill: Option<DrillView>,
}

/// `dpplan backups --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogueView {
    /// The store.
    pub store: String,
    /// Its backups, by device, domain and time.
    pub backups: Vec<CatalogueRow>,
    /// Manifests that could not be read.
    pub unreadable: Vec<String>,
}

fn quick_check(e: &Entry) -> String {
    for (file, recorded) in e.files.iter().zip(&e.manifest.files) {
        match std::fs::metadata(file) {
            Err(_) => return format!("missing {}", recorded.path),
            Ok(m) if m.len() != recorded.size => return format!("size of {}", recorded.path),
            Ok(_) => {}
        }
    }
    "ok".to_string()
}

/// The catalogue of `entries` found under `root`, with what `drills` says of each.
pub fn catalogue_view(
    root: &Path,
    entries: &[Entry],
    unreadable: &[(PathBuf, String)],
    drills: &HashMap<PathBuf, DrillView>,
) -> CatalogueView {
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    CatalogueView {
        store: root.display().to_string(),
        backups: entries
            .iter()
            .map(|e| CatalogueRow {
                device: e.manifest.device.clone(),
                domain: e.manifest.domain.clone(),
                kind: e.manifest.action.clone(),
                time: json_time(e.manifest.started),
                run: e.manifest.run,
                firmware: e.manifest.firmware.version.clone(),
                size: e.bytes,
                path: e.source().map(|s| rel(&s)).unwrap_or_default(),
                check: quick_check(e),
                last_drill: e.source().and_then(|s| drills.get(&canonical(&s))).cloned(),
            })
            .collect(),
        unreadable: unreadable.iter().map(|(p, _)| rel(p)).collect(),
    }
}

impl CatalogueView {
    /// The table of `dpplan backups`.
    pub fn render(&self, look: Look) -> String {
        let mut t = Table::new(vec![
            Column::left("DEVICE"),
            Column::left("DOMAIN"),
            Column::left("KIND"),
            Column::left("TIME"),
            Column::right("RUN"),
            Column::left("FIRMWARE"),
            Column::right("SIZE"),
            Column::left("CHECK"),
            Column::left("LAST DRILL"),
        ]);
        for b in &self.backups {
            let local = |t: &str| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| look.zone.time(t.with_timezone(&Utc)))
                    .unwrap_or_else(|_| t.to_string())
            };
            let time = local(&b.time);
            let drill = match &b.last_drill {
                Some(d) if d.status == "SUCCEEDED" => {
                    format!("ok, run {} ({})", d.run, local(&d.at))
                }
                Some(d) => format!("{}, run {} ({})", d.status, d.run, local(&d.at)),
                None => "-".to_string(),
            };
            t.row(
                [
                    b.device.as_str(),
                    b.domain.as_str(),
                    b.kind.as_str(),
                    time.as_str(),
                    &b.run.to_string(),
                    b.firmware.as_str(),
                    &size(b.size),
                    b.check.as_str(),
                    drill.as_str(),
                ]
                .iter()
                .map(|c| table::printable(c, false))
                .collect(),
            );
        }
        t.render(look.fit)
    }
}
