//! Notifications of run outcomes, against receivers the tests start on 127.0.0.1: each channel
//! (webhook, syslog over UDP and TCP, e-mail with STARTTLS and login) delivers exactly once per
//! outcome with the content it should; a receiver that is down gets the message on a later
//! attempt; an entry past its time is given up; a process that dies between a run's end and
//! delivery leaves the message to the next one; every attempt shows in `dpplan log`; and the
//! run's exit code never depends on any of it.

use crate::engine::World;
use crate::support::fleet::{DeviceEntry, FleetFile};
use crate::support::receivers::{free_port, HttpReceiver, SmtpOptions, SmtpSink, SyslogReceiver};
use crate::support::Test;
use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use dpplan::check::{
    Email, Notifier, OnWindowClose, Plan, Policy, Program, Secret, Stages, Syslog,
};
use dpplan::notify::{AttemptResult, Backoff, Outbox, Outcome};
use dpplan::report::TaskReport;
use dpplan::store::{
    History, Journal, NewRun, OutboxStore, ReadOnlyStore, Record, RedbStore, RunId, RunStatus,
    TaskStatus,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// The library: Outbox against a state file, outcomes made by hand

fn started() -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_470_000, 0).unwrap()
}

fn ended() -> DateTime<Utc> {
    started() + Span::seconds(120)
}

fn state() -> (tempfile::TempDir, Arc<RedbStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("state.redb")).unwrap());
    (dir, store)
}

async fn new_run(store: &RedbStore) -> RunId {
    store
        .create_run(NewRun {
            plan: "nightly".into(),
            started: started(),
            plan_text: String::new(),
            plan_hash: "ab".repeat(32),
            graph: String::new(),
            activities: Vec::new(),
            tasks: Vec::new(),
        })
        .await
        .unwrap()
}

fn task(id: u32, device: &str, status: TaskStatus, error: Option<&str>) -> TaskReport {
    TaskReport {
        id,
        action: "SECURE_BACKUP".into(),
        device: device.into(),
        domain: "all-domains".into(),
        status,
        error: error.map(str::to_string),
        files: Vec::new(),
    }
}

fn outcome(run: RunId, status: RunStatus) -> Outcome {
    outcome_at(run, status, ended())
}

/// The outcome reached at `at` (messages queued more than a day ago are given up at their
/// first failure: tests of retries queue them now).
fn outcome_at(run: RunId, status: RunStatus, at: DateTime<Utc>) -> Outcome {
    let error = (status == RunStatus::Failed).then(|| "a task failed".to_string());
    Outcome::new(
        run,
        "nightly",
        at - Span::seconds(120),
        status,
        error,
        at,
        vec![
            task(1, "QA1", TaskStatus::Succeeded, None),
            task(2, "QA2", TaskStatus::Failed, Some("HTTP 500")),
        ],
    )
}

fn status_record(status: RunStatus) -> Vec<Record> {
    vec![Record::Run {
        status,
        error: None,
        at: ended(),
    }]
}

fn notifier(on: &[RunStatus]) -> Notifier {
    Notifier {
        name: "ops".into(),
        on: on.to_vec(),
        webhook: None,
        syslog: None,
        email: None,
        at: "test:1:1".into(),
    }
}

/// A program with plan `nightly`, which names `notifier`.
fn program(notifier: Notifier) -> Program {
    let mut p = Program::default();
    p.plans = vec![Plan {
        name: "nightly".into(),
        window: None,
        on_failure: Policy::Stop,
        stages: Stages::Pipelined,
        on_window_close: OnWindowClose::Cancel,
        pre_plan: None,
        post_plan: None,
        activities: Vec::new(),
        schedule: None,
        notify: vec![notifier.name.clone()],
    }];
    p.notifiers = vec![notifier];
    p
}

fn log_of(store: &dyn History, run: RunId) -> Vec<String> {
    store
        .log(run, None)
        .unwrap()
        .into_iter()
        .map(|l| l.message)
        .collect()
}

