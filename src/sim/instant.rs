//! An appliance in process, without sockets or delays: every operation succeeds at once.
//! For benchmarks of the engine and the journal, where the network would hide what is
//! measured, and for tests that need many devices cheaply.

use crate::appliance::{
    Appliance, ApplianceError, DomainStatus, Downloaded, ErrorKind, Firmware, QuiesceState,
    QuiesceTarget, RemoteFile,
};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// One instant appliance.
#[derive(Debug)]
pub struct InstantAppliance {
    name: String,
    state: Mutex<(QuiesceState, Vec<String>)>,
}

impl InstantAppliance {
    /// An appliance named `name` with domains `default`, `DOMAIN1` and `DOMAIN2`.
    pub fn new(name: &str) -> Self {
        InstantAppliance {
            name: name.to_string(),
            state: Mutex::new((QuiesceState::Normal, Vec::new())),
        }
    }

    fn set(&self, s: QuiesceState) {
        if let Ok(mut st) = self.state.lock() {
            st.0 = s;
        }
    }
}

fn write(dest: &Path, bytes: &[u8]) -> Result<Downloaded, ApplianceError> {
    std::fs::write(dest, bytes)
        .map_err(|e| ErrorKind::io(e.to_string(), e).at(String::new(), "write"))?;
    Ok(Downloaded {
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

#[async_trait::async_trait]
impl Appliance for InstantAppliance {
    fn device(&self) -> &str {
        &self.name
    }

    async fn probe(&self) -> Result<(), ApplianceError> {
        Ok(())
    }

    async fn firmware(&self) -> Result<Firmware, ApplianceError> {
        Ok(Firmware {
            class: "FirmwareVersion3".into(),
            serial: format!("{}-0001", self.name),
            version: "IDG.10.5.0.12".into(),
            build: "354871".into(),
            machine_type: "8436".into(),
            model_type: "52X".into(),
            ..Firmware::default()
        })
    }

    async fn domains(&self) -> Result<Vec<DomainStatus>, ApplianceError> {
        let q = self
            .state
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or(QuiesceState::Normal);
        Ok(["default", "DOMAIN1", "DOMAIN2"]
            .iter()
            .map(|d| DomainStatus {
                name: (*d).to_string(),
                save_needed: false,
                quiesce_state: if *d == "default" {
                    QuiesceState::Normal
                } else {
                    q.clone()
                },
                reports_quiesce: true,
            })
            .collect())
    }

    async fn free_temporary(&self) -> Result<u64, ApplianceError> {
        Ok(4096 << 20)
    }

    async fn certificate_exists(&self, _name: &str) -> Result<bool, ApplianceError> {
        Ok(true)
    }

    async fn quiesce(&self, _t: &QuiesceTarget, _timeout: Duration) -> Result<(), ApplianceError> {
        self.set(QuiesceState::Quiesced);
        Ok(())
    }

    async fn unquiesce(&self, _t: &QuiesceTarget) -> Result<(), ApplianceError> {
        self.set(QuiesceState::Normal);
        Ok(())
    }

    async fn quiesce_state(&self, _t: &QuiesceTarget) -> Result<QuiesceState, ApplianceError> {
        Ok(self
            .state
            .lock()
            .map(|s| s.0.clone())
            .unwrap_or(QuiesceState::Normal))
    }

    async fn save_config(&self, _domain: &str) -> Result<(), ApplianceError> {
        Ok(())
    }

    async fn secure_backup(&self, _cert: &str, destination: &str) -> Result<(), ApplianceError> {
        if let Ok(mut s) = self.state.lock() {
            s.1 = vec![destination.to_string()];
        }
        Ok(())
    }

    async fn list_directory(&self, dir: &str) -> Result<Vec<RemoteFile>, ApplianceError> {
        let has = self
            .state
            .lock()
            .map(|s| s.1.iter().any(|d| d == dir))
            .unwrap_or(false);
        Ok(if has {
            vec![RemoteFile {
                name: "backupmanifest.xml".into(),
                path: format!("{dir}backupmanifest.xml"),
                size: 0,
                modified: String::new(),
            }]
        } else {
            Vec::new()
        })
    }

    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        write(
            dest,
            format!("<manifest device=\"{}\" path=\"{path}\"/>", self.name).as_bytes(),
        )
    }

    async fn remove_directory(&self, _dir: &str) -> Result<(), ApplianceError> {
        if let Ok(mut s) = self.state.lock() {
            s.1.clear();
        }
        Ok(())
    }

    async fn export_domain(
        &self,
        domain: &str,
        _persisted: bool,
        _comment: &str,
        dest: &Path,
    ) -> Result<Downloaded, ApplianceError> {
        write(dest, format!("export of {domain}").as_bytes())
    }

    async fn export_all(&self, _comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        write(dest, b"export of all domains")
    }
}
