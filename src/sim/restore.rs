//! Whole-device backup and restore, and domain checkpoints: SecureBackup (the manifest and
//! archives it writes into temporary:), the checks of SecureRestore (manifest, credential,
//! serial, every file's size and checksum), and SaveCheckpoint / RollbackCheckpoint /
//! RemoveCheckpoint. The device applies what these decide (restart, configurations). See
//! docs/simulator.md.

use super::content;
use super::domain::Configs;
use super::filestore::{normalise, now_modified, Filestore, SimFile};
use super::fleet::DeviceSpec;
use super::reply::{error_log, error_text, ok, soap_fault, Reply, Source};
use super::request::{read, Element as Node};
use quick_xml::escape::escape;

/// The files a secure backup writes, manifest first.
pub const SECURE_BACKUP_FILES: [&str; 9] = [
    "backupmanifest.xml",
    "cert.tgz",
    "config.tgz",
    "local.tgz",
    "password-map.tgz",
    "policyframework.tgz",
    "root.tgz",
    "sharedcert.tgz",
    "store.tgz",
];

/// Archives up to this size get their real SHA-1 in the manifest; larger ones an opaque
/// checksum (computing it would stall the simulator).
const MANIFEST_SHA1_LIMIT: u64 = 16 << 20;

/// Checkpoints a domain keeps; the appliance refuses a fourth.
pub const MAX_CHECKPOINTS: usize = 3;

/// The answer to a SaveCheckpoint past [`MAX_CHECKPOINTS`] (and of the `checkpoint-full`
/// fault).
pub const CHECKPOINTS_FULL: &str =
    "Cannot save checkpoint: maximum number of checkpoints (3) reached";

/// SecureBackup into `destination`: the manifest (naming the backup `id`) and the archives.
/// `free` is the space left in temporary:. `Err`: the device's answer to a failed backup.
pub fn secure_backup(
    spec: &DeviceSpec,
    store: &mut Filestore,
    free: u64,
    action: &Node,
    id: &str,
) -> Result<(), Reply> {
    const FAILED: &str = "Error creating secure backup.";
    let cert = action.child_text("cert");
    let destination = normalise(action.child_text("destination"));
    let size = spec.backup_file_size;
    let archives = &SECURE_BACKUP_FILES[1..];
    let needed = size
        .saturating_mul(archives.len() as u64)
        .saturating_add(4096);
    if !spec.secure_backup_mode
        || !spec.certs.iter().any(|c| c == cert)
        || !destination.starts_with("temporary:/")
        || needed > free
    {
        return Err(error_text(FAILED));
    }
    let modified = now_modified();
    let mut manifest = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<secure-backup>\n  \
         <firmware-version>{}</firmware-version>\n  <build>{}</build>\n  \
         <machine-type>{}</machine-type>\n  <model-type>{}</model-type>\n  \
         <serial-number>{}</serial-number>\n  <backup-id>{}</backup-id>\n  <files>\n",
        escape(&spec.firmware),
        escape(&spec.build),
        escape(&spec.machine_type),
        escape(&spec.model),
        escape(&spec.serial),
        escape(id),
    );
    store.create_dirs(&destination);
    for name in archives {
        let sha1 = (size <= MANIFEST_SHA1_LIMIT).then(|| content::sha1_hex(&spec.name, name, size));
        let checksum = sha1
            .clone()
            .unwrap_or_else(|| format!("sim-unverified-{size}"));
        manifest.push_str(&format!(
            "    <file>\n      <filename>{name}</filename>\n      <size>{size}</size>\n      \
             <checksum>{checksum}</checksum>\n    </file>\n"
        ));
        store.put(
            format!("{destination}/{name}"),
            SimFile {
                source: Source::Content {
                    key: content::key(&spec.name, name),
                    size,
                },
                modified: modified.clone(),
                sha1,
            },
        );
    }
    manifest.push_str("  </files>\n</secure-backup>\n");
    store.put(
        format!("{destination}/{}", SECURE_BACKUP_FILES[0]),
        SimFile {
            source: Source::Bytes(bytes::Bytes::from(manifest)),
            modified,
            sha1: None,
        },
    );
    Ok(())
}

/// What a valid SecureRestore request restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    /// `validate` was `on`: check only.
    pub validate_only: bool,
    /// The manifest's `backup-id` (absent in a manifest the simulator did not write).
    pub backup_id: Option<String>,
}

