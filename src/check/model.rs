//! The checked program: what a plan means, with defaults applied and names resolved.
//!
//! Everything here is plain data (serde), so a run can store the exact program it executes.
//! Spans are kept where later layers may want to point at the source.

use crate::diag::Span;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Everything a set of plan files (a root file and its imports) defines.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Program {
    /// Global settings.
    pub settings: Settings,
    /// Where backups go; `None` when no file declares a store.
    pub store: Option<StoreConfig>,
    /// The devices, in declaration order.
    pub devices: Vec<Device>,
    /// Activity kinds by name (stdlib and user-defined).
    pub kinds: BTreeMap<String, Kind>,
    /// The plans, in declaration order.
    pub plans: Vec<Plan>,
    /// `notify "NAME" { ... }` blocks, in declaration order.
    #[serde(default)]
    pub notifiers: Vec<Notifier>,
    /// Device positions by name, built on the first lookup (a run looks devices up per task).
    #[serde(skip)]
    device_index: OnceLock<HashMap<String, usize>>,
}

impl Program {
    /// The plan named `name`.
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.name == name)
    }

    /// The device named `name`.
    pub fn device(&self, name: &str) -> Option<&Device> {
        let index = self.device_index.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.devices.len());
            for (i, d) in self.devices.iter().enumerate() {
                index.entry(d.name.clone()).or_insert(i);
            }
            index
        });
        match index.get(name).and_then(|&i| self.devices.get(i)) {
            Some(d) if d.name == name => Some(d),
            // `devices` changed after the index was built: look the slow way.
            _ => self.devices.iter().find(|d| d.name == name),
        }
    }
}

/// `settings { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// The global switch: false ends every run BACKUPS_DISABLED.
    pub backups_enabled: bool,
    /// Devices backed up at the same time.
    pub max_parallel: u32,
    /// Free temporary: space a device needs for a secure backup, in bytes (0: not checked).
    pub appliance_min_free: u64,
    /// How long past a quiesce/unquiesce timeout to keep waiting, in milliseconds.
    pub quiesce_grace_ms: u64,
    /// The largest domain export accepted, in bytes (`max_export_size`).
    #[serde(default = "default_max_export_bytes")]
    pub max_export_bytes: u64,
    /// Journal retention: keep at most this many finished runs (`keep_runs`).
    #[serde(default)]
    pub keep_runs: Option<u32>,
    /// Journal retention: keep finished runs this many days (`keep_days`).
    #[serde(default)]
    pub keep_days: Option<u32>,
}

fn default_max_export_bytes() -> u64 {
    crate::appliance::DEFAULT_MAX_DOWNLOAD_BYTES
}

fn default_download_timeout_ms() -> u64 {
    crate::appliance::DEFAULT_DOWNLOAD_TIMEOUT.as_millis() as u64
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backups_enabled: true,
            max_parallel: 8,
            appliance_min_free: 0,
            quiesce_grace_ms: 60_000,
            max_export_bytes: default_max_export_bytes(),
            keep_runs: None,
            keep_days: None,
        }
    }
}

/// Free space required in the store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Space {
    /// Bytes.
    Bytes(u64),
    /// Percent of the filesystem.
    Percent(u8),
}

/// `store "PATH" { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoreConfig {
    /// The store's root, resolved against the declaring file's directory.
    pub path: PathBuf,
    /// The store must be a mounted remote filesystem.
    pub require_remote: bool,
    /// Free space required before a run starts.
    pub min_free: Option<Space>,
    /// Retention: keep this many backups per device and domain.
    pub keep_last: Option<u32>,
    /// Retention: keep backups this many days.
    pub keep_days: Option<u32>,
}

/// Where a secret comes from; secrets are never written in plans.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Secret {
    /// `env("VAR")`
    Env(String),
    /// `file("path")`, resolved against the declaring file's directory.
    File(PathBuf),
}

/// The user of a device whose inventory entry names none.
pub const DEFAULT_USER: &str = "admin";

