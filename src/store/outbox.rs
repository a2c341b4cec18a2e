//! The outbox: messages about runs waiting to be delivered, kept in the state file.
//!
//! What a message says and where it goes is not the store's business: it keeps each one as
//! the JSON it is given (the `notify` module writes and reads it). What the store guarantees
//! is when entries appear and go: an entry is queued in the same commit as the records it is
//! appended with (a run's final status), so a run that ended has its messages queued, crash
//! or not; and an attempt's result is recorded in one commit with the line it adds to the
//! run's activity log. docs/checkpoint-format.md, "The outbox".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::types::{Journal, NewOutboxEntry, Record, RunId, StoreError};

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Its number: 1, 2, 3... in the order entries were queued in this state file (never
    /// reused).
    pub id: u64,
    /// The run it is about (its attempts are logged there).
    pub run: RunId,
    /// When it was queued.
    pub queued: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt: DateTime<Utc>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// What to deliver and where, as queued.
    pub message: serde_json::Value,
}

/// The result of an attempt to deliver an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Delivered: the entry leaves the outbox.
    Delivered,
    /// Not delivered; tried again at `next_attempt`.
    Retry {
        /// When.
        next_attempt: DateTime<Utc>,
        /// Why this attempt failed.
        error: String,
    },
    /// Not delivered, and never tried again: the entry leaves the outbox.
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

/// A journal with an outbox: what delivers notifications reads and settles it.
#[async_trait::async_trait]
pub trait OutboxStore: Journal {
    /// Every entry, in the order queued.
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Records an attempt's result for entry `id` and appends `log` to the journal of its run,
    /// in one commit (durable on return). `false` when the entry is gone (settled already);
    /// the log lines are left out when its run is gone.
    async fn settle(
        &self,
        id: u64,
        settlement: Settlement,
        log: Vec<Record>,
    ) -> Result<bool, StoreError>;
}

/// The entry as the `outbox` table keeps it (its id is the key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredEntry {
    pub run: RunId,
    pub queued: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt: DateTime<Utc>,
    pub last_error: Option<String>,
    pub message: serde_json::Value,
}

impl StoredEntry {
    /// A new entry of run `run`.
    pub fn new(run: RunId, entry: &NewOutboxEntry) -> StoredEntry {
        StoredEntry {
            run,
            queued: entry.queued,
            attempts: 0,
            next_attempt: entry.queued,
            last_error: None,
            message: entry.message.clone(),
        }
    }

    /// As the API shows it.
    pub fn entry(self, id: u64) -> OutboxEntry {
        OutboxEntry {
            id,
            run: self.run,
            queued: self.queued,
            attempts: self.attempts,
            next_attempt: self.next_attempt,
            last_error: self.last_error,
            message: self.message,
        }
    }

    /// After an attempt: `None` when the entry leaves the outbox.
    pub fn settle(mut self, settlement: &Settlement) -> Option<StoredEntry> {
        match settlement {
            Settlement::Delivered | Settlement::GaveUp { .. } => None,
            Settlement::Retry {
                next_attempt,
                error,
            } => {
                self.attempts = self.attempts.saturating_add(1);
                self.next_attempt = *next_attempt;
                self.last_error = Some(error.clone());
                Some(self)
            }
        }
    }
}
