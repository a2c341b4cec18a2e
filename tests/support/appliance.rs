//! A scripted appliance double: an [`Appliance`] in process, on tokio time, whose answers a
//! test chooses (faults, delays, quiesce transitions) and whose requests it counts. With the
//! engine in process and tokio time paused (see [`super::world`]), retry backoffs, quiesce
//! waits and timeouts take no real time.
//!
//! Operations are counted under the simulator's names (`SecureBackup`, `QuiesceDP`,
//! `DomainQuiesce`, `get-file`, `do-export`...), and a [`Fault`] names the operation it hits
//! the same way: a test reads like its simulator twin.

use dpplan::appliance::{
    Appliance, ApplianceError, DomainStatus, Downloaded, ErrorKind, Firmware, QuiesceState,
    QuiesceTarget, RemoteFile,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// The files a secure backup writes, manifest first (as the simulator's).
pub const SECURE_BACKUP_FILES: [&str; 9] = dpplan::sim::device::SECURE_BACKUP_FILES;

/// What a scripted fault does to the operation it hits.
#[derive(Debug, Clone)]
pub enum FaultKind {
    /// HTTP 500 (transient: `retry` repeats it).
    Http500,
    /// `dp:result` with this error text (permanent).
    ErrorText(String),
    /// A SOAP Fault (permanent).
    SoapFault,
    /// The connection is lost mid-answer (transient).
    Reset,
    /// The appliance refuses the credentials.
    AuthFailure,
    /// The answer comes after this long (on tokio time), then the operation proceeds.
    Delay(Duration),
    /// A quiesce is accepted but never completes.
    NeverQuiesce,
    /// An unquiesce is accepted but never completes.
    NeverUnquiesce,
}

/// A fault for the next `times` requests of operation `op` (`"*"`: every operation).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: String,
    pub kind: FaultKind,
    pub times: u32,
}

impl Fault {
    /// `kind` for every request of `op` (until [`Fault::times`] says otherwise).
    pub fn on(op: &str, kind: FaultKind) -> Fault {
        Fault {
            op: op.to_string(),
            kind,
            times: u32::MAX,
        }
    }

    /// Only the next `n` requests.
    pub fn times(mut self, n: u32) -> Fault {
        self.times = n;
        self
    }
}

/// A quiesce or unquiesce under way (or done) on one target.
#[derive(Debug, Clone, Copy)]
struct Transition {
    quiesce: bool,
    at: Instant,
    delay: Duration,
    never: bool,
}

