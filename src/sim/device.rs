//! One simulated appliance: its state (domains with SaveNeeded and quiesce transitions, the
//! `temporary:` filestore, operation counters, fault counters) and the SOMA answers it gives.
//! Transport-free: [`Device::handle`] takes a parsed request and returns an [`Answer`] that
//! the HTTP layer turns into bytes (or a reset, a delay, a cut body).

use super::content::{self, ExportFacts};
use super::fleet::{DeviceSpec, FaultKind};
use super::reply::{
    auth_failure, document, error_log, error_text, ok, payload, soap_fault, status, Answer, Reply,
    SomaRequest, Source, STRAY_NS,
};
use super::request::Element as Node;
pub use super::state::{DomainView, SimState};
use crate::appliance::soma::split_dir;
use quick_xml::escape::escape;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    save_needed: bool,
    transition: Option<Transition>,
}

#[derive(Debug, Clone)]
struct SimFile {
    source: Source,
    modified: String,
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
    /// Normalised names (`temporary:/dir/file`).
    files: BTreeMap<String, SimFile>,
    /// Normalised names (`temporary:/dir`).
    dirs: BTreeSet<String>,
    ops: BTreeMap<String, u64>,
    faults: Vec<FaultCounter>,
}

/// One simulated appliance.
#[derive(Debug)]
pub struct Device {
    spec: DeviceSpec,
    state: Mutex<State>,
    /// Management requests being answered now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// One management request being answered: counted in [`Device::max_in_flight`] until dropped.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Device);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn now_modified() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `temporary:///a/b/` and `temporary:/a/b` both become `temporary:/a/b`.
fn normalise(name: &str) -> String {
    split_dir(name).1
}

fn parent(name: &str) -> &str {
    match name.rfind('/') {
        Some(slash) => &name[..slash],
        None => name.find(':').map(|c| &name[..=c]).unwrap_or(""),
    }
}

fn base_name(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

const FIRMWARE_CLASSES: [&str; 3] = ["FirmwareVersion", "FirmwareVersion2", "FirmwareVersion3"];

impl Device {
    /// A device in its initial state.
    pub fn new(spec: DeviceSpec) -> Self {
        let domains = spec
            .domains
            .iter()
            .map(|name| DomainState {
                name: name.clone(),
                save_needed: spec.unsaved.contains(name),
                transition: None,
            })
            .collect();
        let state = State {
            domains,
            device_transition: None,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            ops: BTreeMap::new(),
            faults: vec![FaultCounter::default(); spec.faults.len()],
        };
        Device {
            spec,
            state: Mutex::new(state),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
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
        let mut never = false;
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
            Some((FaultKind::NeverQuiesce | FaultKind::NeverUnquiesce, _)) => never = true,
            None => {}
        }
        answer.reply = self.operation(&mut state, &request, never);
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

    fn operation(&self, state: &mut State, request: &SomaRequest, never: bool) -> Reply {
        let e = &request.element;
        match request.op.as_str() {
            "get-status" => self.get_status(state, &request.domain, e.attr("class").unwrap_or("")),
            "get-config" => self.get_config(e.attr("class").unwrap_or(""), e.attr("name")),
            "get-filestore" => self.get_filestore(state, e.attr("location").unwrap_or("")),
            "get-file" => self.get_file(state, e.attr("name").unwrap_or("")),
            "do-export" => self.do_export(state, request),
            "do-backup" => self.do_backup(state, request),
            "do-action" => match e.children.first() {
                Some(action) => self.do_action(state, &request.domain, action, never),
                None => soap_fault("empty do-action"),
            },
            _ => soap_fault("unknown operation"),
        }
    }

    fn get_status(&self, state: &State, domain: &str, class: &str) -> Reply {
        let now = Instant::now();
        let spec = &self.spec;
        match class {
            "DomainStatus" => {
                let rows: Vec<_> = state
                    .domains
                    .iter()
                    .filter(|d| domain == "default" || d.name == domain)
                    .map(|d| {
                        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
                        let mut fields = vec![
                            ("Domain", d.name.clone()),
                            ("SaveNeeded", on_off(d.save_needed)),
                            ("TraceEnabled", "off".into()),
                            ("DebugEnabled", "off".into()),
                            ("ProbeEnabled", "off".into()),
                            ("DiagEnabled", "off".into()),
                            ("CurrentCommand", String::new()),
                            ("QuiesceState", state_of(&d.transition, now).into()),
                            ("InterfaceState", "ok".into()),
                            ("FailsafeMode", "none".into()),
                        ];
                        if self.spec.no_quiesce_state {
                            fields.retain(|(k, _)| *k != "QuiesceState");
                        }
                        ("DomainStatus", fields)
                    })
                    .collect();
                status(&rows)
            }
            "FilesystemStatus" => {
                let mib = |n: u64| n.to_string();
                let free = self.free_temporary(state) >> 20;
                status(&[(
                    "FilesystemStatus",
                    vec![
                        ("FreeEncrypted", mib(spec.free_temporary_mb)),
                        (
                            "TotalEncrypted",
                            mib(spec.free_temporary_mb.saturating_mul(4)),
                        ),
                        ("FreeTemporary", mib(free)),
                        (
                            "TotalTemporary",
                            mib(spec.free_temporary_mb.saturating_mul(4)),
                        ),
                        ("FreeInternal", mib(spec.free_temporary_mb)),
                        (
                            "TotalInternal",
                            mib(spec.free_temporary_mb.saturating_mul(4)),
                        ),
                    ],
                )])
            }
            class if FIRMWARE_CLASSES.contains(&class) => {
                let known = FIRMWARE_CLASSES
                    .iter()
                    .position(|c| *c == spec.firmware_class)
                    .unwrap_or(FIRMWARE_CLASSES.len() - 1);
                let asked = FIRMWARE_CLASSES
                    .iter()
                    .position(|c| *c == class)
                    .unwrap_or(0);
                if asked > known {
                    // Older firmware does not know the newer class: the schema rejects it.
                    return soap_fault("unknown status class");
                }
                status(&[(
                    class,
                    vec![
                        ("Serial", spec.serial.clone()),
                        ("Version", spec.firmware.clone()),
                        ("Build", spec.build.clone()),
                        ("BuildDate", "2024/01/01 00:00:00".into()),
                        ("DeliveryType", "LTS".into()),
                        ("WatchdogBuild", spec.firmware.clone()),
                        ("InstalledDPOS", spec.firmware.clone()),
                        ("RunningDPOS", spec.firmware.clone()),
                        ("XMLAccelerator", "none".into()),
                        ("MachineType", spec.machine_type.clone()),
                        ("ModelType", spec.model.clone()),
                    ],
                )])
            }
            _ => soap_fault("unknown status class"),
        }
    }

    fn get_config(&self, class: &str, name: Option<&str>) -> Reply {
        let found = class == "CryptoCertificate"
            && name.is_some_and(|n| self.spec.certs.iter().any(|c| c == n));
        match (found, name) {
            (true, Some(name)) => Reply::Xml(document(&format!(
                "         <dp:config>\n            \
                 <CryptoCertificate name=\"{n}\" xmlns:env=\"{STRAY_NS}\">\n               \
                 <mAdminState>enabled</mAdminState>\n               \
                 <Filename>cert:///{n}.pem</Filename>\n               \
                 <PasswordAlias>off</PasswordAlias>\n            </CryptoCertificate>\n         \
                 </dp:config>",
                n = escape(name)
            ))),
            _ => Reply::Xml(document("         <dp:config/>")),
        }
    }

    fn free_temporary(&self, state: &State) -> u64 {
        let used = state
            .files
            .iter()
            .filter(|(name, _)| name.starts_with("temporary:"))
            .fold(0u64, |sum, (_, f)| sum.saturating_add(f.source.size()));
        self.spec
            .free_temporary_mb
            .saturating_mul(1 << 20)
            .saturating_sub(used)
    }

    fn get_filestore(&self, state: &State, location: &str) -> Reply {
        let location = normalise(location);
        if !location.ends_with(':') {
            return soap_fault("location must be a location such as temporary:");
        }
        let mut inner = format!(
            "         <dp:filestore>\n            <location name=\"{}\" xmlns:env=\"{STRAY_NS}\">\n",
            escape(&location)
        );
        Self::list_into(state, &location, 4, &mut inner);
        inner.push_str("            </location>\n         </dp:filestore>");
        Reply::Xml(document(&inner))
    }

    fn list_into(state: &State, dir: &str, depth: usize, out: &mut String) {
        let pad = "   ".repeat(depth) + "   ";
        for (name, file) in state.files.iter().filter(|(n, _)| parent(n) == dir) {
            out.push_str(&format!(
                "{pad}<file name=\"{}\">\n{pad}   <size>{}</size>\n{pad}   <modified>{}</modified>\n{pad}</file>\n",
                escape(base_name(name)),
                file.source.size(),
                file.modified
            ));
        }
        for sub in state.dirs.iter().filter(|d| parent(d) == dir) {
            out.push_str(&format!("{pad}<directory name=\"{}\">\n", escape(sub)));
            Self::list_into(state, sub, depth + 1, out);
            out.push_str(&format!("{pad}</directory>\n"));
        }
    }

    fn get_file(&self, state: &State, name: &str) -> Reply {
        match state.files.get(&normalise(name)) {
            Some(file) => payload(Some(name), file.source.clone()),
            None => error_text("Cannot read the specified file"),
        }
    }

    fn do_export(&self, state: &State, request: &SomaRequest) -> Reply {
        let Some(domain) = state.domains.iter().find(|d| d.name == request.domain) else {
            return error_log(&format!("Domain '{}' does not exist.", request.domain));
        };
        let persisted = request.element.attr("persisted").unwrap_or("true") == "true";
        let comment = request.element.child_text("user-comment");
        let zip = content::export_zip(&ExportFacts {
            device: &self.spec.name,
            domain: &domain.name,
            firmware: &self.spec.firmware,
            build: &self.spec.build,
            persisted,
            unsaved: domain.save_needed,
            comment,
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
        let names: Vec<String> = if wanted.contains(&"all-domains") {
            state.domains.iter().map(|d| d.name.clone()).collect()
        } else {
            if let Some(missing) = wanted
                .iter()
                .find(|w| !state.domains.iter().any(|d| d.name == **w))
            {
                return error_log(&format!("Domain '{missing}' does not exist."));
            }
            wanted.iter().map(|w| w.to_string()).collect()
        };
        let comment = request.element.child_text("user-comment");
        let zip = content::all_domains_zip(
            &self.spec.name,
            &names,
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

    fn do_action(&self, state: &mut State, domain: &str, action: &Node, never: bool) -> Reply {
        let now = Instant::now();
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
                    d.save_needed = false;
                    ok()
                }
                None => error_log(&format!("Domain '{domain}' does not exist.")),
            },
            "SecureBackup" => self.secure_backup(state, action),
            "CreateDir" => {
                let dir = normalise(action.child_text("Dir"));
                self.create_dirs(state, &dir);
                ok()
            }
            "RemoveDir" => {
                let dir = normalise(action.child_text("Dir"));
                if !state.dirs.contains(&dir) {
                    return error_log(&format!(
                        "Cannot delete directory {dir}: it does not exist."
                    ));
                }
                let inside = |n: &String| n == &dir || n.starts_with(&format!("{dir}/"));
                state.dirs.retain(|d| !inside(d));
                state.files.retain(|n, _| !inside(n));
                ok()
            }
            "DeleteFile" => match state.files.remove(&normalise(action.child_text("File"))) {
                Some(_) => ok(),
                None => error_log("Cannot delete file: it does not exist."),
            },
            _ => soap_fault("unknown action"),
        }
    }

    fn create_dirs(&self, state: &mut State, dir: &str) {
        let mut d = dir.to_string();
        while !d.ends_with(':') && !d.is_empty() {
            state.dirs.insert(d.clone());
            d = parent(&d).to_string();
        }
    }

    fn secure_backup(&self, state: &mut State, action: &Node) -> Reply {
        const FAILED: &str = "Error creating secure backup.";
        let spec = &self.spec;
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
            || needed > self.free_temporary(state)
        {
            return error_text(FAILED);
        }
        let modified = now_modified();
        let mut manifest = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<secure-backup>\n  \
             <firmware-version>{}</firmware-version>\n  <build>{}</build>\n  \
             <machine-type>{}</machine-type>\n  <model-type>{}</model-type>\n  \
             <serial-number>{}</serial-number>\n  <files>\n",
            escape(&spec.firmware),
            escape(&spec.build),
            escape(&spec.machine_type),
            escape(&spec.model),
            escape(&spec.serial),
        );
        self.create_dirs(state, &destination);
        for name in archives {
            let checksum = if size <= MANIFEST_SHA1_LIMIT {
                content::sha1_hex(&spec.name, name, size)
            } else {
                format!("sim-unverified-{size}")
            };
            manifest.push_str(&format!(
                "    <file>\n      <filename>{name}</filename>\n      <size>{size}</size>\n      \
                 <checksum>{checksum}</checksum>\n    </file>\n"
            ));
            state.files.insert(
                format!("{destination}/{name}"),
                SimFile {
                    source: Source::Content {
                        key: content::key(&spec.name, name),
                        size,
                    },
                    modified: modified.clone(),
                },
            );
        }
        manifest.push_str("  </files>\n</secure-backup>\n");
        state.files.insert(
            format!("{destination}/{}", SECURE_BACKUP_FILES[0]),
            SimFile {
                source: Source::Bytes(bytes::Bytes::from(manifest)),
                modified,
            },
        );
        ok()
    }

    /// The state `/sim/state` reports.
    pub fn state(&self) -> SimState {
        let state = self.lock();
        let now = Instant::now();
        SimState {
            device: self.spec.name.clone(),
            down: self.spec.down,
            device_quiesce_state: state_of(&state.device_transition, now).to_string(),
            domains: state
                .domains
                .iter()
                .map(|d| DomainView {
                    name: d.name.clone(),
                    quiesce_state: state_of(&d.transition, now).to_string(),
                    save_needed: d.save_needed,
                })
                .collect(),
            temporary_files: state
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

/// A device shared between its connections.
pub type SharedDevice = Arc<Device>;
