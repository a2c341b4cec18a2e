//! `max_parallel` permits handed out in task creation order: among the tasks that are ready
//! to start, the one created first gets the next free permit (DESIGN.md 3: tasks start in
//! creation order).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    free: usize,
    ready: BTreeSet<u32>,
}

/// The gate.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Notify,
}

/// A permit; the slot is free again when it is dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut s) = self.gate.state.lock() {
            s.free += 1;
        }
        self.gate.changed.notify_waiters();
    }
}

impl Gate {
    /// A gate with `permits` slots.
    pub fn new(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State {
                free: permits.max(1),
                ready: BTreeSet::new(),
            }),
            changed: Notify::new(),
        })
    }

    /// Marks task `id` ready to start (before it asks for a permit).
    pub fn ready(&self, id: u32) {
        if let Ok(mut s) = self.state.lock() {
            s.ready.insert(id);
        }
        self.changed.notify_waiters();
    }

    /// Waits for a permit for task `id`, which must have been marked ready.
    pub async fn acquire(self: &Arc<Self>, id: u32) -> Permit {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Ok(mut s) = self.state.lock() {
                if !s.ready.contains(&id) {
                    s.ready.insert(id);
                }
                if s.free > 0 && s.ready.first() == Some(&id) {
                    s.free -= 1;
                    s.ready.remove(&id);
                    drop(s);
                    // Others may be next in line now.
                    self.changed.notify_waiters();
                    return Permit { gate: self.clone() };
                }
            }
            notified.await;
        }
    }
}
