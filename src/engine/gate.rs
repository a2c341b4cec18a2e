//! `max_parallel` permits handed out in task creation order: among the tasks that are ready
//! to start, the one created first gets the next free permit (docs/architecture.md: tasks start in
//! creation order). A freed permit is handed to exactly one waiter, so thousands of waiting
//! tasks cost nothing while they wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    free: usize,
    /// Ready tasks without a permit, by id, each with the signal that wakes it.
    ready: BTreeMap<u32, Arc<Notify>>,
    /// Tasks handed a permit they have not picked up yet.
    granted: BTreeMap<u32, ()>,
}

impl State {
    /// Marks task `id` ready (once); returns what wakes it when its permit is granted.
    fn mark_ready(&mut self, id: u32) -> Arc<Notify> {
        self.ready
            .entry(id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// Hands free permits to the first ready tasks.
    fn grant(&mut self) {
        while self.free > 0 {
            let Some((id, wake)) = self.ready.pop_first() else {
                return;
            };
            self.free -= 1;
            self.granted.insert(id, ());
            wake.notify_one();
        }
    }
}

/// The gate.
#[derive(Debug)]
pub(crate) struct Gate {
    state: Mutex<State>,
}

/// A permit; the slot goes to the next ready task when it is dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut s) = self.gate.state.lock() {
            s.free += 1;
            s.grant();
        }
    }
}

impl Gate {
    /// A gate with `permits` slots.
    pub fn new(permits: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(State {
                free: permits.max(1),
                ..State::default()
            }),
        })
    }

    /// Marks task `id` ready to start, before it asks for its permit.
    pub fn ready(&self, id: u32) -> Arc<Notify> {
        let Ok(mut s) = self.state.lock() else {
            return Arc::new(Notify::new());
        };
        let wake = s.mark_ready(id);
        s.grant();
        wake
    }

    /// Waits for a permit for task `id`.
    pub async fn acquire(self: &Arc<Self>, id: u32) -> Permit {
        let wake = match self.state.lock() {
            Ok(mut s) => {
                if s.granted.remove(&id).is_some() {
                    return Permit { gate: self.clone() };
                }
                let wake = s.mark_ready(id);
                s.grant();
                if s.granted.remove(&id).is_some() {
                    return Permit { gate: self.clone() };
                }
                wake
            }
            Err(_) => return Permit { gate: self.clone() },
        };
        loop {
            // `notify_one` stores a wake-up if it comes before this wait.
            wake.notified().await;
            if let Ok(mut s) = self.state.lock() {
                if s.granted.remove(&id).is_some() {
                    return Permit { gate: self.clone() };
                }
            }
        }
    }
}

/// One lock per device, shared by every run of a process (`dpplan serve` runs several plans
/// at once): a device is never worked on by two runs at the same time. A pipelined task takes
/// its device's lock after its `max_parallel` permit, so the holder of a lock is always
/// running and every waiter gets it; a lockstep run takes all its devices at its start, in
/// name order.
#[derive(Debug, Default)]
pub struct DeviceLocks {
    locks: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held device lock.
pub type DeviceGuard = tokio::sync::OwnedMutexGuard<()>;

impl DeviceLocks {
    /// Waits until no other run works on `device`; the guard releases it.
    pub async fn lock(&self, device: &str) -> DeviceGuard {
        let m = match self.locks.lock() {
            Ok(mut l) => l.entry(device.to_string()).or_default().clone(),
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        };
        m.lock_owned().await
    }

    /// Takes every device of `devices`, in name order (so two callers never wait on each other).
    pub async fn lock_all<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a str>,
    ) -> Vec<DeviceGuard> {
        let set: std::collections::BTreeSet<&str> = devices.into_iter().collect();
        let mut guards = Vec::with_capacity(set.len());
        for d in set {
            guards.push(self.lock(d).await);
        }
        guards
    }

    /// Whether a run works on `device` now.
    pub fn busy(&self, device: &str) -> bool {
        self.locks
            .lock()
            .ok()
            .and_then(|l| l.get(device).map(|m| m.try_lock().is_err()))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_first_ready_task() {
        let g = Gate::new(1);
        g.ready(1);
        g.ready(3);
        g.ready(2);
        let p1 = g.acquire(1).await;
        let (g3, g2) = (g.clone(), g.clone());
        let h3 = tokio::spawn(async move { g3.acquire(3).await });
        let h2 = tokio::spawn(async move { g2.acquire(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!h2.is_finished() && !h3.is_finished());
        drop(p1);
        let p2 = h2.await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!h3.is_finished(), "3 must wait for 2's permit");
        drop(p2);
        drop(h3.await.unwrap());
    }

    #[tokio::test]
    async fn a_device_is_worked_on_by_one_holder_at_a_time() {
        let locks = Arc::new(DeviceLocks::default());
        let a = locks.lock("dp1").await;
        assert!(locks.busy("dp1") && !locks.busy("dp2"));
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move { l2.lock_all(["dp2", "dp1"]).await.len() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "dp1 is held");
        drop(a);
        assert_eq!(waiter.await.unwrap(), 2);
        assert!(!locks.busy("dp1"));
    }
}
