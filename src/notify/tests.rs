#![allow(clippy::unwrap_used)]

use super::*;
use crate::check::{Email, Notifier, Plan, Policy, Program, Secret, Stages, Syslog};
use crate::report::TaskReport;
use crate::store::{Record, RunStatus, TaskStatus};
use chrono::{DateTime, TimeZone, Utc};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_470_000 + secs, 0).unwrap()
}

fn task(id: u32, device: &str, status: TaskStatus, error: Option<&str>) -> TaskReport {
    TaskReport {
        id,
        action: "EXPORT_DOMAIN".into(),
        device: device.into(),
        domain: "DOMAIN1".into(),
        status,
        error: error.map(str::to_string),
        files: Vec::new(),
    }
}

fn outcome(status: RunStatus, error: Option<&str>) -> Outcome {
    Outcome::new(
        12,
        "nightly",
        at(0),
        status,
        error.map(str::to_string),
        at(120),
        vec![
            task(1, "QA1", TaskStatus::Succeeded, None),
            task(2, "QA2", TaskStatus::Failed, Some("HTTP 500")),
            task(
                3,
                "TEST9",
                TaskStatus::Skipped,
                Some("device not available"),
            ),
        ],
    )
}

fn notifier(name: &str, on: &[RunStatus]) -> Notifier {
    Notifier {
        name: name.into(),
        on: on.to_vec(),
        webhook: Some("https://hooks.example.com/services/T0/SECRET?token=x".into()),
        syslog: Some(Syslog {
            udp: true,
            host: "127.0.0.1".into(),
            port: 514,
        }),
        email: Some(Email {
            host: "smtp.example.com".into(),
            port: 587,
            from: "dpplan@example.com".into(),
            to: vec!["ops@example.com".into()],
            user: Some("dpplan".into()),
            password: Some(Secret::Env("SMTP_PASSWORD".into())),
            starttls: true,
        }),
        at: "plans.dpplan:3:1".into(),
    }
}

fn program(notify: &[&str], notifiers: Vec<Notifier>) -> Program {
    let mut program = Program::default();
    program.plans = vec![Plan {
        name: "nightly".into(),
        window: None,
        on_failure: Policy::Stop,
        stages: Stages::Pipelined,
        on_window_close: crate::check::OnWindowClose::Cancel,
        pre_plan: None,
        post_plan: None,
        activities: Vec::new(),
        schedule: None,
        notify: notify.iter().map(|s| s.to_string()).collect(),
    }];
    program.notifiers = notifiers;
    program
}

fn messages(q: &Queued) -> Vec<Message> {
    q.entries
        .iter()
        .map(|e| serde_json::from_value(e.message.clone()).unwrap())
        .collect()
}

#[test]
fn an_outcome_counts_its_tasks_as_the_state_file_does() {
    let o = outcome(RunStatus::Failed, Some("a task failed"));
    let s = &o.summary;
    assert_eq!(
        (s.id, s.plan.as_str(), s.status),
        (12, "nightly", RunStatus::Failed)
    );
    assert_eq!((s.succeeded, s.failed, s.skipped), (1, 1, 1));
    assert_eq!((s.devices, s.domains), (3, 3));
    assert_eq!(s.finished, Some(at(120)));
    // INTERRUPTED is not final: no `finished`.
    let o = outcome(RunStatus::Interrupted, None);
    assert_eq!(o.summary.finished, None);
}

#[test]
fn the_notification_lists_what_did_not_succeed_and_identifies_the_outcome() {
    let n = notification(&outcome(RunStatus::Failed, None), "ops");
    assert_eq!(n.id, format!("12-FAILED-{}", at(120).timestamp_millis()));
    assert_eq!(n.notifier, "ops");
    assert_eq!(n.at, "2026-11-23T21:42:00.000Z");
    assert_eq!(n.run.status, "FAILED");
    let listed: Vec<u32> = n.tasks.iter().map(|t| t.id).collect();
    assert_eq!(listed, vec![2, 3]);
    assert_eq!(n.tasks_omitted, 0);
    // A long list is cut, and says how much was left out.
    let many: Vec<TaskReport> = (1..=150)
        .map(|i| task(i, "QA1", TaskStatus::Failed, None))
        .collect();
    let o = Outcome::new(1, "p", at(0), RunStatus::Failed, None, at(1), many);
    let n = notification(&o, "ops");
    assert_eq!((n.tasks.len(), n.tasks_omitted), (MAX_TASKS, 50));
}

