//! A device's restart (after a secure restore): the device asks for an outage until an
//! instant; its server stops listening (connections refused, the port held) and says so;
//! the answer that caused it is sent only then, so a client that got `OK` finds the port
//! closed. A leaf shared by the device and its server.

use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Signals between a device and its server about restarts.
#[derive(Debug)]
pub struct Outage {
    /// The instant the device answers again, set when a restart begins.
    until: watch::Sender<Option<Instant>>,
    /// Whether the server listens.
    listening: watch::Sender<bool>,
}

impl Default for Outage {
    fn default() -> Self {
        Outage {
            until: watch::Sender::new(None),
            listening: watch::Sender::new(true),
        }
    }
}

impl Outage {
    /// Asks the server to stop listening until `until`.
    pub fn begin(&self, until: Instant) {
        self.listening.send_replace(true);
        self.until.send_replace(Some(until));
    }

    /// Waits (at most `limit`) until the server has stopped listening.
    pub async fn wait_closed(&self, limit: Duration) {
        let mut listening = self.listening.subscribe();
        let _ = tokio::time::timeout(limit, listening.wait_for(|l| !*l)).await;
    }

    /// The server's side: restarts as they are asked for.
    pub fn subscribe(&self) -> watch::Receiver<Option<Instant>> {
        self.until.subscribe()
    }

    /// The server's side: it listens, or not.
    pub fn set_listening(&self, listening: bool) {
        self.listening.send_replace(listening);
    }
}
