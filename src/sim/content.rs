//! Deterministic simulated content, so a test can check what it downloaded.
//!
//! A secure-backup file named `file` (base name, e.g. `config.tgz`) of `size` bytes on device
//! `device` is:
//!
//! ```text
//! k       = first 8 bytes, little-endian, of SHA-256(device || 0x00 || file)   (a u64)
//! word(j) = splitmix64(k + (j + 1) * 0x9E3779B97F4A7C15)                       (wrapping, u64)
//! byte i  = byte (i mod 8) of word(i / 8), little-endian;   0 <= i < size
//! ```
//!
//! where `splitmix64(z)` is `z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
//! z *= 0x94D049BB133111EB; z ^= z >> 31` (wrapping multiplication). Byte `i` does not depend
//! on `size`. Fast (gigabytes per second) and random access, so the simulator streams any
//! size without storing it.
//!
//! Exports are small ZIPs (stored, timestamps fixed at 1980-01-01) built by [`export_zip`] and
//! [`all_domains_zip`] from a domain's [`Config`].

use super::domain::{file_src, Config};
use sha2::{Digest, Sha256};
use std::io::Write;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The key of a file's content.
pub fn key(device: &str, file: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(device.as_bytes());
    hasher.update([0u8]);
    hasher.update(file.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

fn word(key: u64, j: u64) -> u64 {
    let mut z = key.wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the content bytes starting at `offset`, for content key `key`.
pub fn fill(key: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0usize;
    // Leading bytes up to a word boundary.
    while i < buf.len() && (offset + i as u64) % 8 != 0 {
        let pos = offset + i as u64;
        buf[i] = word(key, pos / 8).to_le_bytes()[(pos % 8) as usize];
        i += 1;
    }
    let mut j = (offset + i as u64) / 8;
    let mut chunks = buf[i..].chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(key, j).to_le_bytes());
        j += 1;
    }
    let rest = chunks.into_remainder();
    let last = word(key, j).to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&last[..n]);
}

/// The whole content of `file` on `device`, `size` bytes (for tests: keep it small).
pub fn expected_bytes(device: &str, file: &str, size: u64) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(usize::MAX)];
    fill(key(device, file), 0, &mut buf);
    buf
}

/// The SHA-256 (lower-case hex) of the content of `file` on `device`, computed in blocks:
/// fine for any size.
pub fn expected_sha256(device: &str, file: &str, size: u64) -> String {
    let k = key(device, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        fill(k, offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    hex::encode(hasher.finalize())
}

/// The hex SHA-1 of the content (the checksum written into `backupmanifest.xml`). Computed
/// once per key and size in a process (secure backups repeat the same files).
pub fn sha1_hex(device: &str, file: &str, size: u64) -> String {
    use sha1::Sha1;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<(u64, u64), String>>> = OnceLock::new();
    let k = key(device, file);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&(k, size)).cloned()) {
        return hit;
    }
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        fill(k, offset, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    let hex = hex::encode(hasher.finalize());
    if let Ok(mut c) = cache.lock() {
        c.insert((k, size), hex.clone());
    }
    hex
}

/// What an export names.
#[derive(Debug, Clone)]
pub struct ExportFacts<'a> {
    pub device: &'a str,
    pub domain: &'a str,
    pub firmware: &'a str,
    pub build: &'a str,
    /// Saved (true) or running (false) configuration.
    pub persisted: bool,
    pub comment: &'a str,
    /// The configuration exported (the saved or the running one, as `persisted` says).
    pub config: &'a Config,
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// The `export.xml` of a domain export: `export-details`, then the configuration's objects
/// and files (docs/simulator.md "Exports").
pub fn export_xml(f: &ExportFacts<'_>) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <datapower-configuration version=\"3\">\n\
         \x20 <export-details>\n\
         \x20   <description>Exported Configuration</description>\n\
         \x20   <user>admin</user>\n\
         \x20   <domain>{domain}</domain>\n\
         \x20   <comment>{comment}</comment>\n\
         \x20   <product-id>5725</product-id>\n\
         \x20   <product>IDG</product>\n\
         \x20   <device-name>{device}</device-name>\n\
         \x20   <firmware-version>{firmware}</firmware-version>\n\
         \x20   <firmware-build>{build}</firmware-build>\n\
         \x20   <persisted>{persisted}</persisted>\n\
         \x20 </export-details>\n\
         {elements}\
         </datapower-configuration>\n",
        domain = escape(f.domain),
        comment = escape(f.comment),
        device = escape(f.device),
        firmware = escape(f.firmware),
        build = escape(f.build),
        persisted = f.persisted,
        elements = f.config.export_elements(f.domain),
    )
}

fn zip_of(entries: &[(String, &[u8])]) -> Vec<u8> {
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default());
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        // Writing into memory cannot fail but for a bug; an empty archive makes it visible.
        if writer.start_file(name.as_str(), options).is_err() || writer.write_all(bytes).is_err() {
            return Vec::new();
        }
    }
    writer.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// A domain export: `export.xml`, then each file of the configuration at its `src` path.
pub fn export_zip(f: &ExportFacts<'_>) -> Vec<u8> {
    let xml = export_xml(f);
    let mut entries: Vec<(String, &[u8])> = vec![("export.xml".to_string(), xml.as_bytes())];
    for (name, bytes) in &f.config.files {
        entries.push((file_src(name).1, bytes));
    }
    zip_of(&entries)
}

/// An all-domains backup: one `DOMAIN.zip` (persisted export) per domain, from each domain's
/// saved configuration.
pub fn all_domains_zip(
    device: &str,
    domains: &[(String, &Config)],
    firmware: &str,
    build: &str,
    comment: &str,
) -> Vec<u8> {
    let zips: Vec<(String, Vec<u8>)> = domains
        .iter()
        .map(|(domain, config)| {
            let facts = ExportFacts {
                device,
                domain,
                firmware,
                build,
                persisted: true,
                comment,
                config,
            };
            (format!("{domain}.zip"), export_zip(&facts))
        })
        .collect();
    let entries: Vec<(String, &[u8])> = zips.iter().map(|(n, b)| (n.clone(), &b[..])).collect();
    zip_of(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_random_access() {
        let whole = expected_bytes("QA1", "config.tgz", 1000);
        for offset in [0u64, 1, 7, 8, 9, 333] {
            let mut part = vec![0u8; 50];
            fill(key("QA1", "config.tgz"), offset, &mut part);
            assert_eq!(part, whole[offset as usize..offset as usize + 50]);
        }
        assert_ne!(whole, expected_bytes("QA2", "config.tgz", 1000));
        assert_eq!(expected_bytes("QA1", "config.tgz", 10), whole[..10]);
    }

    #[test]
    fn hash_helpers_match_the_bytes() {
        let bytes = expected_bytes("QA1", "cert.tgz", 3_000_001);
        assert_eq!(
            expected_sha256("QA1", "cert.tgz", 3_000_001),
            hex::encode(Sha256::digest(&bytes))
        );
    }
}
