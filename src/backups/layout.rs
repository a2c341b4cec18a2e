//! The layout of the store (where each backup's files go), names made into path components,
//! manifests, and the writes that are complete or absent. A leaf of the module: the catalogue
//! and the export reader build on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// The run's timestamp as the layout writes it: `YYYY-MM-DD-HH-MM-SS-mmm`, UTC.
pub fn timestamp(started: DateTime<Utc>) -> String {
    started.format("%Y-%m-%d-%H-%M-%S-%3f").to_string()
}

/// A device or domain name made into one safe path component, reversibly: ASCII letters,
/// digits, `_` and `-` are kept, and so is `.` except at the start; every other byte of the
/// name's UTF-8 (`/`, spaces, `%`, a leading `.`, `日本`...) becomes `%XX`. Two names never
/// share a component (`a/b` is `a%2Fb`, `a_b` stays `a_b`); the result never contains a
/// separator, is never `.` or `..`, and never starts with `.`, so it never looks like one of
/// dpplan's temporary names ([`is_tmp_name`]). The empty name is `%`.
pub fn sanitize(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Joins `rel` under `root`, refusing anything that would leave it.
pub fn inside(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut out = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Where a task's files go, relative to the store root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `<Device>/secure-backup/<ts>/`: the appliance's files and `manifest.json`.
    SecureBackup {
        /// The directory, relative to the store.
        dir: PathBuf,
    },
    /// `<Device>/domain/<Domain>/<Domain>-export-<ts>-(non)persisted.zip` and
    /// `<Domain>-export-<ts>.manifest.json`.
    Export {
        /// The directory, relative to the store.
        dir: PathBuf,
        /// `<Domain>-export-<ts>`.
        stem: String,
    },
}

impl Layout {
    /// The layout for a secure backup of `device`.
    pub fn secure_backup(device: &str, ts: &str) -> Layout {
        Layout::SecureBackup {
            dir: PathBuf::from(sanitize(device))
                .join("secure-backup")
                .join(ts),
        }
    }

    /// The layout for an export of `domain` (`all-domains` for all) of `device`.
    pub fn export(device: &str, domain: &str, ts: &str) -> Layout {
        let d = sanitize(domain);
        Layout::Export {
            dir: PathBuf::from(sanitize(device)).join("domain").join(&d),
            stem: format!("{d}-export-{ts}"),
        }
    }

    /// Where the manifest goes, relative to the store.
    pub fn manifest(&self) -> PathBuf {
        match self {
            Layout::SecureBackup { dir } => dir.join("manifest.json"),
            Layout::Export { dir, stem } => dir.join(format!("{stem}.manifest.json")),
        }
    }
}

pub use crate::appliance::payload::create_private;

/// Creates `dir` and its parents (each accessible to its owner only, whatever the umask),
/// fsyncing each directory created and its parent, so a rename into it survives a crash.
pub fn create_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsync of a directory (its entries: created, renamed, removed files).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` and fsyncs the directory of `to` (and of `from` if different).
pub fn commit_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if let Some(d) = to.parent() {
        sync_dir(d)?;
    }
    if let (Some(a), Some(b)) = (from.parent(), to.parent()) {
        if a != b {
            sync_dir(a)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: `path.tmp`, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = tmp_name(path);
    let result = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        commit_rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The temporary name a file is written under before its rename: `.NAME.dpplan-tmp`.
pub fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.dpplan-tmp"))
}

/// The temporary directory a secure backup of task `task` downloads into, beside its final
/// directory `final_dir` (renamed into place when complete).
pub fn secure_backup_tmp(final_dir: &Path, ts: &str, task: u32) -> PathBuf {
    final_dir.with_file_name(format!(".{ts}.dpplan-tmp-{task}"))
}

/// The name of an export file: `<stem>-persisted.zip` or `<stem>-nonpersisted.zip`.
pub fn export_file(stem: &str, persisted: bool) -> String {
    let kind = if persisted {
        "persisted"
    } else {
        "nonpersisted"
    };
    format!("{stem}-{kind}.zip")
}

/// How many bytes the download step of a task has written so far, read from the store:
/// the files in a secure backup's temporary directory, or an export's files, complete or
/// still under their temporary names. For progress displays; 0 when nothing is there yet.
pub fn task_bytes(
    root: &Path,
    device: &str,
    target: &crate::compile::Target,
    task: u32,
    started: DateTime<Utc>,
) -> u64 {
    let ts = timestamp(started);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    match target {
        crate::compile::Target::Device => {
            let Layout::SecureBackup { dir } = Layout::secure_backup(device, &ts) else {
                return 0;
            };
            let tmp = secure_backup_tmp(&root.join(dir), &ts, task);
            std::fs::read_dir(tmp)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        }
        other => {
            let Layout::Export { dir, stem } = Layout::export(device, other.domain_label(), &ts)
            else {
                return 0;
            };
            [true, false]
                .iter()
                .map(|&persisted| {
                    let f = root.join(&dir).join(export_file(&stem, persisted));
                    size(&f) + size(&tmp_name(&f))
                })
                .sum()
        }
    }
}

/// Whether a file name is one of dpplan's temporary names.
pub fn is_tmp_name(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(".dpplan-tmp") || name.contains(".dpplan-tmp-"))
}

/// SHA-256 and size of a file, read back from disk.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    hash_reader(File::open(path)?)
}

/// Size and SHA-256 (hex) of everything `r` reads, a megabyte at a time.
pub fn hash_reader(mut r: impl Read) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex::encode(h.finalize())))
}

/// Whether a file name is a dpplan manifest's.
pub fn is_manifest_name(name: &str) -> bool {
    !is_tmp_name(name) && (name == "manifest.json" || name.ends_with(".manifest.json"))
}

/// Every manifest below `dir`, sorted; dpplan's temporary files and folders are skipped.
pub fn find_manifests(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            if is_tmp_name(&name) {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(&path, out)?;
            } else if is_manifest_name(&name) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Reads a manifest as `T` (the whole [`Manifest`], or the fields a reader needs).
pub fn read_manifest<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("not a dpplan manifest: {e}"))
}

/// Firmware facts in a manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ManifestFirmware {
    /// Firmware version.
    pub version: String,
    /// Build.
    pub build: String,
    /// Machine type.
    pub machine_type: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
}

/// One file in a manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the manifest's folder.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `manifest.json`: what a task wrote and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The run.
    pub run: u64,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: String,
    /// The domain (`all-domains` for secure backups and all-domain exports).
    pub domain: String,
    /// `SECURE_BACKUP` or `EXPORT_DOMAIN`.
    pub action: String,
    /// The appliance's firmware facts.
    #[serde(default)]
    pub firmware: ManifestFirmware,
    /// When the task's backup step started.
    pub started: DateTime<Utc>,
    /// When its files were complete.
    pub finished: DateTime<Utc>,
    /// The files.
    pub files: Vec<ManifestFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape() {
        assert_eq!(sanitize("../../etc"), "%2E.%2F..%2Fetc");
        assert_eq!(sanitize(".."), "%2E.");
        assert_eq!(sanitize("a/b\\c"), "a%2Fb%5Cc");
        assert_eq!(sanitize(""), "%");
        assert_eq!(sanitize("QA1"), "QA1");
        assert_eq!(sanitize("my-domain_2.0"), "my-domain_2.0");
        // Names that used to share a folder no longer do.
        for (a, b) in [
            ("a/b", "a_b"),
            ("..", "日本"),
            ("QA 1", "QA_1"),
            ("a%2Fb", "a/b"),
        ] {
            assert_ne!(sanitize(a), sanitize(b), "{a} {b}");
        }
        // No output name is a temporary name.
        assert!(!is_tmp_name(&sanitize(".dpplan-tmp-x")));
        assert!(!is_tmp_name(&export_file(&sanitize(".dpplan-tmp-x"), true)));
        for bad in ["../../etc", "..", "/", "a/../../b", "."] {
            let s = sanitize(bad);
            assert!(!s.contains('/') && s != "." && s != "..", "{bad} -> {s}");
        }
        assert!(inside(Path::new("/s"), Path::new("../x")).is_none());
        assert_eq!(
            inside(Path::new("/s"), Path::new("a/b")),
            Some(PathBuf::from("/s/a/b"))
        );
    }

    #[test]
    fn timestamp_format() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T01:02:03.045Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(t), "2026-11-22-01-02-03-045");
    }
}