fn has_line(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

#[tokio::test]
async fn a_webhook_gets_the_run_summary_as_json_exactly_once() {
    let http = HttpReceiver::start();
    let (_dir, store) = state();
    let run = new_run(&store).await;
    let outbox = Outbox::new(store.clone());
    let mut n = notifier(&[RunStatus::Failed]);
    n.webhook = Some(http.url("/hooks/dpplan?token=SECRET"));
    let queued = outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Failed),
        )
        .await
        .unwrap();
    assert_eq!(queued, 1);
    // Queued with the status, before any attempt.
    assert_eq!(store.runs(None, 1).unwrap()[0].status, RunStatus::Failed);
    assert_eq!(store.outbox().unwrap().len(), 1);
    assert!(http.requests.all().is_empty());

    let pass = outbox.deliver_due(Utc::now()).await.unwrap();
    assert_eq!(pass.attempts.len(), 1);
    assert_eq!(pass.attempts[0].result, AttemptResult::Delivered);
    assert_eq!(pass.waiting, 0);
    let got = http.requests.all();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/dpplan?token=SECRET");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let body = r.json();
    assert_eq!(body["notifier"], "ops");
    assert_eq!(
        body["id"],
        format!("{run}-FAILED-{}", ended().timestamp_millis())
    );
    assert_eq!(body["at"], "2026-11-23T21:42:00.000Z");
    assert_eq!(body["run"]["id"], run);
    assert_eq!(body["run"]["plan"], "nightly");
    assert_eq!(body["run"]["status"], "FAILED");
    assert_eq!(body["run"]["error"], "a task failed");
    assert_eq!(body["run"]["started"], "2026-11-23T21:40:00.000Z");
    assert_eq!(body["run"]["finished"], "2026-11-23T21:42:00.000Z");
    assert_eq!(
        (
            body["run"]["succeeded"].as_u64(),
            body["run"]["failed"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // Only what did not succeed is listed, as `dpplan run --json` shows a task.
    let tasks = body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["device"], "QA2");
    assert_eq!(tasks[0]["status"], "FAILED");
    assert_eq!(tasks[0]["error"], "HTTP 500");
    assert_eq!(body["tasks_omitted"], 0);

    // Delivered is done: a later pass sends nothing.
    let later = outbox
        .deliver_due(Utc::now() + Span::days(2))
        .await
        .unwrap();
    assert!(later.attempts.is_empty());
    assert_eq!(http.requests.all().len(), 1);
    assert!(store.outbox().unwrap().is_empty());
    let log = log_of(store.as_ref(), run);
    assert!(
        has_line(&log, "notify: FAILED queued for ops (webhook)"),
        "{log:?}"
    );
    let delivered = format!(
        "notify ops: webhook http://{}: delivered (attempt 1)",
        http.addr
    );
    assert!(has_line(&log, &delivered), "{log:?}");
    assert!(
        !has_line(&log, "SECRET"),
        "the webhook's token is in the log: {log:?}"
    );
}

#[tokio::test]
async fn a_notifier_not_on_the_outcome_queues_nothing() {
    let http = HttpReceiver::start();
    let (_dir, store) = state();
    let run = new_run(&store).await;
    let outbox = Outbox::new(store.clone());
    let mut n = notifier(&[RunStatus::Failed, RunStatus::Missed]);
    n.webhook = Some(http.url("/"));
    let queued = outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Completed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Completed),
        )
        .await
        .unwrap();
    assert_eq!(queued, 0);
    assert!(outbox
        .deliver_due(Utc::now())
        .await
        .unwrap()
        .attempts
        .is_empty());
    assert!(http.requests.all().is_empty());
    assert_eq!(store.runs(None, 1).unwrap()[0].status, RunStatus::Completed);
}

/// An RFC 5424 message, split: PRI, VERSION, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID,
/// STRUCTURED-DATA and MSG.
struct Rfc5424 {
    pri: u8,
    fields: Vec<String>,
    sd: String,
    msg: String,
}

fn parse_5424(bytes: &[u8]) -> Rfc5424 {
    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    let rest = text.strip_prefix('<').expect("<PRI>");
    let (pri, rest) = rest.split_once('>').unwrap();
    let mut parts = rest.splitn(7, ' ');
    let fields: Vec<String> = (0..6).map(|_| parts.next().unwrap().to_string()).collect();
    let rest = parts.next().unwrap();
    let end = rest.find("] ").expect("structured data ends");
    Rfc5424 {
        pri: pri.parse().unwrap(),
        fields,
        sd: rest[..=end].to_string(),
        msg: rest[end + 2..].to_string(),
    }
}

