//! `verify`: files in the store checked against what was recorded when they were written.
//!
//! Each file of a manifest (and each file the journal recorded for a run) must exist with the
//! recorded size and SHA-256. Exports must be ZIP archives whose every entry reads back with
//! a good CRC; a secure backup's own `backupmanifest.xml` must list only files that are
//! present (with the listed size, and the listed SHA-1 when it is one).
//!
//! Reads the filesystem and a [`RunDetail`]; never writes.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::backups::{self as output, Layout};
use crate::store::{RunDetail, TaskStatus};

/// A file of a manifest, as read back.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Relative to the manifest's folder.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// The fields of a `manifest.json` that verify and prune read.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ManifestOnDisk {
    /// The run.
    pub run: u64,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: String,
    /// The domain.
    pub domain: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// When the task's backup step started.
    pub started: DateTime<Utc>,
    /// The files.
    pub files: Vec<ManifestEntry>,
}

impl ManifestOnDisk {
    /// Reads and parses a manifest.
    pub fn read(path: &Path) -> Result<ManifestOnDisk, String> {
        output::read_manifest(path)
    }

    /// Where entry `e` is, or `None` when its path would leave the manifest's folder.
    pub fn file_path(manifest: &Path, e: &ManifestEntry) -> Option<PathBuf> {
        let rel = Path::new(&e.path);
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            Some(manifest.parent().unwrap_or(Path::new(".")).join(rel))
        } else {
            None
        }
    }
}

/// A file that is not what was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub what: String,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Manifests read.
    pub manifests: usize,
    /// Files checked.
    pub files: usize,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Tasks not checked, with why (failed, pruned).
    pub skipped: Vec<(u32, String)>,
}

/// How a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Files were checked and every one is as recorded.
    AsRecorded,
    /// Something is not as recorded.
    Problems,
    /// No file was checked: nothing was recorded, or all of it was skipped.
    NothingToVerify,
}

/// A problem, as `verify --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemView {
    /// The file (relative to the store, for a run).
    pub path: String,
    /// What is wrong with it.
    pub what: String,
}

/// A task not checked, as `verify --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedView {
    /// The task.
    pub task: u32,
    /// Why (its status, or `pruned`).
    pub why: String,
}

/// What `dpplan verify --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyView {
    /// The run verified, when a run was.
    pub run: Option<u64>,
    /// The store's root, for a run.
    pub store: Option<String>,
    /// `AS_RECORDED`, `PROBLEMS` or `NOTHING_TO_VERIFY`.
    pub outcome: Outcome,
    /// Manifests read.
    pub manifests: usize,
    /// Files checked.
    pub files: usize,
    /// Everything wrong, in the order found.
    pub problems: Vec<ProblemView>,
    /// Tasks not checked.
    pub skipped: Vec<SkippedView>,
}

impl Verified {
    /// How it ended: problems first; else nothing checked is nothing verified.
    pub fn outcome(&self) -> Outcome {
        if !self.problems.is_empty() {
            Outcome::Problems
        } else if self.files == 0 {
            Outcome::NothingToVerify
        } else {
            Outcome::AsRecorded
        }
    }

    /// A problem's path as shown: relative to `root` when it is below it.
    pub fn shown(p: &Problem, root: Option<&Path>) -> String {
        root.and_then(|r| p.path.strip_prefix(r).ok())
            .unwrap_or(&p.path)
            .display()
            .to_string()
    }

    /// The JSON view, paths relative to `root` (a run's store).
    pub fn view(&self, run: Option<u64>, root: Option<&Path>) -> VerifyView {
        VerifyView {
            run,
            store: root.map(|r| r.display().to_string()),
            outcome: self.outcome(),
            manifests: self.manifests,
            files: self.files,
            problems: self
                .problems
                .iter()
                .map(|p| ProblemView {
                    path: Verified::shown(p, root),
                    what: p.what.clone(),
                })
                .collect(),
            skipped: self
                .skipped
                .iter()
                .map(|(task, why)| SkippedView {
                    task: *task,
                    why: why.clone(),
                })
                .collect(),
        }
    }

    fn problem(&mut self, path: &Path, what: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            what: what.into(),
        });
    }

    /// Checks one manifest and every file it lists.
    pub fn manifest(&mut self, path: &Path) {
        self.manifests += 1;
        let m = match ManifestOnDisk::read(path) {
            Ok(m) => m,
            Err(e) => return self.problem(path, e),
        };
        for e in &m.files {
            match ManifestOnDisk::file_path(path, e) {
                Some(p) => self.file(&p, e.size, &e.sha256),
                None => self.problem(path, format!("lists {}, outside its folder", e.path)),
            }
        }
    }

    /// Checks one file: present, `size` bytes, SHA-256 `sha256`, and sound as what its name
    /// says it is (a ZIP archive, a secure backup's manifest).
    pub fn file(&mut self, path: &Path, size: u64, sha256: &str) {
        self.files += 1;
        let (got_size, got_sha) = match output::hash_file(path) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.problem(path, "missing")
            }
            Err(e) => return self.problem(path, format!("cannot read it: {e}")),
        };
        if got_size != size {
            return self.problem(path, format!("is {got_size} bytes, recorded {size}"));
        }
        if !got_sha.eq_ignore_ascii_case(sha256) {
            return self.problem(
                path,
                format!("SHA-256 is {got_sha}, recorded {sha256} (the content changed)"),
            );
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if name.ends_with(".zip") {
            if let Err(e) = check_zip(path) {
                self.problem(path, e);
            }
        } else if name == "backupmanifest.xml" {
            for (p, what) in check_backup_manifest(path) {
                self.problem(&p, what);
            }
        }
    }
}

