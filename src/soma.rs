//! The engine's [`Connector`] for real runs: an inventory device's SOMA client (reqwest,
//! rustls), its password read from the environment or a file when the run needs it. The
//! CLI (and through it `dpplan serve`) hands it to the engine; tests hand the engine doubles.

use crate::appliance::{Appliance, ConnectionConfig, SomaClient};
use crate::check::{Device, DEFAULT_USER};
use crate::engine::Connector;
use crate::secrets::read_secret;
use std::sync::Arc;
use std::time::Duration;

/// The real connector: the SOMA client, with the secret read from the environment or a file.
#[derive(Debug, Default, Clone, Copy)]
pub struct SomaConnector;

impl Connector for SomaConnector {
    fn connect(&self, d: &Device) -> Result<Arc<dyn Appliance>, String> {
        let password = match &d.password {
            Some(s) => read_secret(s)?,
            None => String::new(),
        };
        let mut c = ConnectionConfig::new(
            d.name.clone(),
            d.host.clone(),
            d.port,
            d.user.clone().unwrap_or_else(|| DEFAULT_USER.to_string()),
            password,
        );
        c.tls = d.tls;
        c.tls_ca = d.tls_ca.clone();
        c.insecure = d.insecure;
        c.request_timeout = Duration::from_millis(d.timeout_ms);
        // During a download, each wait for more data is held to the same `timeout`.
        c.read_timeout = Duration::from_millis(d.timeout_ms);
        c.download_timeout = Duration::from_millis(d.download_timeout_ms);
        c.max_download_bytes = d.max_export_bytes;
        let client = SomaClient::new(c).map_err(|e| e.to_string())?;
        Ok(Arc::new(client))
    }
}
