//! [`SomaClient`]: the [`Appliance`] trait over HTTP(S) ([`super::http`]: hyper and rustls).
//!
//! Responses without payload are read whole up to a size cap and parsed by
//! [`super::parse`]. Payload responses (`get-file`, `do-export`, `do-backup`) stream: the body
//! is handed chunk by chunk, through a small bounded channel, to a blocking thread that runs
//! [`PayloadSink`] (decode, hash, write), so network reads and decoding overlap and memory
//! stays bounded.

use super::error::{ApplianceError, Cause, ErrorKind};
use super::http::{self, root_cause, Answer, Transport, TransportError};
use super::import::ImportReport;
use super::parse::{self, Node};
use super::payload::{remove_partial, PayloadSink};
use super::soma;
use super::types::{
    Appliance, CheckpointOp, ConnectionConfig, DomainStatus, Downloaded, Firmware, QuiesceState,
    QuiesceTarget, RemoteFile,
};
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::StatusCode;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Batches in flight between the network and the decoding thread.
const PIPELINE_DEPTH: usize = 8;
/// Network chunks are gathered into batches of about this size: one thread hand-off per
/// batch rather than per (often small) chunk. Memory in flight: depth x batch.
const BATCH_BYTES: usize = 256 * 1024;

/// The firmware status classes, newest first.
const FIRMWARE_CLASSES: [&str; 3] = ["FirmwareVersion3", "FirmwareVersion2", "FirmwareVersion"];

/// A SOMA client for one appliance. Cheap to clone: the connection pool is shared.
#[derive(Debug, Clone)]
pub struct SomaClient {
    config: ConnectionConfig,
    http: Arc<Transport>,
    /// The firmware facts, read once per client: they do not change while it lives.
    firmware: Arc<Mutex<Option<Firmware>>>,
}

