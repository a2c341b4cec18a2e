//! A simulated filestore (the device's `temporary:`; a domain's `local:` is listed through
//! one too): files by normalised name (`temporary:/dir/file`) and directories, and the SOMA
//! answers that read and change it (get-filestore, get-file, CreateDir, RemoveDir,
//! DeleteFile). A leaf beside the device.

use super::domain::Config;
use super::reply::{error_log, error_text, ok, payload, soap_fault, Reply, Source, STRAY_NS};
use quick_xml::escape::escape;
use std::collections::{BTreeMap, BTreeSet};

/// A stored file.
#[derive(Debug, Clone)]
pub struct SimFile {
    pub source: Source,
    /// `2024-01-01 10:00:00`, as get-filestore shows it.
    pub modified: String,
    /// Hex SHA-1 of the bytes, when known (secure-backup archives, manifests, uploads).
    pub sha1: Option<String>,
}

/// Files and directories by normalised name.
#[derive(Debug, Default)]
pub struct Filestore {
    pub files: BTreeMap<String, SimFile>,
    pub dirs: BTreeSet<String>,
}

/// The device's local time as get-filestore shows it.
pub fn now_modified() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `temporary:///a/b/` and `temporary:/a/b` both become `temporary:/a/b`; `temporary:///`
/// becomes `temporary:`.
pub fn normalise(name: &str) -> String {
    match name.find(':') {
        Some(colon) => {
            let rest = name[colon + 1..].trim_matches('/');
            if rest.is_empty() {
                name[..=colon].to_string()
            } else {
                format!("{}/{rest}", &name[..=colon])
            }
        }
        None => name.trim_matches('/').to_string(),
    }
}

/// The directory holding a normalised name (`temporary:` for a top-level entry).
pub fn parent(name: &str) -> &str {
    match name.rfind('/') {
        Some(slash) => &name[..slash],
        None => name.find(':').map(|c| &name[..=c]).unwrap_or(""),
    }
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl Filestore {
    /// A domain's configuration files as a filestore (get-file and get-filestore of
    /// `local:`).
    pub fn of_config(config: &Config) -> Filestore {
        let mut store = Filestore::default();
        for (name, bytes) in &config.files {
            let file = SimFile {
                source: Source::Bytes(bytes.clone()),
                modified: "2024-01-01 00:00:00".into(),
                sha1: None,
            };
            store.put(normalise(name), file);
        }
        store
    }

    /// Bytes held under `location` (`temporary:`).
    pub fn used(&self, location: &str) -> u64 {
        self.files
            .iter()
            .filter(|(name, _)| name.starts_with(location))
            .fold(0u64, |sum, (_, f)| sum.saturating_add(f.source.size()))
    }

    /// Creates `dir` (normalised) and its parents.
    pub fn create_dirs(&mut self, dir: &str) {
        let mut d = dir.to_string();
        while !d.ends_with(':') && !d.is_empty() {
            self.dirs.insert(d.clone());
            d = parent(&d).to_string();
        }
    }

    /// Stores `file` at the normalised `name`, creating its directories.
    pub fn put(&mut self, name: String, file: SimFile) {
        let dir = parent(&name).to_string();
        self.create_dirs(&dir);
        self.files.insert(name, file);
    }

    /// `get-filestore` of `location`.
    pub fn listing(&self, location: &str) -> Reply {
        let location = normalise(location);
        if !location.ends_with(':') {
            return soap_fault("location must be a location such as temporary:");
        }
        let mut inner = format!(
            "         <dp:filestore>\n            <location name=\"{}\" xmlns:env=\"{STRAY_NS}\">\n",
            escape(&location)
        );
        self.list_into(&location, 4, &mut inner);
        inner.push_str("            </location>\n         </dp:filestore>");
        Reply::Xml(super::reply::document(&inner))
    }

    fn list_into(&self, dir: &str, depth: usize, out: &mut String) {
        let pad = "   ".repeat(depth) + "   ";
        for (name, file) in self.files.iter().filter(|(n, _)| parent(n) == dir) {
            out.push_str(&format!(
                "{pad}<file name=\"{}\">\n{pad}   <size>{}</size>\n{pad}   <modified>{}</modified>\n{pad}</file>\n",
                escape(base_name(name)),
                file.source.size(),
                file.modified
            ));
        }
        for sub in self.dirs.iter().filter(|d| parent(d) == dir) {
            out.push_str(&format!("{pad}<directory name=\"{}\">\n", escape(sub)));
            self.list_into(sub, depth + 1, out);
            out.push_str(&format!("{pad}</directory>\n"));
        }
    }

    /// `get-file` of `name` (as the request spelled it).
    pub fn get(&self, name: &str) -> Reply {
        match self.files.get(&normalise(name)) {
            Some(file) => payload(Some(name), file.source.clone()),
            None => error_text("Cannot read the specified file"),
        }
    }

    /// `RemoveDir`: the directory and everything in it.
    pub fn remove_dir(&mut self, dir: &str) -> Reply {
        let dir = normalise(dir);
        if !self.dirs.contains(&dir) {
            return error_log(&format!(
                "Cannot delete directory {dir}: it does not exist."
            ));
        }
        let inside = |n: &String| n == &dir || n.starts_with(&format!("{dir}/"));
        self.dirs.retain(|d| !inside(d));
        self.files.retain(|n, _| !inside(n));
        ok()
    }

    /// `DeleteFile`.
    pub fn delete(&mut self, name: &str) -> Reply {
        match self.files.remove(&normalise(name)) {
            Some(_) => ok(),
            None => error_log("Cannot delete file: it does not exist."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_whatever_the_slashes() {
        assert_eq!(normalise("temporary:///a/b/"), "temporary:/a/b");
        assert_eq!(normalise("temporary:/a/b"), "temporary:/a/b");
        assert_eq!(normalise("temporary:///"), "temporary:");
        assert_eq!(normalise("temporary:"), "temporary:");
        assert_eq!(parent("temporary:/a"), "temporary:");
        assert_eq!(parent("temporary:/a/b"), "temporary:/a");
    }
}
