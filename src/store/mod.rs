//! The durable journal and history of runs, in one redb file.
//!
//! The engine writes every run, task and step transition through [`Journal`]; the report
//! commands and `resume` read them back through [`History`]. Nothing else touches the file.
//! Record kinds, keys and the schema version are documented in docs/checkpoint-format.md.
//!
//! [`RedbStore`] implements both on a redb file opened for writing: one writer thread commits
//! everything queued in one fsynced transaction (group commit); reads run on the caller's
//! thread. One process at a time writes a state file (redb's single-writer mode), and says who
//! it is in a sidecar file beside it ([`owner`]). [`ReadOnlyStore`] implements [`History`] on
//! the same file opened read-only, beside its writer: what the report commands use.
//!
//! Beside the runs, the file keeps an outbox of messages about them waiting to be delivered
//! ([`OutboxStore`]): queued in the commit of a run's final status, settled attempt by attempt.
//!
//! This layer knows nothing of plans, appliances or the engine's scheduling: it stores the
//! values it is given. It depends on nothing else in the crate.

mod fold;
pub mod memory;
mod outbox;
pub mod owner;
mod read;
mod readonly;
mod redb;
pub mod retention;
mod schema;
pub mod types;
mod writer;

pub use self::outbox::{OutboxEntry, OutboxStore, Settlement};
pub use self::readonly::ReadOnlyStore;
pub use self::redb::RedbStore;
pub use self::schema::SCHEMA_VERSION;
pub use self::types::{
    ActivityRecord, FileRecord, History, Journal, LogLine, NewOutboxEntry, NewRun, Record,
    RunDetail, RunId, RunStatus, RunSummary, StepOutcome, StepState, StoreError, TaskFacts,
    TaskRecord, TaskState, TaskStatus,
};