#[tokio::test]
async fn syslog_over_udp_and_tcp_is_rfc_5424_with_the_outcomes_severity() {
    let udp = SyslogReceiver::udp();
    let tcp = SyslogReceiver::tcp_on(0);
    let (_dir, store) = state();
    let outbox = Outbox::new(store.clone());
    let mut over_udp = notifier(&[RunStatus::Failed, RunStatus::Completed]);
    over_udp.syslog = Some(Syslog {
        udp: true,
        host: "127.0.0.1".into(),
        port: udp.addr.port(),
    });
    let mut over_tcp = over_udp.clone();
    over_tcp.name = "tcp".into();
    over_tcp.syslog = Some(Syslog {
        udp: false,
        host: "127.0.0.1".into(),
        port: tcp.addr.port(),
    });
    let mut p = program(over_udp);
    p.notifiers.push(over_tcp);
    p.plans[0].notify.push("tcp".into());

    let failed = new_run(&store).await;
    outbox
        .enqueue_for(
            failed,
            status_record(RunStatus::Failed),
            &p,
            "nightly",
            &outcome(failed, RunStatus::Failed),
        )
        .await
        .unwrap();
    let completed = new_run(&store).await;
    outbox
        .enqueue_for(
            completed,
            status_record(RunStatus::Completed),
            &p,
            "nightly",
            &outcome(completed, RunStatus::Completed),
        )
        .await
        .unwrap();
    let pass = outbox.deliver_due(Utc::now()).await.unwrap();
    assert_eq!(pass.attempts.len(), 4);
    assert!(
        pass.attempts
            .iter()
            .all(|a| a.result == AttemptResult::Delivered),
        "{pass:?}"
    );

    let datagrams = udp.messages.wait_for(2);
    let frames = tcp.messages.wait_for(2);
    assert_eq!((datagrams.len(), frames.len()), (2, 2));
    assert!(
        tcp.bad_frames.all().is_empty(),
        "{:?}",
        tcp.bad_frames.all()
    );
    let mut by_run = Vec::new();
    for bytes in datagrams.iter().chain(&frames) {
        let m = parse_5424(bytes);
        // VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
        assert_eq!(m.fields[0], "1");
        assert_eq!(m.fields[1], "2026-11-23T21:42:00.000Z");
        assert!(!m.fields[2].is_empty() && m.fields[2] != "-");
        assert_eq!(&m.fields[3..], ["dpplan", "-", "outcome"]);
        assert!(m.sd.starts_with("[dpplan@32473 run=\""), "{}", m.sd);
        assert!(m.sd.contains(" plan=\"nightly\""), "{}", m.sd);
        let run: RunId =
            m.sd.split("run=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap();
        by_run.push((run, m.pri, m.msg));
    }
    by_run.sort();
    // Facility user (1): FAILED is an error (8 + 3), COMPLETED informational (8 + 6). The text
    // starts with the UTF-8 byte order mark.
    let want_failed = (
        failed,
        11,
        format!("\u{feff}run {failed} of plan nightly: FAILED (a task failed)"),
    );
    let want_completed = (
        completed,
        14,
        format!("\u{feff}run {completed} of plan nightly: COMPLETED"),
    );
    assert_eq!(
        by_run,
        vec![
            want_failed.clone(),
            want_failed,
            want_completed.clone(),
            want_completed
        ]
    );
}

fn smtp_email(
    sink: &SmtpSink,
    user: Option<&str>,
    password: Option<Secret>,
    starttls: bool,
) -> Email {
    Email {
        host: "127.0.0.1".into(),
        port: sink.addr.port(),
        from: "dpplan@example.com".into(),
        to: vec!["ops@example.com".into(), "oncall@example.com".into()],
        user: user.map(str::to_string),
        password,
        starttls,
    }
}

#[tokio::test]
async fn email_goes_over_starttls_with_a_login_and_says_what_happened() {
    let sink = SmtpSink::start(SmtpOptions {
        starttls: true,
        auth: Some(("dpplan".into(), "smtp-s3cret".into())),
    });
    let (dir, store) = state();
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "smtp-s3cret\n").unwrap();
    let run = new_run(&store).await;
    let outbox = Outbox::new(store.clone()).trust(sink.ca_pem.clone().into_bytes());
    let mut n = notifier(&[RunStatus::Failed]);
    n.email = Some(smtp_email(
        &sink,
        Some("dpplan"),
        Some(Secret::File(pw)),
        true,
    ));
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Failed),
        )
        .await
        .unwrap();
    let pass = outbox.deliver_due(Utc::now()).await.unwrap();
    assert_eq!(
        pass.attempts[0].result,
        AttemptResult::Delivered,
        "{pass:?}"
    );
    assert_eq!(
        pass.attempts[0].channel,
        format!(
            "email to ops@example.com, oncall@example.com via {}",
            sink.addr
        )
    );
    let mails = sink.mails.all();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.tls, "sent before STARTTLS");
    assert_eq!(
        m.auth,
        Some(("dpplan".to_string(), "smtp-s3cret".to_string()))
    );
    assert_eq!(m.from, "dpplan@example.com");
    assert_eq!(m.to, vec!["ops@example.com", "oncall@example.com"]);
    assert_eq!(
        m.header("Subject").as_deref(),
        Some(format!("dpplan: nightly run {run} FAILED").as_str())
    );
    let to = m.header("To").unwrap();
    assert!(
        to.contains("ops@example.com") && to.contains("oncall@example.com"),
        "{to}"
    );
    let body = m.body();
    assert!(
        body.contains(&format!("Run {run} of plan nightly on ")),
        "{body}"
    );
    assert!(body.contains("error     a task failed"), "{body}");
    assert!(body.contains("QA2/all-domains  FAILED  HTTP 500"), "{body}");
    // Nothing but EHLO went out in the clear.
    let commands = sink.commands.all();
    let tls_at = commands
        .iter()
        .position(|c| c == "STARTTLS")
        .expect("STARTTLS");
    assert!(
        commands[..tls_at].iter().all(|c| c.starts_with("EHLO")),
        "{commands:?}"
    );
    assert!(
        commands[tls_at..]
            .iter()
            .any(|c| c.starts_with("AUTH PLAIN")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn email_with_tls_false_is_plain_smtp_and_an_untrusted_certificate_sends_nothing() {
    let plain = SmtpSink::start(SmtpOptions::default());
    let (_dir, store) = state();
    let outbox = Outbox::new(store.clone());
    let run = new_run(&store).await;
    let mut n = notifier(&[RunStatus::Failed]);
    n.email = Some(smtp_email(&plain, None, None, false));
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Failed),
        )
        .await
        .unwrap();
    let pass = outbox.deliver_due(Utc::now()).await.unwrap();
    assert_eq!(
        pass.attempts[0].result,
        AttemptResult::Delivered,
        "{pass:?}"
    );
    let mails = plain.mails.all();
    assert_eq!(mails.len(), 1);
    assert!(!mails[0].tls);
    assert_eq!(mails[0].auth, None);

    // STARTTLS against a certificate nobody trusts: the attempt fails before any login or mail.
    let tls = SmtpSink::start(SmtpOptions {
        starttls: true,
        auth: Some(("dpplan".into(), "pw".into())),
    });
    let run = new_run(&store).await;
    let mut n = notifier(&[RunStatus::Failed]);
    n.email = Some(smtp_email(&tls, Some("dpplan"), None, true));
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome_at(run, RunStatus::Failed, Utc::now()),
        )
        .await
        .unwrap();
    let pass = outbox.deliver_due(Utc::now()).await.unwrap();
    assert!(
        matches!(pass.attempts[0].result, AttemptResult::Failed { .. }),
        "{pass:?}"
    );
    assert!(tls.mails.all().is_empty());
    assert!(!tls
        .commands
        .all()
        .iter()
        .any(|c| c.starts_with("AUTH") || c.starts_with("MAIL")));
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_message_on_a_later_attempt() {
    let port = free_port();
    let (_dir, store) = state();
    let run = new_run(&store).await;
    let backoff = Backoff {
        first: Duration::from_secs(30),
        max: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(86_400),
    };
    let outbox = Outbox::new(store.clone()).backoff(backoff);
    let mut n = notifier(&[RunStatus::Failed]);
    n.webhook = Some(format!("http://127.0.0.1:{port}/hook"));
    let now = Utc::now();
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome_at(run, RunStatus::Failed, now),
        )
        .await
        .unwrap();
    let pass = outbox.deliver_due(now).await.unwrap();
    let next = match &pass.attempts[0].result {
        AttemptResult::Failed {
            next_attempt,
            error,
        } => {
            assert!(error.contains("refused"), "{error}");
            *next_attempt
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(next, now + Span::seconds(30));
    assert_eq!((pass.waiting, pass.next_due), (1, Some(next)));
    // Not due yet: no attempt.
    assert!(outbox
        .deliver_due(now + Span::seconds(29))
        .await
        .unwrap()
        .attempts
        .is_empty());
    // Still down at the second attempt: the wait doubles.
    let pass = outbox.deliver_due(next).await.unwrap();
    assert!(
        matches!(&pass.attempts[0].result, AttemptResult::Failed { next_attempt, .. } if *next_attempt == next + Span::seconds(60))
    );

    let http = HttpReceiver::start_on(port, 200);
    let pass = outbox.deliver_due(next + Span::seconds(60)).await.unwrap();
    assert_eq!(pass.attempts[0].result, AttemptResult::Delivered);
    assert_eq!(pass.attempts[0].attempt, 3);
    assert_eq!(http.requests.all().len(), 1);
    assert_eq!(http.requests.all()[0].json()["run"]["id"], run);
    let log = log_of(store.as_ref(), run);
    let mine: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("notify ops:"))
        .collect();
    assert_eq!(mine.len(), 3, "{log:?}");
    assert!(
        mine[0].contains("attempt 1 failed: ") && mine[0].contains("next attempt at"),
        "{mine:?}"
    );
    assert!(mine[1].contains("attempt 2 failed: "), "{mine:?}");
    assert!(mine[2].ends_with("delivered (attempt 3)"), "{mine:?}");
    assert!(store.outbox().unwrap().is_empty());
}