impl SomaClient {
    /// Builds a client from connection settings. Fails when the CA file cannot be read.
    pub fn new(config: ConnectionConfig) -> Result<Self, ApplianceError> {
        let config_error = |kind: ErrorKind| kind.at(&config.device, "connect");
        let tls = if config.tls {
            let ca_pem = match &config.tls_ca {
                Some(ca) => Some(std::fs::read(ca).map_err(|e| {
                    config_error(ErrorKind::Config {
                        text: format!("CA file {}: {e}", ca.display()),
                        cause: Some(Arc::new(e)),
                    })
                })?),
                None => None,
            };
            Some(http::Tls {
                ca_pem,
                insecure: config.insecure,
            })
        } else {
            None
        };
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.user, config.password));
        let mut auth = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|e| config_error(ErrorKind::config(format!("credentials: {e}"))))?;
        auth.set_sensitive(true);
        let http = Transport::new(http::Settings {
            host: &config.host,
            port: config.port,
            tls,
            connect_timeout: config.connect_timeout,
            path: soma::PATH,
            auth,
        })
        .map_err(|e| match &config.tls_ca {
            Some(ca) if config.tls => {
                config_error(ErrorKind::config(format!("CA file {}: {e}", ca.display())))
            }
            _ => config_error(ErrorKind::config(e)),
        })?;
        Ok(SomaClient {
            config,
            http: Arc::new(http),
            firmware: Arc::new(Mutex::new(None)),
        })
    }

    /// The connection settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// Sends one request and checks the answer's status: anything but 200 is an error (with
    /// the first words of the answer's body).
    async fn send(&self, op: &str, body: String) -> Result<Answer, ApplianceError> {
        self.send_body(op, body.into(), None).await
    }

    /// [`SomaClient::send`] of a body that may stream, with its length when known.
    async fn send_body(
        &self,
        op: &str,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<Answer, ApplianceError> {
        let answer = self
            .http
            .post_body(body, length)
            .await
            .map_err(|e| self.transport_error(op, e, false))?;
        let status = answer.status;
        if status == StatusCode::OK {
            return Ok(answer);
        }
        let reason = status.canonical_reason().unwrap_or("").to_string();
        let body = read_head(answer, self.config.read_timeout, FAULT_BYTES).await;
        let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
        // SOAP 1.1 sends a Fault with HTTP 500: a body that is a Fault is one, whatever the
        // status (not a transient HTTP error, and not shown as raw XML). Refused credentials
        // stay an authentication failure whatever the body.
        if !refused {
            if let Err(fault @ ErrorKind::Fault { .. }) = parse::document(&body) {
                return Err(self.at(op, fault));
            }
        }
        let snippet = snippet(&body);
        let text = if snippet.is_empty() { reason } else { snippet };
        if refused {
            let text = format!("HTTP {}: {text}", status.as_u16());
            return Err(self.at(op, ErrorKind::Auth(text)));
        }
        let status = status.as_u16();
        Err(self.at(op, ErrorKind::Http { status, text }))
    }

    /// One request without payload: the whole (capped) body parsed and its outcome checked.
    pub(super) async fn call(&self, op: &str, body: String) -> Result<Node, ApplianceError> {
        let limit = self.config.request_timeout;
        let buf = self.within(op, limit, self.read_whole(op, body)).await?;
        parse::document(&buf).map_err(|e| self.at(op, e))
    }

    /// `work`, or a timeout error ("no answer") once `limit` has passed.
    pub(super) async fn within<T>(
        &self,
        op: &str,
        limit: Duration,
        work: impl std::future::Future<Output = Result<T, ApplianceError>>,
    ) -> Result<T, ApplianceError> {
        tokio::time::timeout(limit, work).await.map_err(|_| {
            self.transport_error(op, TransportError::Timeout("no answer", limit), false)
        })?
    }

    async fn read_whole(&self, op: &str, body: String) -> Result<Vec<u8>, ApplianceError> {
        self.read_whole_body(op, body.into(), None).await
    }

    /// The whole (capped) answer to a request whose body may stream.
    pub(super) async fn read_whole_body(
        &self,
        op: &str,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<Vec<u8>, ApplianceError> {
        let mut answer = self.send_body(op, body, length).await?;
        let cap = self.config.max_response_bytes;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = answer
            .chunk(None)
            .await
            .map_err(|e| self.transport_error(op, e, true))?
        {
            if (buf.len() + chunk.len()) as u64 > cap {
                let text = format!("response larger than {cap} bytes");
                return Err(self.at(op, ErrorKind::TooLarge(text)));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }

    /// One request whose answer is a `dp:file`, streamed into `dest`. `dest` is created at
    /// once and removed again on any error, and also when this future is dropped before it
    /// completes (a cancelled or timed-out download leaves no file behind).
    ///
    /// The download is held to `max_bytes` decoded bytes and to the configured
    /// `download_timeout` in all (a body that trickles in never holds a quiesce for long).
    async fn fetch(
        &self,
        op: &str,
        body: String,
        dest: &Path,
        empty_is_error: bool,
        max_bytes: u64,
    ) -> Result<Downloaded, ApplianceError> {
        let file = super::payload::create_private(dest)
            .map_err(|e| self.at(op, ErrorKind::io(format!("{}: {e}", dest.display()), e)))?;
        let mut guard = RemoveOnDrop {
            path: dest,
            armed: true,
        };
        let limit = self.config.download_timeout;
        let result = match tokio::time::timeout(
            limit,
            self.fetch_inner(op, body, file, dest, empty_is_error, max_bytes),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(self.at(
                op,
                ErrorKind::timeout(format!(
                    "the download did not complete within {}s (download_timeout)",
                    limit.as_secs()
                )),
            )),
        };
        guard.armed = result.is_err();
        result
    }

    async fn fetch_inner(
        &self,
        op: &str,
        body: String,
        file: std::fs::File,
        dest: &Path,
        empty_is_error: bool,
        max_bytes: u64,
    ) -> Result<Downloaded, ApplianceError> {
        let read_timeout = self.config.read_timeout;
        let mut answer = self.within(op, read_timeout, self.send(op, body)).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(PIPELINE_DEPTH);
        let head_cap = usize::try_from(self.config.max_response_bytes).unwrap_or(usize::MAX);
        let path = dest.to_path_buf();
        let worker = tokio::task::spawn_blocking(move || {
            // The decoder never removes the path: once this download is dropped, the path
            // may belong to the next attempt; the unlinked file's writes go nowhere.
            let mut sink = PayloadSink::new(file, &path, head_cap).at_most(max_bytes);
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    sink.push(&chunk)?;
                }
            }
            sink.finish(empty_is_error)
        });
        let mut network_error = None;
        let mut batch = Vec::new();
        let mut batched = 0usize;
        loop {
            match answer.chunk(Some(read_timeout)).await {
                Ok(Some(chunk)) => {
                    batched += chunk.len();
                    batch.push(chunk);
                    if batched >= BATCH_BYTES {
                        batched = 0;
                        if tx.send(std::mem::take(&mut batch)).await.is_err() {
                            break; // the decoder stopped on an error; it reports it below
                        }
                    }
                }
                Ok(None) => {
                    let _ = tx.send(batch).await;
                    break;
                }
                Err(e) => {
                    network_error = Some(self.transport_error(op, e, true));
                    break;
                }
            }
        }
        drop(tx);
        drop(answer);
        let decoded = worker.await;
        if let Some(e) = network_error {
            return Err(e);
        }
        match decoded {
            Ok(result) => result.map_err(|e| self.at(op, e)),
            Err(join) => Err(self.at(
                op,
                ErrorKind::io_text(format!("decoder thread failed: {join}")),
            )),
        }
    }

    /// Reads the firmware status, newest class first.
    async fn read_firmware(&self) -> Result<Firmware, ApplianceError> {
        let mut last = None;
        for class in FIRMWARE_CLASSES {
            let op = format!("get-status {class}");
            let answer = self
                .call(&op, soma::get_status("default", class))
                .await
                .and_then(|root| parse::firmware(&root, class).map_err(|e| self.at(&op, e)));
            match answer {
                Ok(Some(firmware)) => return Ok(firmware),
                Ok(None) => last = Some(self.op_error(&op, "no status row".into())),
                // Older firmware rejects the newer classes: a fault or an error text.
                Err(
                    e @ ApplianceError {
                        kind: ErrorKind::Fault { .. } | ErrorKind::Result(_),
                        ..
                    },
                ) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| self.op_error("get-status FirmwareVersion", "no answer".into())))
    }

    /// Attributes `kind` to this device and `op`.
    pub(super) fn at(&self, op: &str, kind: ErrorKind) -> ApplianceError {
        kind.at(&self.config.device, op)
    }

    /// What a transport failure means for the caller. `in_body`: it happened while the
    /// answer's body was read, where a connection that simply ends is a truncated answer.
    /// The text is the root cause with the appliance's address, not the layers around it.
    fn transport_error(&self, op: &str, e: TransportError, in_body: bool) -> ApplianceError {
        let address = self.http.address();
        let kind = match e {
            TransportError::Timeout(what, limit) => {
                ErrorKind::timeout(format!("{what} within {limit:?} ({address})"))
            }
            TransportError::Connect(e) => {
                let text = format!("{} ({address})", root_cause(&e));
                let timed_out = io_kind(&e) == Some(io::ErrorKind::TimedOut);
                let cause: Option<Cause> = Some(Arc::new(e));
                if timed_out {
                    ErrorKind::Timeout { text, cause }
                } else {
                    ErrorKind::Connect { text, cause }
                }
            }
            TransportError::Tls(e) => ErrorKind::Tls {
                text: format!("{} ({address})", root_cause(&e)),
                cause: Some(Arc::new(e)),
            },
            TransportError::Http(e) => {
                let text = format!("{} ({address})", root_cause(&e));
                let io_kind = io_kind(&e);
                let cause: Option<Cause> = Some(Arc::new(e));
                match io_kind {
                    Some(io::ErrorKind::TimedOut) => ErrorKind::Timeout { text, cause },
                    Some(io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) => {
                        ErrorKind::ConnectionLost { text, cause }
                    }
                    _ if in_body => ErrorKind::Truncated { text, cause },
                    _ => ErrorKind::ConnectionLost { text, cause },
                }
            }
        };
        self.at(op, kind)
    }

    fn op_error(&self, op: &str, text: String) -> ApplianceError {
        self.at(op, ErrorKind::Result(text))
    }
}

/// Removes a download's file when dropped armed: on error and on cancellation.
struct RemoveOnDrop<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            remove_partial(self.path);
        }
    }
}

