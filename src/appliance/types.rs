//! What the engine sees of one appliance: the [`Appliance`] trait, the facts it returns
//! (firmware, domains, quiesce states, files) and the settings to reach it.
//!
//! Below the client and the parsers: it imports only siblings that import nothing of this
//! module (the error type, the request path, the address format), never `mod.rs`.

use super::error::{ApplianceError, ErrorKind};
use super::{http, soma};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest export accepted unless the plan says otherwise (`max_export_size`).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// How long one download may take unless the inventory says otherwise (`download_timeout`).
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// How to reach one appliance's XML management interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The device's name in the inventory; every error names it.
    pub device: String,
    /// Host name or address.
    pub host: String,
    /// XML management port (5550 on a real appliance).
    pub port: u16,
    /// User for HTTP Basic auth.
    pub user: String,
    /// Password for HTTP Basic auth.
    pub password: String,
    /// HTTPS when true (the default); plain HTTP when false (simulators only).
    pub tls: bool,
    /// PEM file with the CA (or the self-signed certificate) the appliance's certificate chains to.
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate and host name: explicit, never a default.
    pub insecure: bool,
    /// Limit for establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit for a whole request that carries no payload (status, actions, listings).
    pub request_timeout: Duration,
    /// Limit for one read while a payload (file, export) streams; there is no total limit,
    /// since a backup file may take minutes.
    pub read_timeout: Duration,
    /// Largest response body accepted when it carries no payload.
    pub max_response_bytes: u64,
    /// Largest file an export may decode to (a secure backup's files are held to the sizes
    /// the appliance listed).
    pub max_download_bytes: u64,
    /// The longest one download (an export, one file of a secure backup) may take in all,
    /// however steadily its bytes trickle in.
    pub download_timeout: Duration,
}

impl ConnectionConfig {
    /// Settings with the defaults: HTTPS verified against the built-in (Mozilla) roots plus
    /// `tls_ca` when set, 10 s to connect, 60 s per request, 120 s per read during downloads,
    /// 32 MiB per response without payload. No proxy is ever used.
    pub fn new(
        device: impl Into<String>,
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        ConnectionConfig {
            device: device.into(),
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            tls: true,
            tls_ca: None,
            insecure: false,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(120),
            max_response_bytes: 32 * 1024 * 1024,
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
        }
    }

    /// The management URL: `http(s)://host:port/service/mgmt/current`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let authority = http::authority(&self.host, self.port);
        format!("{scheme}://{authority}{}", soma::PATH)
    }
}

/// Firmware facts, from `FirmwareVersion3` or, on older firmware, `FirmwareVersion2` or
/// `FirmwareVersion`. Fields the appliance does not report are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firmware {
    /// The status class that answered.
    pub class: String,
    /// `Serial`.
    pub serial: String,
    /// `Version`, e.g. `IDG.10.5.0.12`.
    pub version: String,
    /// `Build`.
    pub build: String,
    /// `BuildDate`.
    pub build_date: String,
    /// `DeliveryType`.
    pub delivery_type: String,
    /// `MachineType`, e.g. `8436`.
    pub machine_type: String,
    /// `ModelType`, e.g. `52X`.
    pub model_type: String,
}

/// The quiesce state of a domain (`DomainStatus/QuiesceState`) or of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuiesceState {
    /// `""`: serving traffic.
    Normal,
    /// `quiescing`: a quiesce was accepted and is in progress.
    Quiescing,
    /// `quiesced`.
    Quiesced,
    /// `unquiescing`: an unquiesce was accepted and is in progress.
    Unquiescing,
    /// `error`.
    Error,
    /// Any other text the appliance reports.
    Other(String),
}

impl QuiesceState {
    /// Reads the appliance's text (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "" => QuiesceState::Normal,
            "quiescing" => QuiesceState::Quiescing,
            "quiesced" => QuiesceState::Quiesced,
            "unquiescing" => QuiesceState::Unquiescing,
            "error" => QuiesceState::Error,
            other => QuiesceState::Other(other.to_string()),
        }
    }

    /// The appliance's text for this state (`""` for [`QuiesceState::Normal`]).
    pub fn as_str(&self) -> &str {
        match self {
            QuiesceState::Normal => "",
            QuiesceState::Quiescing => "quiescing",
            QuiesceState::Quiesced => "quiesced",
            QuiesceState::Unquiescing => "unquiescing",
            QuiesceState::Error => "error",
            QuiesceState::Other(text) => text,
        }
    }
}