#[tokio::test]
async fn an_answer_that_is_not_2xx_is_a_failure_and_a_message_past_its_time_is_given_up() {
    let http = HttpReceiver::start_on(0, 503);
    let (_dir, store) = state();
    let run = new_run(&store).await;
    let outbox = Outbox::new(store.clone()).backoff(Backoff {
        first: Duration::from_secs(60),
        max: Duration::from_secs(60),
        give_up_after: Duration::from_secs(90),
    });
    let mut n = notifier(&[RunStatus::Failed]);
    n.webhook = Some(http.url("/"));
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Failed),
        )
        .await
        .unwrap();
    // Queued at `ended()`: the first retry (+60 s) is within 90 s, the second is not.
    let pass = outbox.deliver_due(ended()).await.unwrap();
    assert!(
        matches!(&pass.attempts[0].result, AttemptResult::Failed { error, .. } if error.contains("503")),
        "{pass:?}"
    );
    let pass = outbox
        .deliver_due(ended() + Span::seconds(60))
        .await
        .unwrap();
    assert!(
        matches!(&pass.attempts[0].result, AttemptResult::GaveUp { error } if error.contains("503")),
        "{pass:?}"
    );
    assert_eq!(http.requests.all().len(), 2);
    assert!(store.outbox().unwrap().is_empty());
    assert!(outbox
        .deliver_due(ended() + Span::days(3))
        .await
        .unwrap()
        .attempts
        .is_empty());
    let log = log_of(store.as_ref(), run);
    assert!(
        has_line(
            &log,
            "attempt 2 failed: HTTP 503 Service Unavailable; given up"
        ),
        "{log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_loop_delivers_what_is_queued_and_stops_when_told() {
    let http = HttpReceiver::start();
    let (_dir, store) = state();
    let outbox = Arc::new(Outbox::new(store.clone()).poll(Duration::from_secs(3600)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let passes = Arc::new(std::sync::Mutex::new(0usize));
    let running = {
        let (outbox, passes) = (outbox.clone(), passes.clone());
        tokio::spawn(async move {
            outbox
                .run(
                    async {
                        let _ = stopped.await;
                    },
                    move |_| *passes.lock().unwrap() += 1,
                )
                .await
        })
    };
    // A MISSED run, as serve records it: queued outside the engine, with its status.
    let run = new_run(&store).await;
    let mut n = notifier(&[RunStatus::Missed]);
    n.webhook = Some(http.url("/"));
    let missed = Outcome::new(
        run,
        "nightly",
        started(),
        RunStatus::Missed,
        Some("serve was down".into()),
        ended(),
        Vec::new(),
    );
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Missed),
            &program(n),
            "nightly",
            &missed,
        )
        .await
        .unwrap();
    let got = tokio::task::spawn_blocking({
        let inbox = http.requests.clone();
        move || inbox.wait_for(1)
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["run"]["status"], "MISSED");
    assert_eq!(got[0].json()["run"]["error"], "serve was down");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the loop stops")
        .unwrap()
        .unwrap();
    assert_eq!(*passes.lock().unwrap(), 1);
    assert_eq!(http.requests.all().len(), 1);
}

// ---------------------------------------------------------------------------------------
// The binary: plan files with notifiers, runs against a simulated fleet

/// QA1 answers quickly; QA9 is down (its task is SKIPPED: the run ends WARNING).
/// QA1 (one domain, quick quiesces) and QA9, down.
fn fleet() -> FleetFile {
    FleetFile::new()
        .set("quiesce_delay", "20ms")
        .set("unquiesce_delay", "20ms")
        .set("backup_file_size", "16KiB")
        .domains(&["default"])
        .devices(&["QA1"])
        .device(DeviceEntry::new("QA9").down())
}

/// A `notify "ops"` block on every channel: the webhook `hook`, syslog at `syslog`, and
/// e-mail through `smtp` with a login (password from `SMTP_PASSWORD`), on outcomes `on`.
fn every_channel(on: &str, hook: &str, syslog: &str, smtp: std::net::SocketAddr) -> String {
    format!(
        r#"notify "ops" {{
  on      = [{on}]
  webhook = "{hook}"
  syslog  = "{syslog}"
  email {{
    smtp     = "{smtp}"
    from     = "dpplan@example.com"
    to       = ["ops@example.com"]
    user     = "dpplan"
    password = env("SMTP_PASSWORD")
  }}
}}"#
    )
}

