//! What a notification looks like as an e-mail and as a syslog message.

use super::message::Notification;
use crate::report::table::printable;
use crate::store::RunStatus;

/// The syslog facility of every message: 1, user-level messages.
pub const SYSLOG_FACILITY: u8 = 1;

/// The enterprise number in the structured data's id (`dpplan@32473`): 32473 is the number
/// RFC 5612 sets aside for examples and private use.
const SD_ID: &str = "dpplan@32473";

/// The syslog severity of an outcome (RFC 5424, 6.2.1): 3 error for FAILED and the store or
/// configuration problems that stop a run, 4 warning for outcomes that backed up less than
/// planned, 5 notice for BACKUPS_DISABLED (set on purpose), 6 informational for COMPLETED.
pub fn syslog_severity(status: RunStatus) -> u8 {
    match status {
        RunStatus::Failed
        | RunStatus::StoreNotMounted
        | RunStatus::StoreOutOfSpace
        | RunStatus::InvalidConfig => 3,
        RunStatus::Warning
        | RunStatus::Stopped
        | RunStatus::Cancelled
        | RunStatus::OutsideWindow
        | RunStatus::Interrupted
        | RunStatus::Missed => 4,
        RunStatus::BackupsDisabled => 5,
        RunStatus::Completed => 6,
        RunStatus::WaitingForPreValidation | RunStatus::Running | RunStatus::Sleeping => 5,
    }
}

/// The status a notification carries, parsed back (unknown names read as FAILED: the safe
/// side for a severity).
fn status_of(n: &Notification) -> RunStatus {
    serde_json::from_value(serde_json::Value::String(n.run.status.clone()))
        .unwrap_or(RunStatus::Failed)
}

/// One line saying what happened: `run 12 of plan nightly: FAILED (pre-plan script: exit 1)`.
fn headline(n: &Notification) -> String {
    let mut s = format!("run {} of plan {}: {}", n.run.id, n.run.plan, n.run.status);
    if let Some(e) = &n.run.error {
        s.push_str(&format!(" ({e})"));
    }
    printable(&s, false)
}

/// The message as RFC 5424 formats it, without transport framing:
/// `<PRI>1 TIMESTAMP HOSTNAME dpplan - outcome [dpplan@32473 run="12" ...] BOM run 12 of ...`.
/// At most `max` bytes: a longer message is cut (within its text, on a character boundary).
pub fn syslog_line(n: &Notification, max: usize) -> Vec<u8> {
    let severity = syslog_severity(status_of(n));
    let pri = u16::from(SYSLOG_FACILITY) * 8 + u16::from(severity);
    let sd = [
        ("run", n.run.id.to_string()),
        ("plan", n.run.plan.clone()),
        ("status", n.run.status.clone()),
        ("notifier", n.notifier.clone()),
        ("succeeded", n.run.succeeded.to_string()),
        ("failed", n.run.failed.to_string()),
        ("skipped", n.run.skipped.to_string()),
        ("id", n.id.clone()),
    ]
    .iter()
    .map(|(k, v)| format!(" {k}=\"{}\"", sd_escape(v)))
    .collect::<String>();
    let head = format!(
        "<{pri}>1 {} {} dpplan - outcome [{SD_ID}{sd}] ",
        header_field(&n.at, 128),
        header_field(&n.host, 255),
    );
    let mut out = head.into_bytes();
    // UTF-8 text starts with a byte order mark (RFC 5424, 6.4).
    out.extend_from_slice("\u{feff}".as_bytes());
    let text = headline(n);
    let room = max.saturating_sub(out.len());
    let mut cut = text.len().min(room);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    out.extend_from_slice(&text.as_bytes()[..cut]);
    out
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; `-` (nil)
/// when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// A structured-data parameter value: `"`, `\` and `]` escaped (RFC 5424, 6.3.3); control
/// characters shown escaped.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in printable(v, false).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The e-mail's subject: `dpplan: nightly run 12 FAILED`.
pub fn email_subject(n: &Notification) -> String {
    printable(
        &format!("dpplan: {} run {} {}", n.run.plan, n.run.id, n.run.status),
        false,
    )
}

/// The e-mail's plain-text body: the run's summary, the tasks that did not succeed, and the
/// commands that show the rest.
pub fn email_text(n: &Notification) -> String {
    let r = &n.run;
    let mut s = format!(
        "Run {} of plan {} on {}: {}\n",
        r.id, r.plan, n.host, r.status
    );
    if let Some(e) = &r.error {
        s.push_str(&format!("error     {e}\n"));
    }
    s.push('\n');
    s.push_str(&format!("started   {}\n", r.started));
    match &r.finished {
        Some(f) => s.push_str(&format!("finished  {f}\n")),
        None => s.push_str(&format!("at        {}\n", n.at)),
    }
    s.push_str(&format!(
        "tasks     {} succeeded, {} failed, {} skipped ({} devices, {} domains)\n",
        r.succeeded, r.failed, r.skipped, r.devices, r.domains
    ));
    if !n.tasks.is_empty() {
        s.push_str("\nTasks that did not succeed:\n");
        for t in &n.tasks {
            s.push_str(&format!(
                "  {}  {}  {}/{}  {}",
                t.id,
                t.action,
                t.device,
                t.domain,
                t.status.as_str()
            ));
            if let Some(e) = &t.error {
                s.push_str(&format!("  {e}"));
            }
            s.push('\n');
        }
        if n.tasks_omitted > 0 {
            s.push_str(&format!("  ...and {} more\n", n.tasks_omitted));
        }
    }
    s.push_str(&format!(
        "\n`dpplan show {}` and `dpplan log {}` on {} show the run.\n\n-- \nnotifier {}, notification {}\n",
        r.id, r.id, n.host, n.notifier, n.id
    ));
    printable(&s, true)
}
