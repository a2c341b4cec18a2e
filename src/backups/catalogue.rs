//! The catalogue of the store: every backup its manifests describe, and the choice of the
//! backup a restore reads (`latest`, `run(N)`, `path("...")`).

use super::layout::{self, find_manifests, hash_file, sanitize, Manifest};
use crate::check::BackupRef;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// `SECURE_BACKUP`: a secure backup's folder.
pub const SECURE_BACKUP: &str = "SECURE_BACKUP";
/// `EXPORT_DOMAIN`: a domain export (or an all-domains export, domain `all-domains`).
pub const EXPORT_DOMAIN: &str = "EXPORT_DOMAIN";
/// The domain of an all-domains export's manifest.
pub const ALL_DOMAINS: &str = "all-domains";

/// One backup of the store, from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The manifest (absolute).
    pub manifest_path: PathBuf,
    /// What it says.
    pub manifest: Manifest,
    /// Its files (absolute), in the manifest's order.
    pub files: Vec<PathBuf>,
    /// Their total size, as recorded.
    pub bytes: u64,
}

impl Entry {
    /// The file a restore reads: a secure backup's folder, or an export's persisted ZIP.
    pub fn source(&self) -> Option<PathBuf> {
        if self.manifest.action == SECURE_BACKUP {
            return self.manifest_path.parent().map(Path::to_path_buf);
        }
        self.files
            .iter()
            .find(|f| f.to_string_lossy().ends_with("-persisted.zip"))
            .or(self.files.first())
            .cloned()
    }
}

/// Every manifest under `root`, read; those that cannot be read (and a folder that cannot
/// be listed), with why. A `root` that does not exist holds none.
pub fn scan(root: &Path) -> (Vec<Entry>, Vec<(PathBuf, String)>) {
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    let found = match find_manifests(root) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            unreadable.push((root.to_path_buf(), format!("cannot list it: {e}")));
            Vec::new()
        }
    };
    for path in found {
        match layout::read_manifest::<Manifest>(&path) {
            Ok(manifest) => {
                let dir = path.parent().unwrap_or(root);
                let files: Vec<PathBuf> = manifest
                    .files
                    .iter()
                    .filter_map(|f| layout::inside(dir, Path::new(&f.path)))
                    .collect();
                let bytes = manifest.files.iter().map(|f| f.size).sum();
                entries.push(Entry {
                    manifest_path: path,
                    manifest,
                    files,
                    bytes,
                });
            }
            Err(why) => unreadable.push((path, why)),
        }
    }
    entries.sort_by(|a, b| {
        (&a.manifest.device, &a.manifest.domain, a.manifest.started).cmp(&(
            &b.manifest.device,
            &b.manifest.domain,
            b.manifest.started,
        ))
    });
    (entries, unreadable)
}

/// The backup a restore reads, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The export ZIP, or the secure backup's folder (absolute).
    pub path: PathBuf,
    /// Its manifest, when the store has one for it.
    pub entry: Option<Entry>,
}

/// Finds the backup `from` names for `device` (and `domain`, for imports: `None` chooses a
/// secure backup).
pub fn choose(
    root: &Path,
    device: &str,
    domain: Option<&str>,
    from: &BackupRef,
) -> Result<Chosen, String> {
    let what = match domain {
        Some(d) => format!("export of {device}/{d}"),
        None => format!("secure backup of {device}"),
    };
    match from {
        BackupRef::Path(p) => {
            let path = if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                layout::inside(root, Path::new(p))
                    .ok_or_else(|| format!("path({p:?}) leaves the store"))?
            };
            if !path.exists() {
                return Err(format!("{}: no such file or folder", path.display()));
            }
            // Its manifest, when it has one: inside a secure backup's folder, beside an export.
            let near = if path.is_dir() {
                path.clone()
            } else {
                path.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let canonical = std::fs::canonicalize(&path).ok();
            let entry = scan(&near).0.into_iter().find(|e| {
                canonical.is_some()
                    && e.source().and_then(|s| std::fs::canonicalize(s).ok()) == canonical
            });
            Ok(Chosen { path, entry })
        }
        BackupRef::Latest | BackupRef::Run(_) => {
            // Only the device's folder: a fleet's store holds thousands of others.
            let (entries, _) = scan(&root.join(sanitize(device)));
            let action = if domain.is_some() {
                EXPORT_DOMAIN
            } else {
                SECURE_BACKUP
            };
            let found = entries
                .into_iter()
                .filter(|e| e.manifest.device == device && e.manifest.action == action)
                .filter(|e| match from {
                    BackupRef::Run(n) => e.manifest.run == *n,
                    _ => true,
                })
                // A domain's own export, or an all-domains export that holds the domain.
                .filter(|e| match domain {
                    None => true,
                    Some(d) if e.manifest.domain == d => true,
                    Some(d) => {
                        e.manifest.domain == ALL_DOMAINS
                            && e.source()
                                .is_some_and(|s| super::export::all_domains_holds(&s, d))
                    }
                })
                // The newest; at the same time, the domain's own export.
                .max_by_key(|e| (e.manifest.started, e.manifest.domain != ALL_DOMAINS));
            let Some(entry) = found else {
                return Err(match from {
                    BackupRef::Run(n) => format!("run {n} wrote no {what} in {}", root.display()),
                    _ => format!("the store {} holds no {what}", root.display()),
                });
            };
            let path = entry
                .source()
                .ok_or_else(|| format!("{}: lists no files", entry.manifest_path.display()))?;
            Ok(Chosen {
                path,
                entry: Some(entry),
            })
        }
    }
}

/// Checks the chosen backup's files against its manifest (size and SHA-256).
pub fn check_files(chosen: &Chosen) -> Result<(), String> {
    let Some(entry) = &chosen.entry else {
        return Ok(());
    };
    for (file, recorded) in entry.files.iter().zip(&entry.manifest.files) {
        // An export's other file (the non-persisted ZIP) is not read by the restore.
        if entry.manifest.action == EXPORT_DOMAIN && file != &chosen.path {
            continue;
        }
        let (size, sha) = hash_file(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if size != recorded.size || sha != recorded.sha256 {
            return Err(format!(
                "{}: does not match its manifest ({} bytes, sha256 {}; recorded {} bytes, {})",
                file.display(),
                size,
                &sha[..12.min(sha.len())],
                recorded.size,
                &recorded.sha256[..12.min(recorded.sha256.len())]
            ));
        }
    }
    Ok(())
}

/// Compares firmware versions such as `IDG.10.5.0.5` by their numbers (a prefix and any
/// text are ignored); `None` when either has no number.
pub fn compare_firmware(a: &str, b: &str) -> Option<Ordering> {
    let numbers = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let (x, y) = (numbers(a), numbers(b));
    if x.is_empty() || y.is_empty() {
        return None;
    }
    Some(x.cmp(&y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_versions_compare_by_numbers() {
        assert_eq!(
            compare_firmware("IDG.10.5.0.5", "IDG.10.5.0.12"),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_firmware("IDG.2018.4.1.0", "IDG.10.5.0.5"),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_firmware("IDG.10.5", "10.5"), Some(Ordering::Equal));
        assert_eq!(compare_firmware("unknown", "10.5"), None);
    }
}