/// A plan file in the world's directory: `settings`, the world's store and inventory,
/// `notifier` (a `notify "ops" { ... }` block), and plan `nightly` backing up `devices`
/// and naming notifier `ops`. Returns its path.
fn plan_file(w: &World, settings: &str, notifier: &str, devices: &str) -> PathBuf {
    let text = w.plan_file(
        settings,
        &format!(
            "{notifier}\nplan \"nightly\" {{\n  notify = [\"ops\"]\n  activity secure_backup {{\n    devices = \"{devices}\"\n    cert    = \"backup-cert\"\n  }}\n}}\n"
        ),
    );
    let path = w.dir.path().join("nightly.dpplan");
    std::fs::write(&path, text).unwrap();
    path
}

/// `dpplan ARGS --state STATE` in the world's directory, with `env`.
async fn dpplan(w: &World, args: &[&str], env: &[(&str, &str)]) -> crate::support::Ran {
    let state = w.dir.path().join("state.redb");
    let mut t = Test::new()
        .cwd(w.dir.path())
        .args(args)
        .args(["--state", state.to_str().unwrap()]);
    for (k, v) in env {
        t = t.env(k, *v);
    }
    tokio::task::spawn_blocking(move || t.run()).await.unwrap()
}

fn state_of(w: &World) -> PathBuf {
    w.dir.path().join("state.redb")
}