#[test]
fn queue_for_sends_each_channel_of_each_notifier_that_wants_the_outcome() {
    let p = program(
        &["ops", "quiet", "gone"],
        vec![
            notifier("ops", &[RunStatus::Failed, RunStatus::Missed]),
            notifier("quiet", &[RunStatus::Completed]),
        ],
    );
    let q = queue_for(&p, "nightly", &outcome(RunStatus::Failed, None));
    let m = messages(&q);
    let kinds: Vec<(&str, &str)> = m
        .iter()
        .map(|m| (m.notifier.as_str(), m.channel.kind()))
        .collect();
    assert_eq!(
        kinds,
        vec![("ops", "webhook"), ("ops", "syslog"), ("ops", "email")]
    );
    assert!(q.entries.iter().all(|e| e.queued == at(120)));
    let log: Vec<String> = q
        .log
        .iter()
        .map(|r| match r {
            Record::Log { message, .. } => message.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[0].contains("`gone`"), "{log:?}");
    assert_eq!(
        log[1],
        "notify: FAILED queued for ops (webhook, syslog, email)"
    );
    // Nobody wants a WARNING; a plan that lists nobody tells nobody.
    assert!(queue_for(&p, "nightly", &outcome(RunStatus::Warning, None))
        .entries
        .is_empty());
    let p = program(&[], vec![notifier("ops", &[RunStatus::Failed])]);
    assert_eq!(
        queue_for(&p, "nightly", &outcome(RunStatus::Failed, None)),
        Queued::default()
    );
}

#[test]
fn a_message_keeps_the_password_source_never_its_value() {
    let p = program(&["ops"], vec![notifier("ops", &[RunStatus::Failed])]);
    let q = queue_for(&p, "nightly", &outcome(RunStatus::Failed, None));
    let text = serde_json::to_string(&q.entries).unwrap();
    assert!(text.contains("SMTP_PASSWORD"), "{text}");
    let m = messages(&q);
    assert_eq!(
        m[2].channel,
        Channel::Email(notifier("ops", &[]).email.unwrap())
    );
}

#[test]
fn channels_are_described_without_a_webhooks_path_or_query() {
    let n = notifier("ops", &[]);
    let webhook = Channel::Webhook {
        url: n.webhook.unwrap(),
    };
    assert_eq!(webhook.describe(), "webhook https://hooks.example.com");
    assert_eq!(
        Channel::Syslog(n.syslog.unwrap()).describe(),
        "syslog udp://127.0.0.1:514"
    );
    assert_eq!(
        Channel::Email(n.email.unwrap()).describe(),
        "email to ops@example.com via smtp.example.com:587"
    );
}

#[test]
fn a_syslog_line_is_rfc_5424_with_the_outcomes_severity() {
    let mut n = notification(
        &outcome(RunStatus::Failed, Some("pre-plan \"x\"] failed")),
        "ops",
    );
    n.host = "backup 1".into();
    let line = String::from_utf8(syslog_line(&n, 2048)).unwrap();
    // user facility (1) * 8 + error (3).
    let expected_head = "<11>1 2026-11-23T21:42:00.000Z backup1 dpplan - outcome [dpplan@32473 run=\"12\" plan=\"nightly\" status=\"FAILED\" notifier=\"ops\" succeeded=\"1\" failed=\"1\" skipped=\"1\" id=\"";
    assert!(line.starts_with(expected_head), "{line}");
    assert!(
        line.ends_with("] \u{feff}run 12 of plan nightly: FAILED (pre-plan \"x\"] failed)"),
        "{line}"
    );
    // Severities: informational, warning, notice, error.
    assert_eq!(syslog_severity(RunStatus::Completed), 6);
    assert_eq!(syslog_severity(RunStatus::Warning), 4);
    assert_eq!(syslog_severity(RunStatus::Missed), 4);
    assert_eq!(syslog_severity(RunStatus::Interrupted), 4);
    assert_eq!(syslog_severity(RunStatus::BackupsDisabled), 5);
    assert_eq!(syslog_severity(RunStatus::InvalidConfig), 3);
    let n = notification(&outcome(RunStatus::Completed, None), "ops");
    assert!(syslog_line(&n, 2048).starts_with(b"<14>1 "));
}

#[test]
fn structured_data_values_are_escaped_and_a_long_line_is_cut_on_a_character() {
    let mut o = outcome(RunStatus::Failed, Some(&"é".repeat(3000)));
    o.summary.plan = "a\"b]c\\d".into();
    let n = notification(&o, "ops");
    let line = syslog_line(&n, 2048);
    assert!(line.len() <= 2048 && line.len() > 2040, "{}", line.len());
    let text = String::from_utf8(line).unwrap();
    assert!(text.contains("plan=\"a\\\"b\\]c\\\\d\""), "{text}");
}

#[test]
fn the_email_says_what_happened_in_its_subject_and_body() {
    let n = notification(&outcome(RunStatus::Failed, Some("a task failed")), "ops");
    assert_eq!(email_subject(&n), "dpplan: nightly run 12 FAILED");
    let body = email_text(&n);
    assert!(body.starts_with("Run 12 of plan nightly on "), "{body}");
    assert!(body.contains("error     a task failed\n"), "{body}");
    assert!(
        body.contains("tasks     1 succeeded, 1 failed, 1 skipped (3 devices, 3 domains)"),
        "{body}"
    );
    assert!(
        body.contains("  2  EXPORT_DOMAIN  QA2/DOMAIN1  FAILED  HTTP 500\n"),
        "{body}"
    );
    assert!(body.contains("`dpplan show 12`"), "{body}");
    assert!(
        !body.contains("  1  EXPORT_DOMAIN"),
        "a task that succeeded is listed: {body}"
    );
}

#[test]
fn backoff_doubles_up_to_its_longest_wait() {
    let b = Backoff {
        first: std::time::Duration::from_secs(30),
        max: std::time::Duration::from_secs(3600),
        give_up_after: std::time::Duration::from_secs(86_400),
    };
    let secs: Vec<u64> = (1..=9).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(secs, vec![30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    assert_eq!(b.delay(1000).as_secs(), 3600);
    assert_eq!(Backoff::default(), b);
}
