//! [`Outbox`]: queues notifications of outcomes made outside the engine, and delivers what
//! is due, recording each attempt in the run's log and retrying failures with exponential
//! backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::channels::{Senders, Trust};
use super::message::{queue_for, Message, Outcome};
use crate::check::Program;
use crate::store::{OutboxEntry, OutboxStore, Record, RunId, Settlement, StoreError};

/// The most entries one pass attempts; the rest wait for the next pass.
const PASS_LIMIT: usize = 256;

/// The most attempts in flight at once.
const PARALLEL: usize = 16;

/// When failed attempts are tried again: the first wait, doubled after each further failure
/// up to a longest wait; an entry whose next attempt would come later than `give_up_after`
/// after it was queued is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failed attempt.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// How long after it was queued an entry is still tried.
    pub give_up_after: Duration,
}

impl Default for Backoff {
    /// 30 s, doubling to at most 1 h, for 24 h: about 30 attempts.
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_secs(30),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl Backoff {
    /// The default, with the first wait from `DPPLAN_NOTIFY_BACKOFF_MS` when it is set
    /// (milliseconds; what tests use to retry at once).
    pub fn from_env() -> Backoff {
        let mut b = Backoff::default();
        if let Some(ms) = std::env::var("DPPLAN_NOTIFY_BACKOFF_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            b.first = Duration::from_millis(ms);
        }
        b
    }

    /// The wait after `failed` failed attempts (1 for the first).
    pub fn delay(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(40);
        self.first
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver took it (for syslog over UDP: it was sent).
    Delivered,
    /// It failed; tried again at `next_attempt`.
    Failed {
        /// Why.
        error: String,
        /// When it is tried again.
        next_attempt: DateTime<Utc>,
    },
    /// It failed, and is not tried again.
    GaveUp {
        /// Why the last attempt failed.
        error: String,
    },
}

/// One attempt to deliver an outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The outbox entry.
    pub entry: u64,
    /// The run it is about.
    pub run: RunId,
    /// The notifier.
    pub notifier: String,
    /// The channel, as logs name it ([`Channel::describe`](super::message::Channel::describe)).
    pub channel: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it went.
    pub result: AttemptResult,
}

/// What one delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Every attempt made, in entry order.
    pub attempts: Vec<Attempt>,
    /// Entries left in the outbox.
    pub waiting: usize,
    /// When the earliest of them is due.
    pub next_due: Option<DateTime<Utc>>,
}

