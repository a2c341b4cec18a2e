//! [`SomaClient`]: the [`Appliance`] trait over HTTP(S) with reqwest and rustls.
//!
//! Responses without payload are read whole up to a size cap and parsed by
//! [`super::parse`]. Payload responses (`get-file`, `do-export`, `do-backup`) stream: the body
//! is handed chunk by chunk, through a small bounded channel, to a blocking thread that runs
//! [`PayloadSink`] (decode, hash, write), so network reads and decoding overlap and memory
//! stays bounded.

use super::parse::{self, Node};
use super::payload::{remove_partial, PayloadSink};
use super::{
    soma, Appliance, ApplianceError, ConnectionConfig, DomainStatus, Downloaded, Firmware,
    ProtocolError, QuiesceState, QuiesceTarget, RemoteFile,
};
use base64::Engine as _;
use bytes::Bytes;
use std::io::ErrorKind;
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
    /// The management URL, parsed once.
    url: reqwest::Url,
    /// `Authorization: Basic ...`, encoded once (marked sensitive: never printed).
    auth: reqwest::header::HeaderValue,
    http: reqwest::Client,
    /// The firmware facts, read once per client: they do not change while it lives.
    firmware: Arc<Mutex<Option<Firmware>>>,
}

impl SomaClient {
    /// Builds a client from connection settings. Fails when the CA file cannot be read.
    pub fn new(config: ConnectionConfig) -> Result<Self, ApplianceError> {
        let config_error = |text: String| ApplianceError::Config {
            device: config.device.clone(),
            op: "connect".into(),
            text,
        };
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("dpplan/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            // Appliances are reached directly; a proxy from the environment is never wanted.
            .no_proxy()
            // The management interface speaks HTTP/1.1 and never redirects: a redirect is an
            // error to report (and credentials are not sent elsewhere). Retries are the
            // plan's policy, not the transport's.
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never());
        if let Some(ca) = &config.tls_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| config_error(format!("CA file {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config_error(format!("CA file {}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(config_error(format!(
                    "CA file {}: no certificate in it",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| config_error(error_chain(&e)))?;
        let url = reqwest::Url::parse(&config.url())
            .map_err(|e| config_error(format!("address {}: {e}", config.url())))?;
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.user, config.password));
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|e| config_error(format!("credentials: {e}")))?;
        auth.set_sensitive(true);
        Ok(SomaClient {
            url,
            auth,
            config,
            http,
            firmware: Arc::new(Mutex::new(None)),
        })
    }

    /// The connection settings.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    async fn send(
        &self,
        op: &str,
        body: String,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, ApplianceError> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request.send().await.map_err(|e| self.send_error(op, &e))?;
        let status = response.status();
        if status == reqwest::StatusCode::OK {
            return Ok(response);
        }
        let reason = status.canonical_reason().unwrap_or("").to_string();
        let snippet = read_snippet(response).await;
        let text = if snippet.is_empty() { reason } else { snippet };
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ApplianceError::Auth {
                device: self.config.device.clone(),
                op: op.to_string(),
                text: format!("HTTP {}: {text}", status.as_u16()),
            });
        }
        Err(ApplianceError::Http {
            device: self.config.device.clone(),
            op: op.to_string(),
            status: status.as_u16(),
            text,
        })
    }

    /// One request without payload: the whole (capped) body parsed and its outcome checked.
    async fn call(&self, op: &str, body: String) -> Result<Node, ApplianceError> {
        let mut response = self
            .send(op, body, Some(self.config.request_timeout))
            .await?;
        let cap = self.config.max_response_bytes;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.body_error(op, &e))?
        {
            if (buf.len() + chunk.len()) as u64 > cap {
                return Err(ApplianceError::TooLarge {
                    device: self.config.device.clone(),
                    op: op.to_string(),
                    text: format!("response larger than {cap} bytes"),
                });
            }
            buf.extend_from_slice(&chunk);
        }
        parse::document(&buf).map_err(|e| self.protocol(op, e))
    }

    /// One request whose answer is a `dp:file`, streamed into `dest`. `dest` is created at
    /// once and removed again on any error, and also when this future is dropped before it
    /// completes (a cancelled or timed-out download leaves no file behind).
    async fn fetch(
        &self,
        op: &str,
        body: String,
        dest: &Path,
        empty_is_error: bool,
    ) -> Result<Downloaded, ApplianceError> {
        let file = std::fs::File::create(dest).map_err(|e| ApplianceError::Io {
            device: self.config.device.clone(),
            op: op.to_string(),
            text: format!("{}: {e}", dest.display()),
        })?;
        let mut guard = RemoveOnDrop {
            path: dest,
            armed: true,
        };
        let result = self.fetch_inner(op, body, file, dest, empty_is_error).await;
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
    ) -> Result<Downloaded, ApplianceError> {
        let mut response = self.send(op, body, None).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(PIPELINE_DEPTH);
        let head_cap = usize::try_from(self.config.max_response_bytes).unwrap_or(usize::MAX);
        let path = dest.to_path_buf();
        let worker = tokio::task::spawn_blocking(move || {
            // The decoder never removes the path: once this download is dropped, the path
            // may belong to the next attempt; the unlinked file's writes go nowhere.
            let mut sink = PayloadSink::new(file, &path, head_cap);
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
            match response.chunk().await {
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
                    network_error = Some(self.body_error(op, &e));
                    break;
                }
            }
        }
        drop(tx);
        drop(response);
        let decoded = worker.await;
        if let Some(e) = network_error {
            return Err(e);
        }
        match decoded {
            Ok(result) => result.map_err(|e| self.protocol(op, e)),
            Err(join) => Err(ApplianceError::Io {
                device: self.config.device.clone(),
                op: op.to_string(),
                text: format!("decoder thread failed: {join}"),
            }),
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
                .and_then(|root| parse::firmware(&root, class).map_err(|e| self.protocol(&op, e)));
            match answer {
                Ok(Some(firmware)) => return Ok(firmware),
                Ok(None) => last = Some(self.op_error(&op, "no status row".into())),
                // Older firmware rejects the newer classes: a fault or an error text.
                Err(e @ (ApplianceError::Fault { .. } | ApplianceError::Result { .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| self.op_error("get-status FirmwareVersion", "no answer".into())))
    }

    fn protocol(&self, op: &str, e: ProtocolError) -> ApplianceError {
        e.at(&self.config.device, op)
    }

    fn send_error(&self, op: &str, e: &reqwest::Error) -> ApplianceError {
        let chain = error_chain(e);
        // What the user reads: the root cause and the address, not reqwest's layers.
        let (device, op, text) = (self.config.device.clone(), op.to_string(), root_cause(e));
        if e.is_timeout() {
            return ApplianceError::Timeout { device, op, text };
        }
        match io_kind(e) {
            Some(ErrorKind::ConnectionRefused) => {
                return ApplianceError::Connect { device, op, text }
            }
            Some(
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof,
            ) => return ApplianceError::ConnectionLost { device, op, text },
            Some(ErrorKind::TimedOut) => return ApplianceError::Timeout { device, op, text },
            _ => {}
        }
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            return ApplianceError::Tls { device, op, text };
        }
        if e.is_builder() {
            return ApplianceError::Config { device, op, text };
        }
        if e.is_connect() {
            return ApplianceError::Connect { device, op, text };
        }
        ApplianceError::ConnectionLost { device, op, text }
    }

    /// An error while the body streams: a timeout or a reset is transient; a body that simply
    /// ends short of its length is a truncated response.
    fn body_error(&self, op: &str, e: &reqwest::Error) -> ApplianceError {
        let (device, op, text) = (self.config.device.clone(), op.to_string(), error_chain(e));
        if e.is_timeout() || io_kind(e) == Some(ErrorKind::TimedOut) {
            return ApplianceError::Timeout { device, op, text };
        }
        match io_kind(e) {
            Some(ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                ApplianceError::ConnectionLost { device, op, text }
            }
            _ => ApplianceError::Truncated { device, op, text },
        }
    }

    fn op_error(&self, op: &str, text: String) -> ApplianceError {
        ApplianceError::Result {
            device: self.config.device.clone(),
            op: op.to_string(),
            text,
        }
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
async fn read_snippet(mut response: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= 4096 {
            break;
        }
    }
    buf.truncate(4096);
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error and its sources, joined: reqwest's own message alone rarely says what happened.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The innermost error's words, with the address it concerned: `Connection refused (os error
/// 111) (127.0.0.1:5550)`.
fn root_cause(e: &reqwest::Error) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e;
    while let Some(s) = last.source() {
        last = s;
    }
    let mut text = last.to_string();
    if let Some(url) = e.url() {
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
            text.push_str(&format!(" ({host}:{port})"));
        }
    }
    text
}

fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
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
        parse::domains(&root).map_err(|e| self.protocol(op, e))
    }

    async fn free_temporary(&self) -> Result<u64, ApplianceError> {
        let op = "get-status FilesystemStatus";
        let root = self
            .call(op, soma::get_status("default", "FilesystemStatus"))
            .await?;
        let mib = parse::free_temporary_mib(&root).map_err(|e| self.protocol(op, e))?;
        Ok(mib.saturating_mul(1024 * 1024))
    }

    async fn certificate_exists(&self, name: &str) -> Result<bool, ApplianceError> {
        let op = "get-config CryptoCertificate";
        let root = self
            .call(op, soma::get_config("default", "CryptoCertificate", name))
            .await?;
        parse::config_has(&root, "CryptoCertificate", name).map_err(|e| self.protocol(op, e))
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
        parse::directory_files(&root, &listed, dir).map_err(|e| self.protocol(op, e))
    }

    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.fetch("get-file", soma::get_file(path), dest, false)
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
        )
        .await
    }

    async fn export_all(&self, comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.fetch("do-backup", soma::do_backup_all(comment), dest, true)
            .await
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
