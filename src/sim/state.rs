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
    /// Hex SHA-256 of the running configuration's canonical form (docs/simulator.md).
    #[serde(default)]
    pub digest: String,
    /// The same of the saved (persisted) configuration.
    #[serde(default)]
    pub saved_digest: String,
    /// Checkpoint names, oldest first.
    #[serde(default)]
    pub checkpoints: Vec<String>,
}

/// The JSON body of `POST /sim/devices/{D}/domains/{X}/change`; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// Default `XMLFirewallService`.
    pub class: Option<String>,
    /// Default `X-fw`.
    pub name: Option<String>,
    /// Default `UserSummary`.
    pub property: Option<String>,
    /// Default `changed by an administrator (N)`, N counting the device's changes.
    pub value: Option<String>,
}

/// The answer of a change: the domain's digests after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub device: String,
    pub domain: String,
    pub digest: String,
    pub saved_digest: String,
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
