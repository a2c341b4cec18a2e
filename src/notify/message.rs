//! What a notification is made of: a run's [`Outcome`], the [`Notification`] sent for it,
//! the [`Channel`] it goes out on, and [`queue_for`], which makes the outbox entries of an
//! outcome.
//!
//! The leaf of the module: the channels, the outbox and the texts import these from here,
//! never from `mod.rs`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::check::{Email, Program, Syslog};
use crate::report::{json_time, RunView, TaskReport};
use crate::store::{NewOutboxEntry, Record, RunId, RunStatus, RunSummary, TaskRecord, TaskStatus};

/// The most tasks a notification lists (those that did not succeed); the rest are counted.
pub const MAX_TASKS: usize = 100;

/// A run's outcome, as the notifications of it tell it: built by the engine when a run ends
/// (or is interrupted), and by `dpplan serve` for a MISSED run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The run's summary with the outcome's status and error (`finished` is set for final
    /// statuses).
    pub summary: RunSummary,
    /// When the run reached this outcome.
    pub at: DateTime<Utc>,
    /// The run's tasks, as `dpplan run --json` shows them (empty for a run that ended before
    /// it had tasks).
    pub tasks: Vec<TaskReport>,
}

impl Outcome {
    /// Run `id` of `plan` (started at `started`) reached `status` at `at`, with `tasks` as
    /// they ended: the summary is counted from them as the state file counts a run's tasks.
    pub fn new(
        id: RunId,
        plan: &str,
        started: DateTime<Utc>,
        status: RunStatus,
        error: Option<String>,
        at: DateTime<Utc>,
        tasks: Vec<TaskReport>,
    ) -> Outcome {
        let records: Vec<TaskRecord> = tasks
            .iter()
            .map(|t| TaskRecord {
                id: t.id,
                activity: 0,
                action: t.action.clone(),
                device: t.device.clone(),
                domain: t.domain.clone(),
                status: t.status,
                reason: None,
            })
            .collect();
        Outcome {
            summary: RunSummary::of_tasks(id, plan, started, status, error, at, &records),
            at,
            tasks,
        }
    }
}

/// What a notification says: the webhook's JSON body (docs/notifications.md has an example),
/// and what the e-mail and syslog message are made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The outcome's identity: `RUN-STATUS-MILLIS` (`12-FAILED-1795470120000`), the same for
    /// every notifier and every delivery of one outcome, so a receiver can drop duplicates.
    pub id: String,
    /// The notifier it is sent for.
    pub notifier: String,
    /// The host the run's process ran on.
    pub host: String,
    /// When the run reached this outcome (RFC 3339, UTC).
    pub at: String,
    /// The run, as `dpplan runs --json` prints it.
    pub run: RunView,
    /// The tasks that did not succeed, as `dpplan run --json` prints them, in task order; at
    /// most [`MAX_TASKS`].
    pub tasks: Vec<TaskReport>,
    /// Tasks that did not succeed and are not listed (past [`MAX_TASKS`]).
    pub tasks_omitted: usize,
}

/// Where one message goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A POST of the notification as JSON.
    Webhook {
        /// The URL.
        url: String,
    },
    /// An RFC 5424 message over UDP or TCP.
    Syslog(Syslog),
    /// An e-mail.
    Email(Email),
}

impl Channel {
    /// For logs: `webhook https://hooks.example.com`, `syslog udp://10.0.0.9:514`,
    /// `email to ops@example.com via smtp.example.com:587`. A webhook's path and query are
    /// left out: they often hold a token.
    pub fn describe(&self) -> String {
        match self {
            Channel::Webhook { url } => match reqwest::Url::parse(url) {
                Ok(u) => {
                    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                    format!(
                        "webhook {}://{}{port}",
                        u.scheme(),
                        u.host_str().unwrap_or("")
                    )
                }
                Err(_) => "webhook (an invalid URL)".into(),
            },
            Channel::Syslog(s) => format!(
                "syslog {}://{}",
                if s.udp { "udp" } else { "tcp" },
                crate::appliance::http::authority(&s.host, s.port)
            ),
            Channel::Email(e) => format!(
                "email to {} via {}",
                e.to.join(", "),
                crate::appliance::http::authority(&e.host, e.port)
            ),
        }
    }
}

