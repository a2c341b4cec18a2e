//! A journal kept in memory: for dry runs and tests. Nothing survives the process.

use super::outbox::StoredEntry;
use super::outbox::{OutboxEntry, OutboxStore, Settlement};
use super::types::NewOutboxEntry;
use super::types::{Journal, NewRun, Record, RunId, StoreError};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Runs and their records, and an outbox, in memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    runs: Vec<(NewRun, Vec<Record>)>,
    outbox: BTreeMap<u64, StoredEntry>,
    next_entry: u64,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Batch("the memory journal's lock is poisoned".into()))
    }

    /// The records of run `id`, in order.
    pub fn records(&self, id: RunId) -> Vec<Record> {
        self.state()
            .ok()
            .and_then(|s| {
                s.runs
                    .get((id as usize).wrapping_sub(1))
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_default()
    }

    /// Run `id` as created.
    pub fn created(&self, id: RunId) -> Option<NewRun> {
        self.state().ok().and_then(|s| {
            s.runs
                .get((id as usize).wrapping_sub(1))
                .map(|(n, _)| n.clone())
        })
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        let mut state = self.state()?;
        state.runs.push((run, Vec::new()));
        Ok(state.runs.len() as RunId)
    }

    async fn append(&self, run: RunId, records: Vec<Record>) -> Result<(), StoreError> {
        self.append_with_outbox(run, records, Vec::new()).await
    }

    async fn append_with_outbox(
        &self,
        run: RunId,
        records: Vec<Record>,
        outbox: Vec<NewOutboxEntry>,
    ) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let r = state
            .runs
            .get_mut((run as usize).wrapping_sub(1))
            .ok_or(StoreError::NoRun(run))?;
        r.1.extend(records);
        for entry in &outbox {
            state.next_entry += 1;
            let id = state.next_entry;
            state.outbox.insert(id, StoredEntry::new(run, entry));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl OutboxStore for MemoryJournal {
    fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = self.state()?;
        Ok(state
            .outbox
            .iter()
            .map(|(id, e)| e.clone().entry(*id))
            .collect())
    }

    async fn settle(
        &self,
        id: u64,
        settlement: Settlement,
        log: Vec<Record>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        let Some(entry) = state.outbox.remove(&id) else {
            return Ok(false);
        };
        let run = entry.run;
        if let Some(next) = entry.settle(&settlement) {
            state.outbox.insert(id, next);
        }
        if let Some(r) = state.runs.get_mut((run as usize).wrapping_sub(1)) {
            r.1.extend(log);
        }
        Ok(true)
    }
}
