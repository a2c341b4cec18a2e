//! A task and what it is made of: its target, its steps, the facts about a device that
//! expansion reads.
//!
//! A leaf of the module: the graph builder imports these from here, never from `mod.rs`.

use crate::check::{ActionCall, Policy, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the engine learned about one device before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceFacts {
    /// It answered; its domains in the order it reports them.
    Available {
        /// Domain names.
        domains: Vec<String>,
    },
    /// It did not answer the probe (the reason is shown on the SKIPPED task).
    Unavailable(String),
    /// It answered but refused the plan's credentials: it is reachable, so its tasks FAIL
    /// (with this reason) rather than being skipped as unavailable.
    Refused(String),
}

/// What a task backs up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Target {
    /// The whole device (secure backup).
    Device,
    /// One domain.
    Domain(String),
    /// All domains in one export.
    AllDomains,
}

impl Target {
    /// The domain column of reports: the domain, or `all-domains`.
    pub fn domain_label(&self) -> &str {
        match self {
            Target::Domain(d) => d,
            Target::Device | Target::AllDomains => "all-domains",
        }
    }
}

/// One step of one task, with `when` resolved and its recovery policy decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// The step's name in its kind (`backup`).
    pub name: String,
    /// What it runs.
    pub call: ActionCall,
    /// Runs even after a failure, a stop, a rollback or a cancel.
    pub always: bool,
    /// What rollback runs for it.
    pub undo: Option<ActionCall>,
    /// The effective recovery policy.
    pub policy: Policy,
    /// Step timeout in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Indices (within the task) of the steps it follows.
    pub after: Vec<usize>,
    /// The lockstep phase: 0 validate and pre-scripts, 1 quiesce, 2 backup, 3 unquiesce,
    /// 4 post-scripts.
    pub phase: u8,
}

/// One task: one device (and domain) of one activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// 1-based, in creation order.
    pub id: u32,
    /// 1-based activity number.
    pub activity: u32,
    /// The kind's name.
    pub kind: String,
    /// `SECURE_BACKUP`, `EXPORT_DOMAIN`.
    pub action: String,
    /// The device.
    pub device: String,
    /// What it backs up.
    pub target: Target,
    /// Why it will not run, for SKIPPED tasks.
    pub skipped: Option<String>,
    /// Why it failed before it could start (its device refused the credentials), for tasks
    /// that are FAILED from the outset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// The activity's parameter values.
    pub params: BTreeMap<String, Value>,
    /// The steps, in declaration order (empty for SKIPPED tasks); shared by the tasks of an
    /// activity.
    pub steps: Arc<[TaskStep]>,
}

impl Task {
    /// Whether the task has steps to run: neither SKIPPED nor FAILED at expansion.
    pub fn runs(&self) -> bool {
        self.skipped.is_none() && self.failed.is_none()
    }

    /// A stable name: `a1/QA1` or `a2/TEST8/DOMAIN1`.
    pub fn key(&self) -> String {
        match &self.target {
            Target::Device => format!("a{}/{}", self.activity, self.device),
            Target::AllDomains => format!("a{}/{}/all-domains", self.activity, self.device),
            Target::Domain(d) => format!("a{}/{}/{}", self.activity, self.device, d),
        }
    }

    /// The step id of step `name`: `a1/QA1:backup`.
    pub fn step_id(&self, name: &str) -> String {
        format!("{}:{name}", self.key())
    }
}