/// Reads every entry of a ZIP archive to its end, so the crate checks each CRC.
fn check_zip(path: &Path) -> Result<(), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut zip = zip::ZipArchive::new(f).map_err(|e| format!("not a valid ZIP archive: {e}"))?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| format!("ZIP entry {i} is unreadable: {e}"))?;
        let name = entry.name().to_string();
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| format!("ZIP entry {name} is damaged: {e}"))?;
    }
    Ok(())
}

/// One `files/file` of the appliance's `backupmanifest.xml`.
#[derive(Debug, Default)]
struct Listed {
    filename: String,
    size: Option<u64>,
    checksum: Option<String>,
}

/// The problems of a secure backup's `backupmanifest.xml`: every file it lists must be in
/// its folder, with the listed size, and the listed checksum when that is a hex SHA-1 (the
/// encoding is not public, so anything else is left alone).
fn check_backup_manifest(path: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let listed = match parse_backup_manifest(path) {
        Ok(l) => l,
        Err(e) => return vec![(path.to_path_buf(), e)],
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for l in listed {
        let name = output::sanitize(&l.filename);
        let p = dir.join(&name);
        let Ok(meta) = std::fs::metadata(&p) else {
            out.push((
                path.to_path_buf(),
                format!("lists {}, which is missing", l.filename),
            ));
            continue;
        };
        if let Some(size) = l.size.filter(|s| *s != meta.len()) {
            out.push((
                p.clone(),
                format!("is {} bytes, backupmanifest.xml lists {size}", meta.len()),
            ));
            continue;
        }
        let sha1 = l
            .checksum
            .filter(|c| c.len() == 40 && c.chars().all(|ch| ch.is_ascii_hexdigit()));
        if let Some(want) = sha1 {
            match sha1_file(&p) {
                Ok(got) if got.eq_ignore_ascii_case(&want) => {}
                Ok(got) => out.push((
                    p.clone(),
                    format!("SHA-1 is {got}, backupmanifest.xml lists {want}"),
                )),
                Err(e) => out.push((p.clone(), format!("cannot read it: {e}"))),
            }
        }
    }
    out
}

fn sha1_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn parse_backup_manifest(path: &Path) -> Result<Vec<Listed>, String> {
    use quick_xml::events::Event;
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut reader = quick_xml::Reader::from_reader(text.as_slice());
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<Listed> = None;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("backupmanifest.xml is not well-formed XML: {e}"))?;
        match ev {
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).to_string();
                stack.push(name);
                if stack.ends_with(&["files".into(), "file".into()]) {
                    cur = Some(Listed::default());
                }
            }
            Event::End(_) => {
                if stack.ends_with(&["files".into(), "file".into()]) {
                    if let Some(l) = cur.take().filter(|l| !l.filename.is_empty()) {
                        out.push(l);
                    }
                }
                stack.pop();
            }
            Event::Text(t) => {
                let text = t
                    .xml10_content()
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                if let (Some(l), Some(field)) = (cur.as_mut(), stack.last()) {
                    match field.as_str() {
                        "filename" => l.filename.push_str(&text),
                        "size" => l.size = text.parse().ok(),
                        "checksum" => l.checksum = Some(text),
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err("backupmanifest.xml ends early".into());
    }
    Ok(out)
}

/// Checks a run's files: each task's manifest and every file the journal recorded for it.
/// Tasks that failed or were pruned are listed in `skipped`, not checked: their files were
/// removed on purpose.
pub fn run(root: &Path, detail: &RunDetail, pruned: &HashSet<u32>) -> Verified {
    let mut v = Verified::default();
    let ts = output::timestamp(detail.summary.started);
    for t in &detail.tasks {
        let id = t.task.id;
        if pruned.contains(&id) {
            v.skipped.push((id, "pruned".into()));
            continue;
        }
        if matches!(
            t.status,
            TaskStatus::Failed | TaskStatus::RolledBack | TaskStatus::Cancelled
        ) {
            if !t.files.is_empty() {
                v.skipped.push((id, t.status.as_str().to_string()));
            }
            continue;
        }
        if t.files.is_empty() {
            continue;
        }
        let layout = if t.task.action == "SECURE_BACKUP" {
            Layout::secure_backup(&t.task.device, &ts)
        } else {
            Layout::export(&t.task.device, &t.task.domain, &ts)
        };
        let manifest = root.join(layout.manifest());
        // What the manifest says, by absolute path, to compare with the journal.
        let mut listed: BTreeMap<PathBuf, (u64, String)> = BTreeMap::new();
        if manifest.is_file() {
            v.manifest(&manifest);
            if let Ok(m) = ManifestOnDisk::read(&manifest) {
                for e in &m.files {
                    if let Some(p) = ManifestOnDisk::file_path(&manifest, e) {
                        listed.insert(p, (e.size, e.sha256.clone()));
                    }
                }
            }
        } else if t.status.is_final() {
            v.problem(
                &manifest,
                format!("missing (task {id} {})", t.status.as_str()),
            );
        }
        let mut seen = HashSet::new();
        for f in t.files.iter().rev() {
            let Some(p) = output::inside(root, Path::new(&f.path)) else {
                v.problem(Path::new(&f.path), "recorded outside the store");
                continue;
            };
            if !seen.insert(p.clone()) {
                continue;
            }
            match listed.get(&p) {
                Some((size, sha)) if *size == f.size && sha.eq_ignore_ascii_case(&f.sha256) => {}
                Some(_) => v.problem(&p, "the journal and the manifest record different content"),
                None => v.file(&p, f.size, &f.sha256),
            }
        }
    }
    v
}
