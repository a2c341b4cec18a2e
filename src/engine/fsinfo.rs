//! What the store's filesystem is: remote or not (the mount table), and its free space\n//! (statvfs).

use crate::check::Space;
use std::path::Path;

/// Filesystem types (as the mount table names them) of network and cluster filesystems.
/// A FUSE filesystem counts only when its subtype is one of these: a local FUSE mount is not
/// remote.
const REMOTE_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smb2",
    "smbfs",
    "9p",
    "afs",
    "ceph",
    "coda",
    "ncpfs",
    "lustre",
    "gpfs",
    "panfs",
    "beegfs",
    "glusterfs",
    "ocfs2",
    "gfs2",
    "orangefs",
    "pvfs2",
    "fuse.sshfs",
    "fuse.glusterfs",
    "fuse.ceph",
    "fuse.s3fs",
    "fuse.rclone",
    "fuse.gcsfuse",
    "fuse.juicefs",
    "fuse.davfs2",
    "fuse.cephfs",
];

/// The filesystem a path lives on, from the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Its type as the mount table names it: `nfs4`, `ext4`, `fuse.sshfs`.
    pub fstype: String,
    /// Where it is mounted.
    pub mount_point: std::path::PathBuf,
}

impl Mount {
    /// Whether it is a network or cluster filesystem.
    pub fn is_remote(&self) -> bool {
        REMOTE_TYPES.contains(&self.fstype.as_str())
    }
}

/// The mount `path` lives on (its real path: symlinks resolved), read from
/// `/proc/self/mountinfo`.
pub fn mount_of(path: &Path) -> std::io::Result<Mount> {
    let real = std::fs::canonicalize(path)?;
    let table = std::fs::read_to_string("/proc/self/mountinfo")?;
    mount_in(&table, &real).ok_or_else(|| {
        std::io::Error::other(format!(
            "{} is in no mount of /proc/self/mountinfo",
            real.display()
        ))
    })
}

/// The entry of mount table `table` (mountinfo format) whose mount point holds `path` most
/// closely; the last such entry when several are stacked on one point.
pub fn mount_in(table: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in table.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4) else {
            continue;
        };
        let Some(fstype) = right.split(' ').next() else {
            continue;
        };
        let point = std::path::PathBuf::from(unescape(point));
        if !path.starts_with(&point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|b| point.as_os_str().len() >= b.mount_point.as_os_str().len());
        if longer {
            best = Some(Mount {
                fstype: fstype.to_string(),
                mount_point: point,
            });
        }
    }
    best
}

/// Mount table fields escape space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\'
                && (b'0'..=b'3').contains(&d[0])
                && d[1..].iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match escape {
            Some(d) => {
                let n = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                out.push(u8::try_from(n).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /data rw shared:2 - nfs4 filer:/export/data rw,vers=4.2
31 30 0:41 / /data/local rw shared:3 - fuse.mylocalfs mylocalfs rw
32 22 0:42 / /mnt/ssh\\040share rw shared:4 - fuse.sshfs user@host:/ rw
33 22 0:43 / /srv/smb rw shared:5 - cifs //nas/backup rw
";

    #[test]
    fn the_closest_mount_decides() {
        let at = |p: &str| mount_in(TABLE, Path::new(p)).unwrap();
        assert_eq!(at("/data/store").fstype, "nfs4");
        assert!(at("/data/store").is_remote());
        // A local FUSE filesystem is not remote, even under an NFS mount.
        assert_eq!(at("/data/local/x").fstype, "fuse.mylocalfs");
        assert!(!at("/data/local/x").is_remote());
        assert!(at("/mnt/ssh share/backups").is_remote());
        assert_eq!(
            at("/mnt/ssh share/backups").mount_point,
            Path::new("/mnt/ssh share")
        );
        assert!(at("/srv/smb/dp").is_remote());
        assert_eq!(at("/home/x").fstype, "ext4");
        assert!(!at("/home/x").is_remote());
        // `/database` is not under `/data`.
        assert_eq!(at("/database").fstype, "ext4");
    }

    #[test]
    fn this_machines_root_is_found() {
        let m = mount_of(Path::new("/")).unwrap();
        assert!(!m.fstype.is_empty());
    }
}