/// One row of `DomainStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainStatus {
    /// `Domain`.
    pub name: String,
    /// `SaveNeeded` is `on`: the running configuration has unsaved changes.
    pub save_needed: bool,
    /// `QuiesceState`.
    pub quiesce_state: QuiesceState,
    /// Whether the row has a `QuiesceState` at all (firmware older than quiesce has none).
    pub reports_quiesce: bool,
}

/// What a quiesce or unquiesce applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuiesceTarget {
    /// The whole appliance (`QuiesceDP` / `UnquiesceDP`); the `default` domain is not affected.
    Device,
    /// One domain (`DomainQuiesce` / `DomainUnquiesce`).
    Domain(String),
}

/// A file in an appliance directory, from `get-filestore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Base name, e.g. `config.tgz`.
    pub name: String,
    /// Full name to pass to [`Appliance::download`], e.g. `temporary:///dpplan-1-2/config.tgz`.
    pub path: String,
    /// Size in bytes, as listed.
    pub size: u64,
    /// Modification time as the appliance writes it, e.g. `2020-02-10 05:51:47`.
    pub modified: String,
}

/// A payload written to disk: decoded, hashed and fsynced (not renamed: the caller renames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Decoded size in bytes.
    pub size: u64,
    /// SHA-256 of the decoded bytes, lower-case hex.
    pub sha256: String,
}

/// What the engine needs from one appliance. Object safe: the engine holds
/// `Arc<dyn Appliance>` and calls it from tokio tasks; tests swap in doubles.
///
/// Directory and file names on the appliance are SOMA URLs such as
/// `temporary:///dpplan-42-5/` and `temporary:///dpplan-42-5/config.tgz`.
#[async_trait::async_trait]
pub trait Appliance: Send + Sync {
    /// The device's inventory name.
    fn device(&self) -> &str;

    /// A short request that succeeds when the appliance answers and accepts the credentials
    /// (the SOMA client reads the firmware facts, and keeps them for [`Appliance::firmware`]).
    async fn probe(&self) -> Result<(), ApplianceError>;

    /// Firmware facts: `FirmwareVersion3`, falling back to `FirmwareVersion2` and `FirmwareVersion`.
    async fn firmware(&self) -> Result<Firmware, ApplianceError>;

    /// Every domain, with `SaveNeeded` and `QuiesceState` (`DomainStatus` asked in `default`).
    async fn domains(&self) -> Result<Vec<DomainStatus>, ApplianceError>;

    /// Free space in `temporary:`, in bytes (`FilesystemStatus/FreeTemporary`, reported in MiB).
    async fn free_temporary(&self) -> Result<u64, ApplianceError>;

    /// Whether the `CryptoCertificate` object `name` exists in the `default` domain.
    async fn certificate_exists(&self, name: &str) -> Result<bool, ApplianceError>;

    /// Requests a quiesce (`QuiesceDP` or `DomainQuiesce`) with this timeout (the appliance
    /// requires at least 60 s: shorter values are sent as 60). `Ok` means accepted; poll
    /// [`Appliance::quiesce_state`].
    async fn quiesce(
        &self,
        target: &QuiesceTarget,
        timeout: Duration,
    ) -> Result<(), ApplianceError>;

    /// Requests an unquiesce (`UnquiesceDP` or `DomainUnquiesce`); poll until `Normal`.
    async fn unquiesce(&self, target: &QuiesceTarget) -> Result<(), ApplianceError>;

    /// The current quiesce state. For the device: the state its application domains (all but
    /// `default`) agree on; `Quiescing` or `Unquiescing` while any of them is in transition;
    /// `Normal` when there is no application domain.
    async fn quiesce_state(&self, target: &QuiesceTarget) -> Result<QuiesceState, ApplianceError>;

    /// The quiesce state to wait on after a quiesce or unquiesce, or `None` when the appliance
    /// shows none for `target`: a device with no application domain, since a device quiesce
    /// does not affect `default` (docs/simulator.md), so there is nothing to wait for.
    async fn observed_quiesce_state(
        &self,
        target: &QuiesceTarget,
    ) -> Result<Option<QuiesceState>, ApplianceError> {
        self.quiesce_state(target).await.map(Some)
    }

    /// Saves the running configuration of `domain` (`SaveConfig`).
    async fn save_config(&self, domain: &str) -> Result<(), ApplianceError>;