/// `device "NAME" { ... }` with the inventory's defaults applied.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Device {
    /// The device name.
    pub name: String,
    /// Host name or address of the XML management interface.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The user.
    pub user: Option<String>,
    /// The password's source.
    pub password: Option<Secret>,
    /// HTTPS (true) or plain HTTP (false, simulators only).
    pub tls: bool,
    /// A CA file to verify the appliance's certificate with.
    pub tls_ca: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Request timeout in milliseconds.
    pub timeout_ms: u64,
    /// The longest one download may take in all, in milliseconds (`download_timeout`).
    #[serde(default = "default_download_timeout_ms")]
    pub download_timeout_ms: u64,
    /// The largest export accepted from it, in bytes (the settings' `max_export_size`).
    #[serde(default = "default_max_export_bytes")]
    pub max_export_bytes: u64,
    /// Where the device is declared.
    #[serde(skip)]
    pub span: Span,
    /// Where the device is declared, as `file:line:col` (kept in stored runs, for messages
    /// about the device at run time).
    #[serde(default)]
    pub at: String,
}

/// Whether a kind gives one task per device or per device and domain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Per {
    /// One task per matching device.
    Device,
    /// One task per matching device and domain (or one all-domains task per device).
    Domain,
}

/// A parameter type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ParamType {
    /// `string`
    String,
    /// `int`
    Int,
    /// `bool`
    Bool,
    /// `duration`
    Duration,
    /// `size`
    Size,
    /// `script`
    Script,
    /// `patterns`
    Patterns,
    /// `backup`: which backup a restore reads (`latest`, `run(N)`, `path("...")`).
    Backup,
}

impl ParamType {
    /// From the name used in `param x : NAME`.
    pub fn parse(s: &str) -> Option<ParamType> {
        Some(match s {
            "string" => ParamType::String,
            "int" => ParamType::Int,
            "bool" => ParamType::Bool,
            "duration" => ParamType::Duration,
            "size" => ParamType::Size,
            "script" => ParamType::Script,
            "patterns" => ParamType::Patterns,
            "backup" => ParamType::Backup,
            _ => return None,
        })
    }

    /// The name as written.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Size => "size",
            ParamType::Script => "script",
            ParamType::Patterns => "patterns",
            ParamType::Backup => "backup",
        }
    }
}

/// A parameter value, typed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Value {
    /// Unset (`none`).
    None,
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Milliseconds.
    Duration(u64),
    /// Bytes.
    Size(u64),
    /// A script.
    Script(Script),
    /// Name patterns.
    Patterns(Vec<String>),
    /// A backup in the store (restores).
    Backup(BackupRef),
}

/// Which backup a restore reads: resolved against the store's manifests when the task runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum BackupRef {
    /// `latest`: the newest complete backup of the task's device (and domain).
    Latest,
    /// `run(N)`: the backup run N wrote for the task's device (and domain).
    Run(u64),
    /// `path("...")`: a file (an export ZIP) or a folder (a secure backup), relative to the
    /// store when not absolute.
    Path(String),
}

impl std::fmt::Display for BackupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupRef::Latest => f.write_str("latest"),
            BackupRef::Run(n) => write!(f, "run({n})"),
            BackupRef::Path(p) => write!(f, "path({p:?})"),
        }
    }
}

impl Value {
    /// Whether the value is set (for `when`).
    pub fn is_set(&self) -> bool {
        !matches!(self, Value::None)
    }

    /// Whether the value turns a step on (`when`, `unless`): set, and for a bool, true.
    pub fn is_on(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            other => other.is_set(),
        }
    }
}

/// `param name : type = default`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Param {
    /// The name.
    pub name: String,
    /// The type.
    pub ty: ParamType,
    /// The default; `None` means the parameter is required.
    pub default: Option<Value>,
}

/// The built-in actions a step can run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum Action {
    /// `dp.validate`
    Validate,
    /// `dp.quiesce`
    Quiesce,
    /// `dp.unquiesce`
    Unquiesce,
    /// `dp.secure_backup`
    SecureBackup,
    /// `dp.export`
    Export,
    /// `dp.save_config`
    SaveConfig,
    /// `run`
    Run,
    /// `store.discard`
    Discard,
    /// `dp.checkpoint`: SaveCheckpoint `dpplan-<run>-<task>` in the task's domain.
    Checkpoint,
    /// `dp.rollback_checkpoint`: RollbackCheckpoint to the task's checkpoint.
    RollbackCheckpoint,
    /// `dp.remove_checkpoint`: RemoveCheckpoint of the task's checkpoint.
    RemoveCheckpoint,
    /// `dp.import`: do-import of the chosen export into the task's domain.
    Import,
    /// `dp.upload`: set-file of the chosen secure backup's files into temporary:.
    Upload,
    /// `dp.secure_restore`: SecureRestore from the uploaded files.
    SecureRestore,
    /// `dp.wait_ready`: until the appliance answers again as the backup's device.
    WaitReady,
    /// `dp.remove_upload`: RemoveDir of the uploaded files.
    RemoveUpload,
}

