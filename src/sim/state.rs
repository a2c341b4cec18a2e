//! What `GET /sim/state` answers: a simulated device's state, for tests and people.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A domain as `/sim/state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainView {
    pub name: String,
    /// `""` when normal.
    pub quiesce_state: String,
    pub save_needed: bool,
}

/// The JSON of `GET /sim/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    pub device: String,
    pub down: bool,
    pub device_quiesce_state: String,
    pub domains: Vec<DomainView>,
    /// `temporary:///dir/file` for every file in temporary:.
    pub temporary_files: Vec<String>,
    /// Requests received, by operation or action name.
    pub ops: BTreeMap<String, u64>,
    /// Injections left over all faults.
    pub faults_remaining: u64,
    /// The most management requests the device was answering at once (from a request's
    /// arrival until its answer starts).
    #[serde(default)]
    pub max_in_flight: u64,
}