    /// Starts a secure backup (`SecureBackup`) encrypted for certificate `cert` into the
    /// appliance directory `destination`. The backup is complete once
    /// `backupmanifest.xml` is listed by [`Appliance::list_directory`].
    async fn secure_backup(&self, cert: &str, destination: &str) -> Result<(), ApplianceError>;

    /// The files directly in appliance directory `dir`; empty when it does not exist.
    async fn list_directory(&self, dir: &str) -> Result<Vec<RemoteFile>, ApplianceError>;

    /// Downloads appliance file `path` (`get-file`) into the local file `dest`: created or
    /// truncated at once, written, fsynced, not renamed. On any error, and when the future is
    /// dropped before it completes, `dest` is removed again. Memory stays bounded whatever
    /// the size.
    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError>;

    /// [`Appliance::download`] of a file whose size the appliance listed: more than
    /// `max_bytes` is an error as soon as it arrives.
    async fn download_at_most(
        &self,
        path: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Downloaded, ApplianceError> {
        let _ = max_bytes;
        self.download(path, dest).await
    }

    /// Removes appliance directory `dir` and its content (`RemoveDir`).
    async fn remove_directory(&self, dir: &str) -> Result<(), ApplianceError>;

    /// Exports `domain` as a ZIP (`do-export`) into `dest`, as [`Appliance::download`] does:
    /// the saved configuration when `persisted`, the running one otherwise. `comment` becomes
    /// the export's user comment. An empty `dp:file` (no temporary: space) is an error.
    async fn export_domain(
        &self,
        domain: &str,
        persisted: bool,
        comment: &str,
        dest: &Path,
    ) -> Result<Downloaded, ApplianceError>;

    /// Exports all domains (`do-backup` of `all-domains`): a ZIP holding one ZIP per domain.
    async fn export_all(&self, comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError>;

    /// Saves, rolls back to, or removes checkpoint `name` of `domain`.
    async fn checkpoint(
        &self,
        domain: &str,
        op: CheckpointOp,
        name: &str,
    ) -> Result<(), ApplianceError> {
        let _ = (domain, name);
        Err(unsupported(self.device(), op.action()))
    }

    /// The names of `domain`'s checkpoints, oldest first (`DomainCheckpointStatus`).
    async fn checkpoints(&self, domain: &str) -> Result<Vec<String>, ApplianceError> {
        let _ = domain;
        Err(unsupported(
            self.device(),
            "get-status DomainCheckpointStatus",
        ))
    }

    /// Imports export ZIP `zip` into `domain` (`do-import`), or with `options.dry_run` only
    /// reports what it would do. The file streams into the request: memory stays bounded.
    async fn import(
        &self,
        domain: &str,
        zip: &Path,
        options: &soma::ImportOptions,
    ) -> Result<super::import::ImportReport, ApplianceError> {
        let _ = (domain, zip, options);
        Err(unsupported(self.device(), "do-import"))
    }

    /// Uploads local `file` as appliance file `name` (`set-file`), streamed.
    async fn upload(&self, file: &Path, name: &str) -> Result<(), ApplianceError> {
        let _ = (file, name);
        Err(unsupported(self.device(), "set-file"))
    }

    /// `SecureRestore` from appliance directory `source` with credential `cred`; with
    /// `validate` the backup is checked and nothing changes. A real restore restarts the
    /// appliance: it stops answering for a while.
    async fn secure_restore(
        &self,
        cred: &str,
        source: &str,
        validate: bool,
    ) -> Result<(), ApplianceError> {
        let _ = (cred, source, validate);
        Err(unsupported(self.device(), "do-action SecureRestore"))
    }
}

/// A checkpoint action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOp {
    /// `SaveCheckpoint`
    Save,
    /// `RollbackCheckpoint`
    Rollback,
    /// `RemoveCheckpoint`
    Remove,
}

impl CheckpointOp {
    /// The action's element name.
    pub fn action(self) -> &'static str {
        match self {
            CheckpointOp::Save => "SaveCheckpoint",
            CheckpointOp::Rollback => "RollbackCheckpoint",
            CheckpointOp::Remove => "RemoveCheckpoint",
        }
    }
}

/// The error of an operation an [`Appliance`] does not implement.
fn unsupported(device: &str, op: &str) -> ApplianceError {
    ErrorKind::Result("not supported by this appliance".to_string()).at(device, op)
}