impl Action {
    /// Every action.
    pub const ALL: &'static [Action] = &[
        Action::Validate,
        Action::Quiesce,
        Action::Unquiesce,
        Action::SecureBackup,
        Action::Export,
        Action::SaveConfig,
        Action::Run,
        Action::Discard,
        Action::Checkpoint,
        Action::RollbackCheckpoint,
        Action::RemoveCheckpoint,
        Action::Import,
        Action::Upload,
        Action::SecureRestore,
        Action::WaitReady,
        Action::RemoveUpload,
    ];

    /// The name as written in plans.
    pub fn name(self) -> &'static str {
        match self {
            Action::Validate => "dp.validate",
            Action::Quiesce => "dp.quiesce",
            Action::Unquiesce => "dp.unquiesce",
            Action::SecureBackup => "dp.secure_backup",
            Action::Export => "dp.export",
            Action::SaveConfig => "dp.save_config",
            Action::Run => "run",
            Action::Discard => "store.discard",
            Action::Checkpoint => "dp.checkpoint",
            Action::RollbackCheckpoint => "dp.rollback_checkpoint",
            Action::RemoveCheckpoint => "dp.remove_checkpoint",
            Action::Import => "dp.import",
            Action::Upload => "dp.upload",
            Action::SecureRestore => "dp.secure_restore",
            Action::WaitReady => "dp.wait_ready",
            Action::RemoveUpload => "dp.remove_upload",
        }
    }

    /// Whether this is a task's main work (a backup, an export, or a restore's import,
    /// upload or restore): scripts before it are pre-task scripts, after it post-task ones.
    pub fn is_work(self) -> bool {
        matches!(
            self,
            Action::SecureBackup
                | Action::Export
                | Action::Import
                | Action::Upload
                | Action::SecureRestore
        )
    }

    /// From the name as written in plans.
    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.name() == s)
    }
}

/// An argument of a step's action, resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum ArgValue {
    /// The task's device (`device`).
    Device,
    /// The task's domain (`domain`).
    Domain,
    /// A parameter of the kind, by name.
    Param(String),
    /// A literal value.
    Literal(Value),
}

/// A call of a built-in action.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionCall {
    /// The action.
    pub action: Action,
    /// Named arguments (the positional ones are named by the action's signature).
    pub args: BTreeMap<String, ArgValue>,
}

/// One step of a kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepDef {
    /// The step name (`backup`).
    pub name: String,
    /// What it runs.
    pub call: ActionCall,
    /// The step exists only when this parameter is set.
    pub when: Option<String>,
    /// The step exists only when this parameter is not set (absent in older stored runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    /// Runs whatever happened before (a `finally`).
    pub always: bool,
    /// Predecessors (by default, the step before).
    pub after: Vec<String>,
    /// Step timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// What `rollback` runs for this step.
    pub undo: Option<ActionCall>,
    /// The step's own recovery policy.
    pub on_failure: Option<Policy>,
}

/// `kind NAME per device|domain { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Kind {
    /// The kind name.
    pub name: String,
    /// Tasks per device or per domain.
    pub per: Per,
    /// The action name reported (`SECURE_BACKUP`, `EXPORT_DOMAIN`).
    pub action: String,
    /// Parameters in declaration order.
    pub params: Vec<Param>,
    /// Steps in declaration order.
    pub steps: Vec<StepDef>,
}

impl Kind {
    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// A recovery policy (docs/language.md, "Recovery policies").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Policy {
    /// Record the failure and go on.
    Continue,
    /// Skip the task's remaining steps except `always` ones.
    Stop,
    /// Undo completed steps newest first, then the `always` steps.
    Rollback,
    /// Stop, and cancel every task of the run that has not started.
    Halt,
    /// Re-run up to `times` more times with exponential backoff, then `then`.
    Retry {
        /// Extra attempts.
        times: u32,
        /// First backoff in milliseconds.
        backoff_ms: u64,
        /// Backoff ceiling in milliseconds.
        max_backoff_ms: Option<u64>,
        /// What to do when the retries are used up.
        then: Box<Policy>,
    },
}