/// The first kilobytes of an error response, as text on one line.
/// How much of an error answer's body is read: enough for any SOAP Fault.
const FAULT_BYTES: usize = 64 * 1024;

/// The first `cap` bytes of an answer's body.
async fn read_head(mut answer: Answer, limit: Duration, cap: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = answer.chunk(Some(limit)).await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= cap {
            break;
        }
    }
    buf.truncate(cap);
    buf
}

/// An error body as one line of at most 4 KiB.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(4096)])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

#[async_trait::async_trait]
impl Appliance for SomaClient {
    fn device(&self) -> &str {
        &self.config.device
    }

    /// Reads the firmware facts (and keeps them for [`Appliance::firmware`]): always a request.
    async fn probe(&self) -> Result<(), ApplianceError> {
        let read = self.read_firmware().await?;
        if let Ok(mut known) = self.firmware.lock() {
            *known = Some(read);
        }
        Ok(())
    }

    async fn firmware(&self) -> Result<Firmware, ApplianceError> {
        if let Some(known) = self.firmware.lock().ok().and_then(|f| f.clone()) {
            return Ok(known);
        }
        let read = self.read_firmware().await?;
        if let Ok(mut known) = self.firmware.lock() {
            *known = Some(read.clone());
        }
        Ok(read)
    }

