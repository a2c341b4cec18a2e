//! Talking to one DataPower appliance: the [`Appliance`] trait the engine calls, the facts it
//! returns, the one error type with its retry decision, and the SOMA client that implements it.
//!
//! This layer knows nothing of plans, the engine or the store. It returns values and typed
//! errors; it never prints.
//!
//! - [`soma`]: request envelopes, one builder per operation.
//! - [`parse`]: response parsing by local name, tolerant of the quirks of real devices.
//! - [`payload`]: the streaming `dp:file` decoder (base64 to a file, SHA-256 on the way).
//! - [`types`]: the [`Appliance`] trait, the facts it returns, [`ConnectionConfig`].
//! - [`error`]: [`ApplianceError`], a device and an operation around an [`ErrorKind`].
//! - [`client`]: [`SomaClient`], the implementation of [`Appliance`] over HTTP(S).
//! - [`http`]: its transport: reqwest (HTTP/1.1, no proxies), rustls, kept-alive
//!   connections.
//!
//! The sequences the stdlib steps map to (docs/simulator.md), each call one request unless noted:
//!
//! ```text
//! (probe)        firmware, once per device and run (the client keeps it); beside it,
//!                domains when the plan names domain patterns
//! validate       together, judged in this order: domains (QuiesceState, SaveNeeded) when
//!                quiescing or exporting; secure backup: free_temporary >= appliance_min_free,
//!                certificate_exists(cert); firmware (kept from the probe)
//! quiesce        a repeated attempt first: quiesce_state(target), done if Quiesced;
//!                quiesce(target, timeout); poll quiesce_state(target) until Quiesced
//!                (a device with no application domain shows no state: not waited for)
//!                (past timeout + grace: unquiesce(target) and fail)
//! backup         secure_backup(cert, "temporary:///dpplan-RUN-TASK/");
//!                poll list_directory(dir) until it lists backupmanifest.xml;
//!                download(file.path, tmp) for each listed file, up to 3 at a time;
//!                remove_directory(dir)
//! export         export_domain(domain, true, comment, tmp);
//!                when SaveNeeded: export_domain(domain, false, comment, tmp2)
//!                all domains: export_all(comment, tmp)
//! unquiesce      a repeated attempt first: quiesce_state(target), no request if Normal;
//!                unquiesce(target); poll quiesce_state(target) until Normal
//! ```
//!
//! Retry decisions belong to the caller: [`ApplianceError::is_transient`] says which
//! failures may succeed when repeated.

pub mod client;
pub mod error;
pub mod http;
pub mod import;
pub mod parse;
pub mod payload;
pub mod soma;
pub mod types;
mod upload;

pub use client::SomaClient;
pub use error::{ApplianceError, Cause, ErrorKind};
pub use types::{
    Appliance, CheckpointOp, ConnectionConfig, DomainStatus, Downloaded, Firmware, QuiesceState,
    QuiesceTarget, RemoteFile, DEFAULT_DOWNLOAD_TIMEOUT, DEFAULT_MAX_DOWNLOAD_BYTES,
};
