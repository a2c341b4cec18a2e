//! One simulated appliance: its state (domains with SaveNeeded and quiesce transitions, the
//! `temporary:` filestore, operation counters, fault counters) and the SOMA answers it gives.
//! Transport-free: [`Device::handle`] takes a parsed request and returns an [`Answer`] that
//! the HTTP layer turns into bytes (or a reset, a delay, a cut body).

use super::content::{self, ExportFacts};
use super::domain::{default_config, file_name, Config, Configs};
use super::filestore::{normalise, now_modified, Filestore, SimFile};
use super::fleet::{DeviceSpec, FaultKind};
use super::import::{do_import, ImportFault};
use super::outage::Outage;
use super::reply::{
    auth_failure, error_log, error_text, ok, payload, soap_fault, Answer, Reply, SomaRequest,
    Source,
};
use super::request::Element as Node;
use super::restore;
pub use super::restore::SECURE_BACKUP_FILES;
pub use super::state::{ChangeRequest, Changed, DomainView, SimState};
use super::status::{self, DomainRow};
use super::upload::Upload;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Secure backups whose configuration snapshots a device keeps (the newest).
const SNAPSHOTS: usize = 32;

/// The largest file set-file writes into a domain's `local:` (held in its configuration).
const LOCAL_FILE_LIMIT: u64 = 64 << 20;

#[derive(Debug, Clone, Copy)]
struct Transition {
    quiesce: bool,
    at: Instant,
    delay: Duration,
    never: bool,
}

impl Transition {
    fn state(&self, now: Instant) -> &'static str {
        let done = !self.never && now.duration_since(self.at) >= self.delay;
        match (self.quiesce, done) {
            (true, false) => "quiescing",
            (true, true) => "quiesced",
            (false, false) => "unquiescing",
            (false, true) => "",
        }
    }
}

fn state_of(t: &Option<Transition>, now: Instant) -> &'static str {
    t.as_ref().map(|t| t.state(now)).unwrap_or("")
}

#[derive(Debug)]
struct DomainState {
    name: String,
    transition: Option<Transition>,
    configs: Configs,
}

#[derive(Debug, Default, Clone, Copy)]
struct FaultCounter {
    seen: u64,
    injected: u64,
}

#[derive(Debug)]
struct State {
    domains: Vec<DomainState>,
    device_transition: Option<Transition>,
    /// temporary: (normalised names, `temporary:/dir/file`).
    store: Filestore,
    ops: BTreeMap<String, u64>,
    faults: Vec<FaultCounter>,
    /// Every domain's saved configuration at each SecureBackup, by backup id, oldest first.
    snapshots: Vec<(String, Vec<(String, Config)>)>,
    /// Secure backups taken, and administrator changes made (`/sim/.../change`).
    backups: u64,
    changes: u64,
    /// Restarting after a secure restore: requests are reset until then.
    down_until: Option<Instant>,
    /// A restart the answer being built must start (its downtime).
    restart: Option<Duration>,
}

/// Faults that change how an operation behaves rather than its answer.
#[derive(Debug, Clone, Copy, Default)]
struct Injected {
    never: bool,
    import_error: Option<usize>,
    checkpoint_full: bool,
}

/// One simulated appliance.
#[derive(Debug)]
pub struct Device {
    spec: DeviceSpec,
    state: Mutex<State>,
    /// Management requests being answered now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    outage: Outage,
}

