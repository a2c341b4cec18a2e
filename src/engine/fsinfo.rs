//! What the store's filesystem is: remote or not, and its free space (statfs, statvfs).

use crate::check::Space;
use std::path::Path;

/// Filesystem magic numbers (statfs `f_type`) of network and cluster filesystems.
const REMOTE_MAGIC: &[(u64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x0102_1997, "9p"),
    (0x5346_414F, "afs"),
    (0x00C3_6400, "ceph"),
    (0x6573_5546, "fuse (sshfs, glusterfs, s3fs...)"),
    (0x7375_7245, "coda"),
    (0x564C, "ncp"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0xAAD7_AAEA, "panfs"),
];

/// The filesystem type of `path` if it is a remote one.
pub fn remote_kind(path: &Path) -> std::io::Result<Option<&'static str>> {
    let st = rustix::fs::statfs(path)?;
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as u64;
    Ok(REMOTE_MAGIC
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| *n))
}

/// Free bytes (for unprivileged writers) and total bytes of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let st = rustix::fs::statvfs(path)?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    Ok((free, total))
}

/// Whether `path` has the free space `min` asks for; the error names what is missing.
pub fn check_space(path: &Path, min: Option<Space>) -> Result<(), String> {
    let Some(min) = min else { return Ok(()) };
    let (free, total) =
        space(path).map_err(|e| format!("cannot read free space of {}: {e}", path.display()))?;
    let need = match min {
        Space::Bytes(b) => b,
        Space::Percent(p) => total / 100 * u64::from(p),
    };
    if free < need {
        return Err(format!(
            "the store {} has {} MiB free, {} MiB required",
            path.display(),
            free >> 20,
            need >> 20
        ));
    }
    Ok(())
}