fn failed(text: &str) -> Reply {
    error_text(&format!("Secure restore failed: {text}"))
}

fn is_sha1_hex(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|c| c.is_ascii_hexdigit())
}

/// Checks a SecureRestore request against the files in temporary: (`Err`: the answer).
pub fn check_secure_restore(
    spec: &DeviceSpec,
    store: &Filestore,
    action: &Node,
) -> Result<Restore, Reply> {
    let validate_only = match action.child_text("validate") {
        "on" => true,
        "off" | "" => false,
        _ => return Err(soap_fault("validate must be on or off")),
    };
    let cred = action.child_text("cred");
    let source = action.child_text("source");
    let dir = normalise(source);
    if !spec.creds.iter().any(|c| c == cred) {
        return Err(failed(&format!(
            "identification credential '{cred}' not found."
        )));
    }
    let Some(manifest) = store
        .files
        .get(&format!("{dir}/{}", SECURE_BACKUP_FILES[0]))
    else {
        return Err(failed(&format!("no backupmanifest.xml in {source}.")));
    };
    let not_manifest = || failed("backupmanifest.xml is not a secure-backup manifest.");
    let bytes = manifest.source.bytes(4 << 20).map_err(|_| not_manifest())?;
    let root = read(&bytes).map_err(|_| not_manifest())?;
    if root.name != "secure-backup" {
        return Err(not_manifest());
    }
    let serial = root.child_text("serial-number");
    if serial != spec.serial {
        return Err(failed(&format!(
            "the backup is of appliance {serial}, this appliance is {}.",
            spec.serial
        )));
    }
    let files = root
        .child("files")
        .map(|f| f.children_named("file").collect::<Vec<&Node>>())
        .unwrap_or_default();
    for f in files {
        let name = f.child_text("filename");
        let Some(file) = store.files.get(&format!("{dir}/{name}")) else {
            return Err(failed(&format!("{name} is missing.")));
        };
        let want: u64 = f.child_text("size").parse().unwrap_or(u64::MAX);
        let got = file.source.size();
        if got != want {
            return Err(failed(&format!(
                "{name} is {got} bytes, the manifest says {}.",
                f.child_text("size")
            )));
        }
        let checksum = f.child_text("checksum");
        if is_sha1_hex(checksum) {
            let actual = match &file.sha1 {
                Some(sha1) => Some(sha1.clone()),
                None => file
                    .source
                    .bytes(64 << 20)
                    .ok()
                    .map(|b| hex::encode(<sha1::Sha1 as sha1::Digest>::digest(&b))),
            };
            if actual.is_some_and(|a| !a.eq_ignore_ascii_case(checksum)) {
                return Err(failed(&format!("{name} does not match its checksum.")));
            }
        }
    }
    let id = root.child_text("backup-id");
    Ok(Restore {
        validate_only,
        backup_id: (!id.is_empty()).then(|| id.to_string()),
    })
}

/// SaveCheckpoint / RollbackCheckpoint / RemoveCheckpoint of a domain. `full`: the
/// `checkpoint-full` fault (SaveCheckpoint refused as if the domain had no room).
pub fn checkpoint(configs: &mut Configs, action: &Node, full: bool) -> Reply {
    let name = action.child_text("ChkName");
    let exists = configs.checkpoints.iter().position(|(n, _)| n == name);
    match action.name.as_str() {
        "SaveCheckpoint" => {
            if name.is_empty() {
                return error_log("Cannot save checkpoint: a checkpoint name is required");
            }
            if full || configs.checkpoints.len() >= MAX_CHECKPOINTS {
                return error_log(CHECKPOINTS_FULL);
            }
            if exists.is_some() {
                return error_log(&format!(
                    "Cannot save checkpoint: checkpoint '{name}' already exists"
                ));
            }
            let snapshot = configs.running.clone();
            configs.checkpoints.push((name.to_string(), snapshot));
            ok()
        }
        "RollbackCheckpoint" => match exists {
            Some(i) => {
                let snapshot = configs.checkpoints[i].1.clone();
                configs.saved = snapshot.clone();
                configs.running = snapshot;
                ok()
            }
            None => error_log(&format!(
                "Cannot roll back: checkpoint '{name}' does not exist"
            )),
        },
        _ => match exists {
            Some(i) => {
                configs.checkpoints.remove(i);
                ok()
            }
            None => error_log(&format!(
                "Cannot remove checkpoint: checkpoint '{name}' does not exist"
            )),
        },
    }
}
