//! A journal kept in memory: for dry runs and tests. Nothing survives the process.

use super::{Journal, NewRun, Record, RunId, StoreError};
use std::sync::Mutex;

/// Runs and their records, in memory.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    runs: Mutex<Vec<(NewRun, Vec<Record>)>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records of run `id`, in order.
    pub fn records(&self, id: RunId) -> Vec<Record> {
        self.runs
            .lock()
            .ok()
            .and_then(|r| r.get((id as usize).wrapping_sub(1)).map(|(_, v)| v.clone()))
            .unwrap_or_default()
    }

    /// Run `id` as created.
    pub fn created(&self, id: RunId) -> Option<NewRun> {
        self.runs
            .lock()
            .ok()
            .and_then(|r| r.get((id as usize).wrapping_sub(1)).map(|(n, _)| n.clone()))
    }
}

#[async_trait::async_trait]
impl Journal for MemoryJournal {
    async fn create_run(&self, run: NewRun) -> Result<RunId, StoreError> {
        let mut runs = self
            .runs
            .lock()
            .map_err(|_| StoreError::Db("memory journal poisoned".into()))?;
        runs.push((run, Vec::new()));
        Ok(runs.len() as RunId)
    }

    async fn append(&self, run: RunId, records: Vec<Record>) -> Result<(), StoreError> {
        let mut runs = self
            .runs
            .lock()
            .map_err(|_| StoreError::Db("memory journal poisoned".into()))?;
        let r = runs
            .get_mut((run as usize).wrapping_sub(1))
            .ok_or(StoreError::NoRun(run))?;
        r.1.extend(records);
        Ok(())
    }
}
