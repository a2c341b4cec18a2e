//! Time, through a trait: the engine asks the clock for "now" and sleeps through tokio, so
//! tests run on paused tokio time and a manual clock.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use std::time::Duration;

/// Where the engine reads the wall-clock time, and how it waits.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;

    /// Waits `d` (backoffs, polling). The manual clock only moves its own time forward.
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's clock moved by a fixed amount: reads `start` at the moment it is made, then
/// runs at the system's pace. For trying schedules and windows at another time of day
/// (`DPPLAN_TEST_NOW`).
#[derive(Debug, Clone, Copy)]
pub struct ShiftedClock {
    shift: chrono::Duration,
}

impl ShiftedClock {
    /// A clock that reads `start` now.
    pub fn starting_at(start: DateTime<Utc>) -> ShiftedClock {
        ShiftedClock {
            shift: start - Utc::now(),
        }
    }
}

#[async_trait::async_trait]
impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.shift
    }
}

/// A clock for tests: it starts at a fixed time, moves with real time, and jumps forward on
/// [`ManualClock::advance`] and on every [`Clock::sleep`], which waits at most a few real
/// milliseconds (so a simulated appliance still gets real time to change state). Every
/// sleep is recorded.
#[derive(Debug)]
pub struct ManualClock {
    start: DateTime<Utc>,
    base: Mutex<Option<tokio::time::Instant>>,
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock reading `start` now.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            start,
            base: Mutex::new(None),
            offset: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        }
    }

    /// Every sleep asked of this clock, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Moves the clock forward by `d` (in addition to tokio's time).
    pub fn advance(&self, d: Duration) {
        if let Ok(mut o) = self.offset.lock() {
            *o += d;
        }
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    async fn sleep(&self, d: Duration) {
        if let Ok(mut s) = self.sleeps.lock() {
            s.push(d);
        }
        self.advance(d);
        tokio::time::sleep(d.min(Duration::from_millis(5))).await;
    }

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