fn log_lines(path: &Path, run: RunId) -> Vec<String> {
    log_of(&ReadOnlyStore::open(path).unwrap(), run)
}

/// An SMTP sink with STARTTLS and the password `smtp-s3cret`, and its CA written for the
/// process that connects to it.
fn smtp_starttls(w: &World) -> (SmtpSink, std::path::PathBuf) {
    let sink = SmtpSink::start(SmtpOptions {
        starttls: true,
        auth: Some(("dpplan".into(), "smtp-s3cret".into())),
    });
    let ca = w.dir.path().join("smtp-ca.pem");
    std::fs::write(&ca, &sink.ca_pem).unwrap();
    (sink, ca)
}

/// The environment a dpplan process needs to reach [`smtp_starttls`]'s sink.
fn smtp_env(ca: &std::path::Path) -> [(&'static str, &str); 2] {
    [
        ("SMTP_PASSWORD", "smtp-s3cret"),
        ("SSL_CERT_FILE", ca.to_str().unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpplan_run_notifies_every_channel_once_and_keeps_its_exit_code() {
    let w = World::new(fleet()).await;
    let http = HttpReceiver::start();
    let tcp = SyslogReceiver::tcp_on(0);
    let (sink, ca) = smtp_starttls(&w);
    let notifier = every_channel(
        "warning, failed",
        &http.url("/dpplan"),
        &format!("tcp://{}", tcp.addr),
        sink.addr,
    );
    let plan = plan_file(&w, "", &notifier, "QA*");
    let env = smtp_env(&ca);
    let ran = dpplan(&w, &["run", plan.to_str().unwrap(), "--json"], &env).await;
    let ran = ran.status(5);
    assert_eq!(ran.json()["status"], "WARNING");
    assert!(
        ran.stderr.contains("notify ops (run 1): webhook"),
        "{}",
        ran.stderr
    );

    let requests = http.requests.wait_for(1);
    assert_eq!(requests.len(), 1);
    let body = requests[0].json();
    assert_eq!(
        (body["run"]["id"].as_u64(), body["run"]["status"].as_str()),
        (Some(1), Some("WARNING"))
    );
    assert_eq!(body["tasks"][0]["device"], "QA9");
    assert_eq!(body["tasks"][0]["status"], "SKIPPED");
    let frames = tcp.messages.wait_for(1);
    assert_eq!(frames.len(), 1);
    let m = parse_5424(&frames[0]);
    assert_eq!(m.pri, 8 + 4, "WARNING is a warning");
    let mails = sink.mails.wait_for(1);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].tls);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("dpplan: nightly run 1 WARNING")
    );

    let log = log_lines(&state_of(&w), 1);
    assert!(
        has_line(
            &log,
            "notify: WARNING queued for ops (webhook, syslog, email)"
        ),
        "{log:?}"
    );
    for channel in ["webhook", "syslog", "email"] {
        assert_eq!(
            log.iter()
                .filter(|l| l.starts_with(&format!("notify ops: {channel} "))
                    && l.ends_with("delivered (attempt 1)"))
                .count(),
            1,
            "{channel}: {log:?}"
        );
    }
    // `dpplan log` shows them.
    dpplan(&w, &["log", "1"], &[])
        .await
        .status(0)
        .stdout_has("notify ops: email to ops@example.com via ")
        .stdout_has("delivered (attempt 1)");

    // Nothing is sent twice by the next run (which is told itself: WARNING again).
    dpplan(&w, &["run", plan.to_str().unwrap(), "--quiet"], &env)
        .await
        .status(5);
    let ids: Vec<u64> = http
        .requests
        .wait_for(2)
        .iter()
        .map(|r| r.json()["run"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(sink.mails.wait_for(2).len(), 2);
    assert_eq!(tcp.messages.wait_for(2).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_validation_outcomes_and_stopped_runs_are_told_too() {
    let w = World::new(fleet()).await;
    let http = HttpReceiver::start();
    let notifier = format!(
        "notify \"ops\" {{\n  on = [backups_disabled, stopped]\n  webhook = \"{}\"\n}}",
        http.url("/")
    );
    let plan = plan_file(
        &w,
        "settings { backups_enabled = false }\n",
        &notifier,
        "QA*",
    );
    dpplan(&w, &["run", plan.to_str().unwrap(), "--quiet"], &[])
        .await
        .status(1);
    // Every device of the plan down: every task SKIPPED, the run STOPPED.
    let plan = plan_file(&w, "", &notifier, "QA9");
    dpplan(&w, &["run", plan.to_str().unwrap(), "--quiet"], &[])
        .await
        .status(1);
    let got: Vec<(u64, String)> = http
        .requests
        .wait_for(2)
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["run"]["id"].as_u64().unwrap(),
                b["run"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "BACKUPS_DISABLED".to_string()),
            (2, "STOPPED".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_during_the_run_is_reached_by_the_next_run() {
    let w = World::new(fleet()).await;
    let port = free_port();
    let notifier = format!(
        "notify \"ops\" {{\n  on = [backups_disabled]\n  webhook = \"http://127.0.0.1:{port}/hook\"\n}}"
    );
    let plan = plan_file(
        &w,
        "settings { backups_enabled = false }\n",
        &notifier,
        "QA*",
    );
    // Retried at once (no backoff), so the next run finds it due.
    let env = [("DPPLAN_NOTIFY_BACKOFF_MS", "0")];
    let ran = dpplan(&w, &["run", plan.to_str().unwrap()], &env)
        .await
        .status(1);
    assert!(ran.stderr.contains("attempt 1 failed"), "{}", ran.stderr);
    let log = log_lines(&state_of(&w), 1);
    assert!(
        has_line(&log, "notify ops: webhook http://127.0.0.1:"),
        "{log:?}"
    );
    assert!(has_line(&log, "attempt 1 failed: "), "{log:?}");

    // The receiver is back; the next run (retrying at once: no backoff) delivers both.
    let http = HttpReceiver::start_on(port, 200);
    dpplan(&w, &["run", plan.to_str().unwrap(), "--quiet"], &env)
        .await
        .status(1);
    let mut ids: Vec<u64> = http
        .requests
        .wait_for(2)
        .iter()
        .map(|r| r.json()["run"]["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    let log = log_lines(&state_of(&w), 1);
    assert!(has_line(&log, "delivered (attempt 2)"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_runs_end_and_delivery_is_delivered_by_the_next_process() {
    let w = World::new(fleet()).await;
    // Every channel: each must deliver once, after the crash, from the next process.
    let http = HttpReceiver::start();
    let udp = SyslogReceiver::udp();
    let (sink, ca) = smtp_starttls(&w);
    let notifier = every_channel(
        "warning",
        &http.url("/"),
        &format!("udp://{}", udp.addr),
        sink.addr,
    );
    let plan = plan_file(&w, "", &notifier, "QA*");
    let env = smtp_env(&ca);
    let crashed = dpplan(
        &w,
        &["run", plan.to_str().unwrap(), "--quiet"],
        &[env[0], env[1], ("DPPLAN_FAILPOINT", "after-outcome")],
    )
    .await;
    assert!(
        ![0, 5].contains(&crashed.status),
        "the failpoint did not stop it: {}",
        crashed.stderr
    );
    assert!(http.requests.all().is_empty());
    assert!(udp.messages.all().is_empty());
    assert!(sink.mails.all().is_empty());
    // The outcome and its notifications are durable.
    {
        let store = RedbStore::open(&state_of(&w)).unwrap();
        assert_eq!(store.runs(None, 1).unwrap()[0].status, RunStatus::Warning);
        let outbox = store.outbox().unwrap();
        assert_eq!(outbox.len(), 3);
        assert!(outbox.iter().all(|e| (e.run, e.attempts) == (1, 0)));
    }
    // The next process that writes the state file delivers them, once each, with its own.
    dpplan(&w, &["run", plan.to_str().unwrap(), "--quiet"], &env)
        .await
        .status(5);
    let mut ids: Vec<u64> = http
        .requests
        .wait_for(2)
        .iter()
        .map(|r| r.json()["run"]["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    let lines: Vec<String> = udp
        .messages
        .wait_for(2)
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("run 1 ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("run 2 ")), "{lines:?}");
    let mails = sink.mails.wait_for(2);
    assert_eq!(mails.len(), 2);
    let mut subjects: Vec<String> = mails
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    subjects.sort();
    assert!(
        subjects[0].contains("run 1 WARNING") && subjects[1].contains("run 2 WARNING"),
        "{subjects:?}"
    );
    dpplan(&w, &["log", "1"], &[])
        .await
        .status(0)
        .stdout_has("notify ops: webhook http://127.0.0.1:")
        .stdout_has("delivered (attempt 1)");
}

/// The keys of a JSON object, and of the objects in it (`run.id`, `tasks[].status`), sorted.
fn shape(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = format!("{prefix}{k}");
                out.push(key.clone());
                shape(v, &format!("{key}."), out);
            }
        }
        serde_json::Value::Array(a) => {
            if let Some(first) = a.first() {
                shape(first, &format!("{prefix}[]."), out);
            }
        }
        _ => {}
    }
}

/// docs/notifications.md shows the webhook's body: it has exactly the fields a webhook gets.
#[tokio::test]
async fn the_documented_webhook_body_is_what_is_sent() {
    let md = std::fs::read_to_string(crate::support::root().join("docs/notifications.md")).unwrap();
    let start = md.find("```json\n").expect("a JSON example") + 8;
    let end = start + md[start..].find("```").unwrap();
    let documented: serde_json::Value = serde_json::from_str(&md[start..end]).unwrap();

    let http = HttpReceiver::start();
    let (_dir, store) = state();
    let run = new_run(&store).await;
    let outbox = Outbox::new(store.clone());
    let mut n = notifier(&[RunStatus::Failed]);
    n.webhook = Some(http.url("/"));
    outbox
        .enqueue_for(
            run,
            status_record(RunStatus::Failed),
            &program(n),
            "nightly",
            &outcome(run, RunStatus::Failed),
        )
        .await
        .unwrap();
    outbox.deliver_due(Utc::now()).await.unwrap();
    let sent = http.requests.all()[0].json();
    let (mut want, mut got) = (Vec::new(), Vec::new());
    shape(&documented, "", &mut want);
    shape(&sent, "", &mut got);
    want.sort();
    got.sort();
    assert_eq!(want, got);
    // Its id is the one the text explains.
    assert_eq!(
        documented["id"],
        format!(
            "{}-{}-{}",
            documented["run"]["id"],
            documented["run"]["status"].as_str().unwrap(),
            DateTime::parse_from_rfc3339(documented["at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        )
    );
}