/// Delivers the outbox of a state file (docs/notifications.md, "Delivery").
///
/// One `Outbox` per process delivers: its passes never overlap (a pass waits for the one
/// under way), so no entry is sent twice by one process. A message may still be sent twice
/// across processes (a process killed after the receiver took it and before the attempt was
/// recorded): delivery is at least once; [`Notification::id`](super::message::Notification::id) lets receivers drop
/// duplicates.
pub struct Outbox {
    store: Arc<dyn OutboxStore>,
    senders: Arc<Senders>,
    backoff: Backoff,
    attempt_timeout: Duration,
    poll: Duration,
    pass: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("backoff", &self.backoff)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox of `store`: backoff from [`Backoff::from_env`], attempts held to 10 s,
    /// TLS trusting the public web's CAs and those of `SSL_CERT_FILE`.
    pub fn new(store: Arc<dyn OutboxStore>) -> Outbox {
        Outbox {
            store,
            senders: Arc::new(Senders::new(Trust::from_env())),
            backoff: Backoff::from_env(),
            attempt_timeout: Duration::from_secs(10),
            poll: Duration::from_secs(30),
            pass: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Retries on `backoff`.
    pub fn backoff(mut self, backoff: Backoff) -> Outbox {
        self.backoff = backoff;
        self
    }

    /// Holds each attempt to `limit` (connecting, sending and the answer together).
    pub fn attempt_timeout(mut self, limit: Duration) -> Outbox {
        self.attempt_timeout = limit;
        self
    }

    /// Trusts the CA certificates in `pem` too (instead of `SSL_CERT_FILE`'s).
    pub fn trust(mut self, pem: Vec<u8>) -> Outbox {
        self.senders = Arc::new(Senders::new(Trust::Extra(pem)));
        self
    }

    /// How often [`Outbox::run`] looks for entries queued by others (runs of this process
    /// are picked up at once when their code calls [`Outbox::wake`]).
    pub fn poll(mut self, every: Duration) -> Outbox {
        self.poll = every;
        self
    }

    /// Queues the notifications of `outcome` (for the notifiers plan `plan` of `program`
    /// lists) in one commit with `records`: how a run whose outcome the engine does not
    /// record (a MISSED run) is told. Returns the number of entries queued.
    pub async fn enqueue_for(
        &self,
        run: RunId,
        mut records: Vec<Record>,
        program: &Program,
        plan: &str,
        outcome: &Outcome,
    ) -> Result<usize, StoreError> {
        let queued = queue_for(program, plan, outcome);
        records.extend(queued.log);
        let n = queued.entries.len();
        self.store
            .append_with_outbox(run, records, queued.entries)
            .await?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    /// Makes a running [`Outbox::run`] look at the outbox now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Attempts every entry due at `now` (at most 256, 16 at a time), each held to the
    /// attempt timeout, and records each attempt: delivered or given up, the entry leaves the
    /// outbox; failed, it is due again after its backoff. Each attempt adds a line to the
    /// run's log.
    pub async fn deliver_due(&self, now: DateTime<Utc>) -> Result<Pass, StoreError> {
        self.pass(now, self.attempt_timeout).await
    }

    /// One pass over what is due now, in at most about `limit` in all (each attempt held to
    /// `limit`): what `dpplan run` does once its run has ended. Whatever is not delivered
    /// stays in the outbox for the next process that writes the state file.
    pub async fn deliver_for(&self, limit: Duration) -> Result<Pass, StoreError> {
        let attempt = self.attempt_timeout.min(limit);
        // The attempts are bounded; recording them is a commit each. Past a second more the
        // pass is dropped: its unrecorded entries are attempted again later.
        let bound = limit.saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(bound, self.pass(Utc::now(), attempt)).await {
            Ok(pass) => pass,
            Err(_) => Ok(Pass::default()),
        }
    }

    /// Delivers until `shutdown` completes: a pass, then a wait until the next entry is due,
    /// [`Outbox::wake`] is called, or the poll interval has passed. `on_pass` sees each pass
    /// that attempted something. The attempts under way when `shutdown` completes are
    /// finished (each is bounded by the attempt timeout). A store error ends it.
    pub async fn run<F>(
        &self,
        shutdown: F,
        mut on_pass: impl FnMut(&Pass) + Send,
    ) -> Result<(), StoreError>
    where
        F: Future<Output = ()> + Send,
    {
        tokio::pin!(shutdown);
        loop {
            let now = Utc::now();
            let pass = self.deliver_due(now).await?;
            if !pass.attempts.is_empty() {
                on_pass(&pass);
            }
            let wait = pass
                .next_due
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(self.poll)
                .min(self.poll);
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn pass(&self, now: DateTime<Utc>, limit: Duration) -> Result<Pass, StoreError> {
        let _one_at_a_time = self.pass.lock().await;
        let due: Vec<OutboxEntry> = self
            .store
            .outbox()?
            .into_iter()
            .filter(|e| e.next_attempt <= now)
            .take(PASS_LIMIT)
            .collect();
        let mut sends = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        for (i, entry) in due.iter().enumerate() {
            let message: Result<Message, String> = serde_json::from_value(entry.message.clone())
                .map_err(|e| format!("the queued message cannot be read: {e}"));
            let senders = self.senders.clone();
            let permits = permits.clone();
            sends.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = match &message {
                    Ok(m) => senders.send(&m.channel, &m.notification, limit).await,
                    Err(e) => Err(e.clone()),
                };
                (i, message.ok(), result)
            });
        }
        let mut results = Vec::with_capacity(due.len());
        while let Some(done) = sends.join_next().await {
            if let Ok(done) = done {
                results.push(done);
            }
        }
        results.sort_by_key(|(i, _, _)| *i);
        let mut pass = Pass::default();
        for (i, message, result) in results {
            let Some(entry) = due.get(i) else { continue };
            let attempt = self.settle(entry, message.as_ref(), result, now).await?;
            pass.attempts.push(attempt);
        }
        let left = self.store.outbox()?;
        pass.waiting = left.len();
        pass.next_due = left.iter().map(|e| e.next_attempt).min();
        Ok(pass)
    }

    /// Records one attempt, with its line in the run's log.
    async fn settle(
        &self,
        entry: &OutboxEntry,
        message: Option<&Message>,
        result: Result<(), String>,
        now: DateTime<Utc>,
    ) -> Result<Attempt, StoreError> {
        let number = entry.attempts.saturating_add(1);
        let (notifier, channel) = match message {
            Some(m) => (m.notifier.clone(), m.channel.describe()),
            None => ("?".to_string(), "an unreadable message".to_string()),
        };
        let (result, settlement, text) = match result {
            Ok(()) => (
                AttemptResult::Delivered,
                Settlement::Delivered,
                format!("delivered (attempt {number})"),
            ),
            Err(error) => {
                let wait = self.backoff.delay(number);
                let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                let deadline = entry.queued
                    + chrono::Duration::from_std(self.backoff.give_up_after)
                        .unwrap_or(chrono::Duration::MAX);
                if message.is_none() || next > deadline {
                    let text = format!(
                        "attempt {number} failed: {error}; given up (queued {})",
                        crate::report::json_time(entry.queued)
                    );
                    (
                        AttemptResult::GaveUp {
                            error: error.clone(),
                        },
                        Settlement::GaveUp { error },
                        text,
                    )
                } else {
                    let text = format!(
                        "attempt {number} failed: {error}; next attempt at {} (in {})",
                        crate::report::json_time(next),
                        crate::report::duration(
                            chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
                        )
                    );
                    (
                        AttemptResult::Failed {
                            error: error.clone(),
                            next_attempt: next,
                        },
                        Settlement::Retry {
                            next_attempt: next,
                            error,
                        },
                        text,
                    )
                }
            }
        };
        let log = vec![Record::Log {
            task: None,
            step: None,
            at: now,
            message: format!("notify {notifier}: {channel}: {text}"),
        }];
        self.store.settle(entry.id, settlement, log).await?;
        Ok(Attempt {
            entry: entry.id,
            run: entry.run,
            notifier,
            channel,
            attempt: number,
            result,
        })
    }
}