/// One management request being answered: counted in [`Device::max_in_flight`] until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Device);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Device {
    /// A device in its initial state.
    pub fn new(spec: DeviceSpec) -> Self {
        let domains = spec
            .domains
            .iter()
            .map(|name| DomainState {
                name: name.clone(),
                transition: None,
                configs: Configs::initial(&spec.name, name, spec.unsaved.contains(name)),
            })
            .collect();
        let state = State {
            domains,
            device_transition: None,
            store: Filestore::default(),
            ops: BTreeMap::new(),
            faults: vec![FaultCounter::default(); spec.faults.len()],
            snapshots: Vec::new(),
            backups: 0,
            changes: 0,
            down_until: None,
            restart: None,
        };
        Device {
            spec,
            state: Mutex::new(state),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            outage: Outage::default(),
        }
    }

    /// The restart signals between this device and its server.
    pub fn outage(&self) -> &Outage {
        &self.outage
    }

    /// The device's settings.
    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: every update is one step.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a management request as being answered until the guard is dropped.
    pub fn begin_request(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    /// Whether this device sends SOAP Faults with HTTP 500.
    pub fn faults_with_http500(&self) -> bool {
        self.spec.fault_http500
    }

    /// How long every answer of this device waits first (`latency`).
    pub fn latency(&self) -> Duration {
        self.spec.latency
    }

    /// Whether the Basic credentials match.
    pub fn authorised(&self, user: &str, password: &str) -> bool {
        user == self.spec.user && password == self.spec.password
    }

    /// Answers one request: counts it, applies the first due fault, then the operation.
    /// `request` is `Err` when the body was not a SOMA request.
    pub fn handle(&self, request: Result<SomaRequest, String>, authorised: bool) -> Answer {
        let mut state = self.lock();
        if state.down_until.is_some_and(|t| Instant::now() < t) {
            // Restarting: a request that slipped in before the port closed is cut.
            return Answer::plain(Reply::Reset);
        }
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                *state.ops.entry("invalid".into()).or_default() += 1;
                return Answer::plain(soap_fault(&e));
            }
        };
        *state.ops.entry(request.key().to_string()).or_default() += 1;
        if !authorised {
            return Answer::plain(auth_failure());
        }
        let fault = self.due_fault(&mut state, &request);
        let mut answer = Answer::plain(Reply::Http500);
        let mut injected = Injected::default();
        match fault {
            Some((FaultKind::Reset, _)) => return Answer::plain(Reply::Reset),
            Some((FaultKind::Http500, _)) => return Answer::plain(Reply::Http500),
            Some((FaultKind::SoapFault, _)) => return Answer::plain(soap_fault("injected")),
            Some((FaultKind::AuthFailure, _)) => return Answer::plain(auth_failure()),
            Some((FaultKind::ErrorText, index)) => {
                return Answer::plain(error_text(&self.spec.faults[index].text))
            }
            Some((FaultKind::Delay, index)) => answer.delay = self.spec.faults[index].delay,
            Some((FaultKind::Truncate, _)) => answer.truncate = true,
            Some((FaultKind::BadBase64, _)) => answer.corrupt = true,
            Some((FaultKind::NeverQuiesce | FaultKind::NeverUnquiesce, _)) => injected.never = true,
            Some((FaultKind::ImportError, index)) => injected.import_error = Some(index),
            Some((FaultKind::CheckpointFull, _)) => injected.checkpoint_full = true,
            None => {}
        }
        answer.reply = self.operation(&mut state, &request, injected);
        answer.restart = state.restart.take();
        answer
    }

    /// Counts `request` against every matching fault; returns the first one due.
    fn due_fault(&self, state: &mut State, request: &SomaRequest) -> Option<(FaultKind, usize)> {
        let mut due = None;
        for (index, fault) in self.spec.faults.iter().enumerate() {
            let op_matches = fault.op == "*" || fault.op == request.key() || fault.op == request.op;
            let applies = match fault.kind {
                FaultKind::BadBase64 => request.is_payload(),
                FaultKind::NeverQuiesce => {
                    matches!(request.key(), "QuiesceDP" | "DomainQuiesce")
                }
                FaultKind::NeverUnquiesce => {
                    matches!(request.key(), "UnquiesceDP" | "DomainUnquiesce")
                }
                FaultKind::ImportError => {
                    request.op == "do-import"
                        && !matches!(request.element.attr("dry-run"), Some("true" | "1" | "on"))
                }
                FaultKind::CheckpointFull => request.key() == "SaveCheckpoint",
                _ => true,
            };
            if !(op_matches && applies) {
                continue;
            }
            let counter = &mut state.faults[index];
            counter.seen += 1;
            if due.is_none() && counter.seen > fault.after && counter.injected < fault.times {
                counter.injected += 1;
                due = Some((fault.kind, index));
            }
        }
        due
    }

    fn operation(&self, state: &mut State, request: &SomaRequest, injected: Injected) -> Reply {
        let e = &request.element;
        let domain = &request.domain;
        match request.op.as_str() {
            "get-status" => self.get_status(state, domain, e.attr("class").unwrap_or("")),
            "get-config" => {
                status::get_config(&self.spec, e.attr("class").unwrap_or(""), e.attr("name"))
            }
            "get-filestore" | "get-file" if is_local(e) => {
                let Some(d) = state.domains.iter().find(|d| d.name == *domain) else {
                    return no_domain(domain);
                };
                let local = Filestore::of_config(&d.configs.running);
                match e.attr("name") {
                    Some(name) if request.op == "get-file" => local.get(name),
                    _ => local.listing(e.attr("location").unwrap_or("")),
                }
            }
            "get-filestore" => state.store.listing(e.attr("location").unwrap_or("")),
            "get-file" => state.store.get(e.attr("name").unwrap_or("")),
            "set-file" => {
                let name = e.attr("name").unwrap_or("");
                self.set_file(state, domain, name, request.upload.as_ref())
            }
            "do-export" => self.do_export(state, request),
            "do-backup" => self.do_backup(state, request),
            "do-import" => {
                let Some(d) = state.domains.iter_mut().find(|d| d.name == *domain) else {
                    return no_domain(domain);
                };
                let fault = ImportFault {
                    fail_last: injected
                        .import_error
                        .map(|i| self.spec.faults[i].text.as_str()),
                };
                do_import(&mut d.configs.running, domain, request, fault)
            }
            "do-action" => match e.children.first() {
                Some(action) => self.do_action(state, domain, action, injected),
                None => soap_fault("empty do-action"),
            },
            _ => soap_fault("unknown operation"),
        }
    }

    /// `set-file`: into temporary: (the device's filestore) or the domain's `local:` (its
    /// running configuration's files).
    fn set_file(
        &self,
        state: &mut State,
        domain: &str,
        name: &str,
        upload: Option<&Result<Upload, String>>,
    ) -> Reply {
        let upload = match upload {
            Some(Ok(upload)) => upload.clone(),
            Some(Err(_)) => return error_text("Cannot write the file: invalid base64 content."),
            None => Upload {
                stored: super::upload::Stored::Memory(bytes::Bytes::new()),
                sha1: hex::encode(<sha1::Sha1 as sha1::Digest>::digest(b"")),
            },
        };
        let normal = normalise(name);
        if normal.starts_with("temporary:/") {
            let replaced = state
                .store
                .files
                .get(&normal)
                .map_or(0, |f| f.source.size());
            if upload.stored.size() > self.free_temporary(state).saturating_add(replaced) {
                return error_text("Cannot write the file: not enough space in temporary:.");
            }
            let file = SimFile {
                source: Source::Stored(upload.stored),
                modified: now_modified(),
                sha1: Some(upload.sha1),
            };
            state.store.put(normal, file);
            return ok();
        }
        if !normal.starts_with("local:/") {
            return error_text(
                "Cannot write the file: the simulator stores only temporary: and local: files.",
            );
        }
        let Some(d) = state.domains.iter_mut().find(|d| d.name == domain) else {
            return no_domain(domain);
        };
        match upload.stored.bytes(LOCAL_FILE_LIMIT) {
            Ok(bytes) => {
                d.configs.running.files.insert(file_name(&normal), bytes);
                ok()
            }
            Err(_) => error_text("Cannot write the file: too large for local: in the simulator."),
        }
    }

    fn get_status(&self, state: &State, domain: &str, class: &str) -> Reply {
        if class == "DomainCheckpointStatus" {
            let names: Vec<&str> = state
                .domains
                .iter()
                .filter(|d| d.name == domain)
                .flat_map(|d| d.configs.checkpoints.iter().map(|(n, _)| n.as_str()))
                .collect();
            return status::checkpoint_status(domain, &names);
        }
        let now = Instant::now();
        let rows: Vec<DomainRow<'_>> = state
            .domains
            .iter()
            .filter(|d| domain == "default" || d.name == domain)
            .map(|d| DomainRow {
                name: &d.name,
                save_needed: d.configs.save_needed(),
                quiesce_state: state_of(&d.transition, now),
            })
            .collect();
        status::get_status(&self.spec, &rows, self.free_temporary(state), class)
    }

    fn free_temporary(&self, state: &State) -> u64 {
        self.spec
            .free_temporary_mb
            .saturating_mul(1 << 20)
            .saturating_sub(state.store.used("temporary:"))
    }

    fn do_export(&self, state: &State, request: &SomaRequest) -> Reply {
        let Some(domain) = state.domains.iter().find(|d| d.name == request.domain) else {
            return error_log(&format!("Domain '{}' does not exist.", request.domain));
        };
        let persisted = request.element.attr("persisted").unwrap_or("true") == "true";
        let comment = request.element.child_text("user-comment");
        let config = if persisted {
            &domain.configs.saved
        } else {
            &domain.configs.running
        };
        let zip = content::export_zip(&ExportFacts {
            device: &self.spec.name,
            domain: &domain.name,
            firmware: &self.spec.firmware,
            build: &self.spec.build,
            persisted,
            comment,
            config,
        });
        self.staged_payload(state, zip)
    }

    fn do_backup(&self, state: &State, request: &SomaRequest) -> Reply {
        let wanted: Vec<&str> = request
            .element
            .children_named("domain")
            .filter_map(|d| d.attr("name"))
            .collect();
        if wanted.is_empty() {
            return soap_fault("do-backup needs a domain");
        }
        let names: Vec<&str> = if wanted.contains(&"all-domains") {
            state.domains.iter().map(|d| d.name.as_str()).collect()
        } else {
            if let Some(missing) = wanted
                .iter()
                .find(|w| !state.domains.iter().any(|d| d.name == **w))
            {
                return error_log(&format!("Domain '{missing}' does not exist."));
            }
            wanted
        };
        let configs: Vec<(String, &Config)> = state
            .domains
            .iter()
            .filter(|d| names.contains(&d.name.as_str()))
            .map(|d| (d.name.clone(), &d.configs.saved))
            .collect();
        let comment = request.element.child_text("user-comment");
        let zip = content::all_domains_zip(
            &self.spec.name,
            &configs,
            &self.spec.firmware,
            &self.spec.build,
            comment,
        );
        self.staged_payload(state, zip)
    }

    /// Exports are built in temporary: first; without the space the device answers an empty
    /// `dp:file`.
    fn staged_payload(&self, state: &State, zip: Vec<u8>) -> Reply {
        if (zip.len() as u64) > self.free_temporary(state) {
            return payload(None, Source::Bytes(bytes::Bytes::new()));
        }
        payload(None, Source::Bytes(bytes::Bytes::from(zip)))
    }

    fn do_action(
        &self,
        state: &mut State,
        domain: &str,
        action: &Node,
        injected: Injected,
    ) -> Reply {
        let now = Instant::now();
        let never = injected.never;
        let seconds = |name: &str| action.child_text(name).parse::<u64>().ok();
        match action.name.as_str() {
            "QuiesceDP" => {
                if seconds("timeout").is_none_or(|t| t < 60) {
                    return soap_fault("timeout must be at least 60");
                }
                let t = Transition {
                    quiesce: true,
                    at: now,
                    delay: self.spec.quiesce_delay,
                    never,
                };
                state.device_transition = Some(t);
                for d in state.domains.iter_mut().filter(|d| d.name != "default") {
                    d.transition = Some(t);
                }
                ok()
            }
            "UnquiesceDP" => {
                let t = Transition {
                    quiesce: false,
                    at: now,
                    delay: self.spec.unquiesce_delay,
                    never,
                };
                state.device_transition = Some(t);
                for d in state.domains.iter_mut().filter(|d| d.name != "default") {
                    d.transition = Some(t);
                }
                ok()
            }
            "DomainQuiesce" | "DomainUnquiesce" => {
                let quiesce = action.name == "DomainQuiesce";
                if quiesce && seconds("timeout").is_none_or(|t| t < 60) {
                    return soap_fault("timeout must be at least 60");
                }
                let name = action.child_text("name");
                let Some(d) = state.domains.iter_mut().find(|d| d.name == name) else {
                    return error_log(&format!("Domain '{name}' does not exist."));
                };
                let delay = if quiesce {
                    self.spec.quiesce_delay
                } else {
                    self.spec.unquiesce_delay
                };
                d.transition = Some(Transition {
                    quiesce,
                    at: now,
                    delay,
                    never,
                });
                ok()
            }
            "SaveConfig" => match state.domains.iter_mut().find(|d| d.name == domain) {
                Some(d) => {
                    d.configs.saved = d.configs.running.clone();
                    ok()
                }
                None => no_domain(domain),
            },
            "SaveCheckpoint" | "RollbackCheckpoint" | "RemoveCheckpoint" => {
                match state.domains.iter_mut().find(|d| d.name == domain) {
                    Some(d) => {
                        restore::checkpoint(&mut d.configs, action, injected.checkpoint_full)
                    }
                    None => no_domain(domain),
                }
            }
            "SecureBackup" => self.secure_backup(state, action),
            "SecureRestore" => self.secure_restore(state, action),
            "CreateDir" => {
                state
                    .store
                    .create_dirs(&normalise(action.child_text("Dir")));
                ok()
            }
            "RemoveDir" => state.store.remove_dir(action.child_text("Dir")),
            "DeleteFile" => state.store.delete(action.child_text("File")),
            _ => soap_fault("unknown action"),
        }
    }

    fn secure_backup(&self, state: &mut State, action: &Node) -> Reply {
        let id = format!(
            "{}-{}-{}",
            self.spec.serial,
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            state.backups + 1
        );
        let free = self.free_temporary(state);
        if let Err(reply) = restore::secure_backup(&self.spec, &mut state.store, free, action, &id)
        {
            return reply;
        }
        state.backups += 1;
        let snapshot = state
            .domains
            .iter()
            .map(|d| (d.name.clone(), d.configs.saved.clone()))
            .collect();
        state.snapshots.push((id, snapshot));
        if state.snapshots.len() > SNAPSHOTS {
            state.snapshots.remove(0);
        }
        ok()
    }

    /// SecureRestore: checks the backup in temporary:; unless validating only, every domain's
    /// running and saved configuration becomes the backup's (the initial configuration for a
    /// backup this device did not take in this process), checkpoints go, and the device
    /// restarts: down for `restore_downtime`.
    fn secure_restore(&self, state: &mut State, action: &Node) -> Reply {
        let checked = match restore::check_secure_restore(&self.spec, &state.store, action) {
            Ok(checked) => checked,
            Err(reply) => return reply,
        };
        if checked.validate_only {
            return ok();
        }
        let snapshot = checked
            .backup_id
            .and_then(|id| state.snapshots.iter().find(|(i, _)| *i == id))
            .map(|(_, s)| s.clone());
        for d in &mut state.domains {
            let config = snapshot
                .as_ref()
                .and_then(|s| s.iter().find(|(n, _)| *n == d.name))
                .map(|(_, c)| c.clone())
                .unwrap_or_else(|| default_config(&self.spec.name, &d.name));
            d.configs = Configs {
                running: config.clone(),
                saved: config,
                checkpoints: Vec::new(),
            };
            d.transition = None;
        }
        state.device_transition = None;
        state.down_until = Some(Instant::now() + self.spec.restore_downtime);
        state.restart = Some(self.spec.restore_downtime);
        ok()
    }

    /// `POST /sim/devices/{D}/domains/{X}/change`: changes the running configuration of
    /// `domain` as an administrator would. `None`: no such domain.
    pub fn change(&self, domain: &str, change: ChangeRequest) -> Option<Changed> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let n = state.changes + 1;
        let d = state.domains.iter_mut().find(|d| d.name == domain)?;
        state.changes = n;
        let class = change.class.unwrap_or_else(|| "XMLFirewallService".into());
        let name = change.name.unwrap_or_else(|| format!("{domain}-fw"));
        let property = change.property.unwrap_or_else(|| "UserSummary".into());
        let value = change
            .value
            .unwrap_or_else(|| format!("changed by an administrator ({n})"));
        d.configs
            .running
            .set_property(&class, &name, &property, &value);
        Some(Changed {
            device: self.spec.name.clone(),
            domain: d.name.clone(),
            digest: d.configs.running.digest(),
            saved_digest: d.configs.saved.digest(),
            save_needed: d.configs.save_needed(),
        })
    }

    /// The state `/sim/state` reports.
    pub fn state(&self) -> SimState {
        let state = self.lock();
        let now = Instant::now();
        SimState {
            device: self.spec.name.clone(),
            down: self.spec.down || state.down_until.is_some_and(|t| now < t),
            device_quiesce_state: state_of(&state.device_transition, now).to_string(),
            domains: state
                .domains
                .iter()
                .map(|d| DomainView {
                    name: d.name.clone(),
                    quiesce_state: state_of(&d.transition, now).to_string(),
                    save_needed: d.configs.save_needed(),
                    digest: d.configs.running.digest(),
                    saved_digest: d.configs.saved.digest(),
                    checkpoints: d
                        .configs
                        .checkpoints
                        .iter()
                        .map(|(n, _)| n.clone())
                        .collect(),
                })
                .collect(),
            temporary_files: state
                .store
                .files
                .keys()
                .filter_map(|n| n.strip_prefix("temporary:/"))
                .map(|rest| format!("temporary:///{rest}"))
                .collect(),
            ops: state.ops.clone(),
            faults_remaining: self
                .spec
                .faults
                .iter()
                .zip(&state.faults)
                .map(|(f, c)| f.times.saturating_sub(c.injected))
                .sum(),
            max_in_flight: self.max_in_flight.load(Ordering::SeqCst),
        }
    }
}

fn no_domain(domain: &str) -> Reply {
    error_log(&format!("Domain '{domain}' does not exist."))
}

/// Whether a get-file or get-filestore asks for `local:` (a domain's configuration files).
fn is_local(e: &Node) -> bool {
    let name = e.attr("name").or(e.attr("location")).unwrap_or("");
    name.starts_with("local:")
}

/// A device shared between its connections.
pub type SharedDevice = Arc<Device>;