    async fn domains(&self) -> Result<Vec<DomainStatus>, ApplianceError> {
        let op = "get-status DomainStatus";
        let root = self
            .call(op, soma::get_status("default", "DomainStatus"))
            .await?;
        parse::domains(&root).map_err(|e| self.at(op, e))
    }

    async fn free_temporary(&self) -> Result<u64, ApplianceError> {
        let op = "get-status FilesystemStatus";
        let root = self
            .call(op, soma::get_status("default", "FilesystemStatus"))
            .await?;
        let mib = parse::free_temporary_mib(&root).map_err(|e| self.at(op, e))?;
        Ok(mib.saturating_mul(1024 * 1024))
    }

    async fn certificate_exists(&self, name: &str) -> Result<bool, ApplianceError> {
        let op = "get-config CryptoCertificate";
        let root = self
            .call(op, soma::get_config("default", "CryptoCertificate", name))
            .await?;
        parse::config_has(&root, "CryptoCertificate", name).map_err(|e| self.at(op, e))
    }

    async fn quiesce(
        &self,
        target: &QuiesceTarget,
        timeout: Duration,
    ) -> Result<(), ApplianceError> {
        match target {
            QuiesceTarget::Device => {
                self.call("do-action QuiesceDP", soma::quiesce_device(timeout))
                    .await?
            }
            QuiesceTarget::Domain(name) => {
                self.call(
                    "do-action DomainQuiesce",
                    soma::quiesce_domain(name, timeout),
                )
                .await?
            }
        };
        Ok(())
    }

    async fn unquiesce(&self, target: &QuiesceTarget) -> Result<(), ApplianceError> {
        match target {
            QuiesceTarget::Device => {
                self.call("do-action UnquiesceDP", soma::unquiesce_device())
                    .await?
            }
            QuiesceTarget::Domain(name) => {
                self.call("do-action DomainUnquiesce", soma::unquiesce_domain(name))
                    .await?
            }
        };
        Ok(())
    }

    async fn quiesce_state(&self, target: &QuiesceTarget) -> Result<QuiesceState, ApplianceError> {
        let domains = self.domains().await?;
        match target {
            QuiesceTarget::Domain(name) => domains
                .into_iter()
                .find(|d| &d.name == name)
                .map(|d| d.quiesce_state)
                .ok_or_else(|| {
                    self.op_error("get-status DomainStatus", format!("no domain named {name}"))
                }),
            QuiesceTarget::Device => Ok(device_state(&domains)),
        }
    }

    async fn observed_quiesce_state(
        &self,
        target: &QuiesceTarget,
    ) -> Result<Option<QuiesceState>, ApplianceError> {
        if matches!(target, QuiesceTarget::Domain(_)) {
            return self.quiesce_state(target).await.map(Some);
        }
        let domains = self.domains().await?;
        if domains.iter().all(|d| d.name == "default") {
            return Ok(None);
        }
        Ok(Some(device_state(&domains)))
    }