/// When an `always` script runs, by the task's outcome so far.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ScriptWhen {
    /// Whatever the outcome.
    Always,
    /// Only when an earlier step failed.
    Failed,
    /// Only when nothing failed.
    Succeeded,
}

/// `script("path", timeout = 5m, when = failed, args = [...])`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Script {
    /// The executable, resolved against the declaring file's directory.
    pub path: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Outcome filter.
    pub when: ScriptWhen,
    /// The working directory it runs in: the directory of the plan file that names it.
    /// Empty in runs stored before it was kept (the script's own directory is used then).
    #[serde(default)]
    pub dir: PathBuf,
}

/// The day of the week, as plans name it.
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `window { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Window {
    /// Days the window opens on (0 = Monday); all seven when absent.
    pub days: Vec<u8>,
    /// Opening time, minutes after midnight.
    pub from_min: Option<u32>,
    /// Closing time, minutes after midnight; before `from` means the next day.
    pub to_min: Option<u32>,
    /// IANA zone; `None` is the host's zone.
    pub tz: Option<String>,
}

/// Stage model (docs/language.md, "Plans").
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Stages {
    /// Each task runs its steps as soon as its device is free.
    Pipelined,
    /// Barriers between the phases of all tasks.
    Lockstep,
}

/// What happens when the window closes mid-run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OnWindowClose {
    /// Tasks not started are CANCELLED.
    Cancel,
    /// The run sleeps until the window opens again.
    Sleep,
}

/// Which domains an activity selects.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum DomainSel {
    /// Patterns matched against the domains each device reports.
    Patterns(Vec<String>),
    /// One all-domains export per device.
    All,
}

/// `activity KIND "label" { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Activity {
    /// The kind's name.
    pub kind: String,
    /// The optional label.
    pub label: Option<String>,
    /// Device patterns.
    pub devices: Vec<String>,
    /// Domain selection (per-domain kinds only).
    pub domains: Option<DomainSel>,
    /// Parameter values, defaults applied.
    pub params: BTreeMap<String, Value>,
    /// `on_failure = P` for all the activity's steps.
    pub on_failure: Option<Policy>,
    /// `on_failure { step = P }`
    pub step_policies: BTreeMap<String, Policy>,
}

/// `plan "NAME" { ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// The plan name.
    pub name: String,
    /// The maintenance window; `None` is always open.
    pub window: Option<Window>,
    /// The default policy.
    pub on_failure: Policy,
    /// Stage model.
    pub stages: Stages,
    /// Window close behaviour.
    pub on_window_close: OnWindowClose,
    /// The pre-plan script.
    pub pre_plan: Option<Script>,
    /// The post-plan script.
    pub post_plan: Option<Script>,
    /// Activities in order.
    pub activities: Vec<Activity>,
    /// `schedule = "CRON"`: five-field cron, read in the window's zone (else the host's).
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// `notify = ["NAME", ...]`: the notifiers told of this plan's run outcomes.
    #[serde(default)]
    pub notify: Vec<String>,
}

/// `schedule = "CRON"` as written (checked: five fields that parse).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Schedule {
    /// The expression, e.g. `0 22 * * mon-fri`.
    pub cron: String,
}

/// `notify "NAME" { ... }`: where a plan's run outcomes are sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notifier {
    /// The notifier's name, as plans list it.
    pub name: String,
    /// The run outcomes it fires on (final run statuses, and MISSED).
    pub on: Vec<crate::store::RunStatus>,
    /// `webhook = "URL"`: POST of the run summary as JSON.
    pub webhook: Option<String>,
    /// `syslog = "udp://HOST:PORT"` or `tcp://`: an RFC 5424 message.
    pub syslog: Option<Syslog>,
    /// `email { ... }`
    pub email: Option<Email>,
    /// Where it is declared, as `file:line:col`.
    #[serde(default)]
    pub at: String,
}

/// A syslog destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Syslog {
    /// UDP (true) or TCP (false, octet-counted framing).
    pub udp: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// `email { smtp = "HOST:PORT" from = ... to = [...] user = ... password = ... tls = ... }`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Email {
    /// The SMTP server's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The sender address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The user to log in as, if any.
    pub user: Option<String>,
    /// The password's source.
    pub password: Option<Secret>,
    /// STARTTLS (true, the default) or plain SMTP (`tls = false`).
    pub starttls: bool,
}