impl Transition {
    fn state(&self) -> QuiesceState {
        let done = !self.never && self.at.elapsed() >= self.delay;
        match (self.quiesce, done) {
            (true, false) => QuiesceState::Quiescing,
            (true, true) => QuiesceState::Quiesced,
            (false, false) => QuiesceState::Unquiescing,
            (false, true) => QuiesceState::Normal,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Per target: `None` for the device, `Some(domain)` for a domain.
    transitions: BTreeMap<Option<String>, Transition>,
    /// Directories in `temporary:` and the files in them (name, size).
    temporary: BTreeMap<String, Vec<(String, u64)>>,
    ops: BTreeMap<String, u64>,
    /// How many requests each fault has hit.
    hits: Vec<u32>,
    /// When each operation was asked (tokio time), in order.
    log: Vec<(Instant, String)>,
}

/// One scripted appliance.
#[derive(Debug)]
pub struct FakeAppliance {
    name: String,
    domains: Vec<String>,
    unsaved: Vec<String>,
    quiesce_delay: Duration,
    unquiesce_delay: Duration,
    file_size: u64,
    faults: Vec<Fault>,
    state: Mutex<State>,
}

impl FakeAppliance {
    /// `name`, with domains `default` and `DOMAIN1`, quiescing in 100 ms and unquiescing in
    /// 50 ms, secure-backup files of 1 KiB, no faults.
    pub fn new(name: &str) -> FakeAppliance {
        FakeAppliance {
            name: name.to_string(),
            domains: vec!["default".into(), "DOMAIN1".into()],
            unsaved: Vec::new(),
            quiesce_delay: Duration::from_millis(100),
            unquiesce_delay: Duration::from_millis(50),
            file_size: 1024,
            faults: Vec::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// Its domains (`default` should be among them).
    pub fn domains(mut self, domains: &[&str]) -> FakeAppliance {
        self.domains = domains.iter().map(|d| d.to_string()).collect();
        self
    }

    /// Domains with unsaved changes.
    pub fn unsaved(mut self, domains: &[&str]) -> FakeAppliance {
        self.unsaved = domains.iter().map(|d| d.to_string()).collect();
        self
    }

    /// How long a quiesce and an unquiesce take to complete.
    pub fn quiesce_delays(mut self, quiesce: Duration, unquiesce: Duration) -> FakeAppliance {
        self.quiesce_delay = quiesce;
        self.unquiesce_delay = unquiesce;
        self
    }

    /// Adds a fault (faults are tried in the order added; the first due one applies).
    pub fn fault(mut self, fault: Fault) -> FakeAppliance {
        self.faults.push(fault);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests of `op` it received.
    pub fn ops(&self, op: &str) -> u64 {
        self.lock().ops.get(op).copied().unwrap_or(0)
    }

    /// Every operation it received, with when (tokio time), in order.
    pub fn log(&self) -> Vec<(Instant, String)> {
        self.lock().log.clone()
    }

    /// The quiesce state of `target` now.
    pub fn quiesce_state_now(&self, target: &QuiesceTarget) -> QuiesceState {
        let key = match target {
            QuiesceTarget::Device => None,
            QuiesceTarget::Domain(d) => Some(d.clone()),
        };
        self.lock()
            .transitions
            .get(&key)
            .map(|t| t.state())
            .unwrap_or(QuiesceState::Normal)
    }

    /// Nothing quiesced (or on its way), nothing left in `temporary:`.
    #[track_caller]
    pub fn assert_clean(&self) {
        let s = self.lock();
        for (target, t) in &s.transitions {
            assert_eq!(t.state(), QuiesceState::Normal, "{} {target:?}", self.name);
        }
        assert!(s.temporary.is_empty(), "{}: {:?}", self.name, s.temporary);
    }

    /// Counts `op` and applies the first fault due for it: `Err` for an error, after any
    /// delay (on tokio time); `Ok(kind)` tells a quiesce whether it never completes.
    async fn request(&self, op: &str) -> Result<Option<FaultKind>, ApplianceError> {
        let due = {
            let mut s = self.lock();
            *s.ops.entry(op.to_string()).or_default() += 1;
            s.log.push((Instant::now(), op.to_string()));
            if s.hits.len() < self.faults.len() {
                s.hits.resize(self.faults.len(), 0);
            }
            let mut due = None;
            for (i, f) in self.faults.iter().enumerate() {
                if (f.op == op || f.op == "*") && s.hits[i] < f.times {
                    s.hits[i] += 1;
                    if due.is_none() {
                        due = Some(f.kind.clone());
                    }
                }
            }
            due
        };
        let at = |kind: ErrorKind| kind.at(&self.name, op);
        match due {
            None => Ok(None),
            Some(FaultKind::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Some(FaultKind::Http500) => {
                let text = "Internal Server Error".to_string();
                Err(at(ErrorKind::Http { status: 500, text }))
            }
            Some(FaultKind::ErrorText(t)) => Err(at(ErrorKind::Result(t))),
            Some(FaultKind::SoapFault) => {
                let code = "env:Client".to_string();
                let text = "injected".to_string();
                Err(at(ErrorKind::Fault { code, text }))
            }
            Some(FaultKind::Reset) => {
                Err(at(ErrorKind::connection_lost("connection reset by peer")))
            }
            Some(FaultKind::AuthFailure) => {
                Err(at(ErrorKind::Auth("Authentication failure".into())))
            }
            Some(k @ (FaultKind::NeverQuiesce | FaultKind::NeverUnquiesce)) => Ok(Some(k)),
        }
    }

    fn start(&self, target: &QuiesceTarget, quiesce: bool, never: bool) {
        let key = match target {
            QuiesceTarget::Device => None,
            QuiesceTarget::Domain(d) => Some(d.clone()),
        };
        let delay = if quiesce {
            self.quiesce_delay
        } else {
            self.unquiesce_delay
        };
        self.lock().transitions.insert(
            key,
            Transition {
                quiesce,
                at: Instant::now(),
                delay,
                never,
            },
        );
    }

    /// The bytes of file `name` of a secure backup or export: deterministic, `size` long.
    pub fn content(&self, name: &str, size: u64) -> Vec<u8> {
        let seed = format!("{}/{name}", self.name);
        (0..size)
            .map(|i| seed.as_bytes()[(i as usize) % seed.len()] ^ (i as u8))
            .collect()
    }

    fn write(&self, op: &str, dest: &Path, bytes: &[u8]) -> Result<Downloaded, ApplianceError> {
        std::fs::write(dest, bytes)
            .map_err(|e| ErrorKind::io(e.to_string(), e).at(&self.name, op))?;
        Ok(Downloaded {
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[async_trait::async_trait]
impl Appliance for FakeAppliance {
    fn device(&self) -> &str {
        &self.name
    }

    async fn probe(&self) -> Result<(), ApplianceError> {
        self.request("probe").await.map(|_| ())
    }

    async fn firmware(&self) -> Result<Firmware, ApplianceError> {
        self.request("firmware").await?;
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
        self.request("DomainStatus").await?;
        Ok(self
            .domains
            .iter()
            .map(|d| DomainStatus {
                name: d.clone(),
                save_needed: self.unsaved.contains(d),
                quiesce_state: if d == "default" {
                    QuiesceState::Normal
                } else {
                    self.quiesce_state_now(&QuiesceTarget::Domain(d.clone()))
                },
                reports_quiesce: true,
            })
            .collect())
    }

    async fn free_temporary(&self) -> Result<u64, ApplianceError> {
        self.request("FilesystemStatus").await?;
        Ok(4096 << 20)
    }

    async fn certificate_exists(&self, _name: &str) -> Result<bool, ApplianceError> {
        self.request("get-config").await?;
        Ok(true)
    }

    async fn quiesce(&self, target: &QuiesceTarget, _t: Duration) -> Result<(), ApplianceError> {
        let op = match target {
            QuiesceTarget::Device => "QuiesceDP",
            QuiesceTarget::Domain(_) => "DomainQuiesce",
        };
        let never = matches!(self.request(op).await?, Some(FaultKind::NeverQuiesce));
        self.start(target, true, never);
        Ok(())
    }

    async fn unquiesce(&self, target: &QuiesceTarget) -> Result<(), ApplianceError> {
        let op = match target {
            QuiesceTarget::Device => "UnquiesceDP",
            QuiesceTarget::Domain(_) => "DomainUnquiesce",
        };
        let never = matches!(self.request(op).await?, Some(FaultKind::NeverUnquiesce));
        self.start(target, false, never);
        Ok(())
    }

    async fn quiesce_state(&self, target: &QuiesceTarget) -> Result<QuiesceState, ApplianceError> {
        self.request("DomainStatus").await?;
        Ok(self.quiesce_state_now(target))
    }

    async fn observed_quiesce_state(
        &self,
        target: &QuiesceTarget,
    ) -> Result<Option<QuiesceState>, ApplianceError> {
        // As the real client: a device quiesce on an appliance with no application domain
        // shows nowhere.
        if *target == QuiesceTarget::Device && self.domains.iter().all(|d| d == "default") {
            return Ok(None);
        }
        self.quiesce_state(target).await.map(Some)
    }

    async fn save_config(&self, _domain: &str) -> Result<(), ApplianceError> {
        self.request("SaveConfig").await.map(|_| ())
    }

    async fn secure_backup(&self, _cert: &str, destination: &str) -> Result<(), ApplianceError> {
        self.request("SecureBackup").await?;
        let dir = destination.trim_end_matches('/').to_string();
        let files = SECURE_BACKUP_FILES
            .iter()
            .map(|f| (f.to_string(), self.file_size))
            .collect();
        self.lock().temporary.insert(dir, files);
        Ok(())
    }

    async fn list_directory(&self, dir: &str) -> Result<Vec<RemoteFile>, ApplianceError> {
        self.request("get-filestore").await?;
        let dir = dir.trim_end_matches('/');
        Ok(self
            .lock()
            .temporary
            .get(dir)
            .map(|files| {
                files
                    .iter()
                    .map(|(name, size)| RemoteFile {
                        name: name.clone(),
                        path: format!("{dir}/{name}"),
                        size: *size,
                        modified: "2026-11-22 01:02:03".into(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.request("get-file").await?;
        let (dir, name) = split(path);
        let size = self
            .lock()
            .temporary
            .get(dir)
            .and_then(|files| files.iter().find(|(n, _)| n == name).map(|(_, s)| *s));
        let Some(size) = size else {
            let text = format!("no file {path}");
            return Err(ErrorKind::Result(text).at(&self.name, "get-file"));
        };
        self.write("get-file", dest, &self.content(name, size))
    }

    async fn remove_directory(&self, dir: &str) -> Result<(), ApplianceError> {
        self.request("RemoveDir").await?;
        self.lock().temporary.remove(dir.trim_end_matches('/'));
        Ok(())
    }

    async fn export_domain(
        &self,
        domain: &str,
        persisted: bool,
        _comment: &str,
        dest: &Path,
    ) -> Result<Downloaded, ApplianceError> {
        self.request("do-export").await?;
        let which = if persisted { "persisted" } else { "running" };
        self.write(
            "do-export",
            dest,
            &self.content(&format!("{domain}-{which}.zip"), self.file_size),
        )
    }

    async fn export_all(&self, _comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.request("do-backup").await?;
        self.write(
            "do-backup",
            dest,
            &self.content("all-domains.zip", self.file_size),
        )
    }
}
