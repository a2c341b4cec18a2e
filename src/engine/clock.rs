//! Time, through a trait: the engine asks the clock for "now" and sleeps through tokio, so
//! tests run on paused tokio time and a manual clock.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Duration;

/// Where the engine reads the wall-clock time.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that starts at a fixed time and moves with tokio's clock (so pausing and
/// advancing tokio time in a test moves it too).
#[derive(Debug)]
pub struct ManualClock {
    start: DateTime<Utc>,
    base: Mutex<Option<tokio::time::Instant>>,
    offset: Mutex<Duration>,
}

impl ManualClock {
    /// A clock reading `start` now.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            start,
            base: Mutex::new(None),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward by `d` (in addition to tokio's time).
    pub fn advance(&self, d: Duration) {
        if let Ok(mut o) = self.offset.lock() {
            *o += d;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = match self.base.lock() {
            Ok(mut b) => {
                let base = *b.get_or_insert_with(tokio::time::Instant::now);
                base.elapsed()
            }
            Err(_) => Duration::ZERO,
        };
        let offset = self.offset.lock().map(|o| *o).unwrap_or_default();
        self.start
            + chrono::Duration::from_std(elapsed + offset)
                .unwrap_or_else(|_| chrono::Duration::zero())
    }
}
