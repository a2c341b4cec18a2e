//! Notifications of run outcomes, delivered at least once (docs/notifications.md).
//!
//! A plan lists notifiers (`notify = ["ops"]`); each notifier names the outcomes it wants
//! (`on = [failed, missed]`) and its channels: a webhook (POST of the [`Notification`] as
//! JSON), syslog (RFC 5424 over UDP, or TCP with RFC 6587 octet counting) and e-mail (SMTP with
//! STARTTLS, through lettre). When a run reaches an outcome, [`queue_for`] makes one outbox
//! entry per notifier and channel, which the engine writes in the same commit as the run's
//! status ([`crate::store::Journal::append_with_outbox`]): a run that ended has its
//! notifications queued, crash or not. [`Outbox`] delivers them: each attempt is recorded in
//! the run's activity log; a failed one is retried with exponential backoff ([`Backoff`]) and
//! given up after a day. Delivery never touches the run: not its status, not its exit code.
//!
//! An entry holds everything its delivery needs (the channel's destination, the
//! notification), so delivering reads nothing but the state file. Secrets (an SMTP password)
//! are kept as their source and read when the message is sent.
//!
//! This module prints nothing; what happened to each attempt is returned ([`Attempt`]).

mod channels;
mod message;
mod outbox;
mod text;

pub use message::{
    notification, queue_for, Channel, Message, Notification, Outcome, Queued, MAX_TASKS,
};
pub use outbox::{Attempt, AttemptResult, Backoff, Outbox, Pass};
pub use text::{email_subject, email_text, syslog_line, syslog_severity};

#[cfg(test)]
mod tests;