    async fn save_config(&self, domain: &str) -> Result<(), ApplianceError> {
        self.call("do-action SaveConfig", soma::save_config(domain))
            .await
            .map(|_| ())
    }

    async fn secure_backup(&self, cert: &str, destination: &str) -> Result<(), ApplianceError> {
        self.call(
            "do-action SecureBackup",
            soma::secure_backup(cert, destination),
        )
        .await
        .map(|_| ())
    }

    async fn list_directory(&self, dir: &str) -> Result<Vec<RemoteFile>, ApplianceError> {
        let op = "get-filestore";
        let (location, listed) = soma::split_dir(dir);
        let root = self.call(op, soma::get_filestore(&location)).await?;
        parse::directory_files(&root, &listed, dir).map_err(|e| self.at(op, e))
    }

    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        let max = self.config.max_download_bytes;
        self.fetch("get-file", soma::get_file(path), dest, false, max)
            .await
    }

    async fn download_at_most(
        &self,
        path: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Downloaded, ApplianceError> {
        self.fetch("get-file", soma::get_file(path), dest, false, max_bytes)
            .await
    }

    async fn remove_directory(&self, dir: &str) -> Result<(), ApplianceError> {
        self.call("do-action RemoveDir", soma::remove_dir(dir))
            .await
            .map(|_| ())
    }

    async fn export_domain(
        &self,
        domain: &str,
        persisted: bool,
        comment: &str,
        dest: &Path,
    ) -> Result<Downloaded, ApplianceError> {
        self.fetch(
            "do-export",
            soma::do_export(domain, persisted, comment),
            dest,
            true,
            self.config.max_download_bytes,
        )
        .await
    }

    async fn export_all(&self, comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        let max = self.config.max_download_bytes;
        self.fetch("do-backup", soma::do_backup_all(comment), dest, true, max)
            .await
    }

    async fn checkpoint(
        &self,
        domain: &str,
        op: CheckpointOp,
        name: &str,
    ) -> Result<(), ApplianceError> {
        self.checkpoint_action(domain, op.action(), name).await
    }

    async fn checkpoints(&self, domain: &str) -> Result<Vec<String>, ApplianceError> {
        let op = "get-status DomainCheckpointStatus";
        let root = self
            .call(op, soma::get_status(domain, "DomainCheckpointStatus"))
            .await?;
        let rows =
            parse::status_rows(&root, "DomainCheckpointStatus").map_err(|e| self.at(op, e))?;
        let mut named: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                let when = format!("{} {}", r.child_text("Date"), r.child_text("Time"));
                (when, r.child_text("ChkName").to_string())
            })
            .filter(|(_, n)| !n.is_empty())
            .collect();
        named.sort();
        Ok(named.into_iter().map(|(_, n)| n).collect())
    }

    async fn import(
        &self,
        domain: &str,
        zip: &Path,
        options: &soma::ImportOptions,
    ) -> Result<ImportReport, ApplianceError> {
        self.import_zip(domain, zip, options).await
    }

    async fn upload(&self, file: &Path, name: &str) -> Result<(), ApplianceError> {
        self.upload_file(file, name).await
    }

    async fn secure_restore(
        &self,
        cred: &str,
        source: &str,
        validate: bool,
    ) -> Result<(), ApplianceError> {
        self.secure_restore_from(cred, source, validate).await
    }
}

/// The device's quiesce state from its application domains (all but `default`).
pub fn device_state(domains: &[DomainStatus]) -> QuiesceState {
    let states: Vec<&QuiesceState> = domains
        .iter()
        .filter(|d| d.name != "default")
        .map(|d| &d.quiesce_state)
        .collect();
    let Some(first) = states.first() else {
        return QuiesceState::Normal;
    };
    if states.iter().all(|s| s == first) {
        return (*first).clone();
    }
    for s in [
        QuiesceState::Error,
        QuiesceState::Unquiescing,
        QuiesceState::Quiescing,
    ] {
        if states.contains(&&s) {
            return s;
        }
    }
    // Some quiesced, some normal: half way either direction.
    QuiesceState::Quiescing
}