/// What an outbox entry holds: the notifier, the channel, the notification. Written by
/// [`queue_for`], read back by [`Outbox`](super::Outbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The notifier's name.
    pub notifier: String,
    /// Where it goes.
    pub channel: Channel,
    /// What it says.
    pub notification: Notification,
}

/// What a run's outcome queues: the outbox entries, and the lines for the run's log that say
/// so, to be written with the run's status in one commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queued {
    /// One per notifier and channel.
    pub entries: Vec<NewOutboxEntry>,
    /// `notify: FAILED queued for ops (webhook, email)`, and a line for each notifier the
    /// plan names that the program does not have.
    pub log: Vec<Record>,
}

/// The notifications of `outcome` for the notifiers plan `plan` of `program` lists whose `on`
/// has the outcome's status: one entry per notifier and channel, in the plan's order.
pub fn queue_for(program: &Program, plan: &str, outcome: &Outcome) -> Queued {
    let mut queued = Queued::default();
    let Some(plan) = program.plan(plan) else {
        return queued;
    };
    let status = outcome.summary.status;
    let mut told = Vec::new();
    for name in &plan.notify {
        let Some(n) = program.notifiers.iter().find(|n| &n.name == name) else {
            queued.log.push(log_line(
                outcome.at,
                format!("notify: the plan names notifier `{name}`, which is not defined; nothing sent for it"),
            ));
            continue;
        };
        if !n.on.contains(&status) {
            continue;
        }
        let mut channels = Vec::new();
        if let Some(url) = &n.webhook {
            channels.push(Channel::Webhook { url: url.clone() });
        }
        if let Some(s) = &n.syslog {
            channels.push(Channel::Syslog(s.clone()));
        }
        if let Some(e) = &n.email {
            channels.push(Channel::Email(e.clone()));
        }
        if channels.is_empty() {
            continue;
        }
        let kinds: Vec<&str> = channels.iter().map(Channel::kind).collect();
        told.push(format!("{} ({})", n.name, kinds.join(", ")));
        let notification = notification(outcome, &n.name);
        for channel in channels {
            let message = Message {
                notifier: n.name.clone(),
                channel,
                notification: notification.clone(),
            };
            match serde_json::to_value(&message) {
                // Delivery runs on the system's time (its backoff is real waiting): an
                // outcome read on a clock ahead of it (`DPPLAN_TEST_NOW`) is due now all the same.
                Ok(message) => queued.entries.push(NewOutboxEntry {
                    queued: outcome.at.min(chrono::Utc::now()),
                    message,
                }),
                Err(e) => queued.log.push(log_line(
                    outcome.at,
                    format!("notify {}: cannot queue: {e}", n.name),
                )),
            }
        }
    }
    if !told.is_empty() {
        queued.log.push(log_line(
            outcome.at,
            format!("notify: {} queued for {}", status.as_str(), told.join(", ")),
        ));
    }
    queued
}

impl Channel {
    /// `webhook`, `syslog` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook { .. } => "webhook",
            Channel::Syslog(_) => "syslog",
            Channel::Email(_) => "email",
        }
    }
}

/// The notification of `outcome` for notifier `notifier`.
pub fn notification(outcome: &Outcome, notifier: &str) -> Notification {
    let not_succeeded: Vec<&TaskReport> = outcome
        .tasks
        .iter()
        .filter(|t| t.status != TaskStatus::Succeeded)
        .collect();
    let listed: Vec<TaskReport> = not_succeeded
        .iter()
        .take(MAX_TASKS)
        .map(|t| (*t).clone())
        .collect();
    Notification {
        id: format!(
            "{}-{}-{}",
            outcome.summary.id,
            outcome.summary.status.as_str(),
            outcome.at.timestamp_millis()
        ),
        notifier: notifier.to_string(),
        host: host_name(),
        at: json_time(outcome.at),
        run: RunView::new(&outcome.summary),
        tasks_omitted: not_succeeded.len() - listed.len(),
        tasks: listed,
    }
}

/// This machine's name (`/proc/sys/kernel/hostname`), or `localhost`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn log_line(at: DateTime<Utc>, message: String) -> Record {
    Record::Log {
        task: None,
        step: None,
        at,
        message,
    }
}
