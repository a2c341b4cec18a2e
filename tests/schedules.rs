//! Schedules, notifiers and journal retention through `dpplan check` and `dpplan plan`, what
//! they mean in the checked program, and runs stored before these existed still reading.

use crate::engine::World;
use crate::run_cli::plan_file;
use crate::support::fleet::dpod;
use crate::support::Test;
use dpplan::check::{self, Root, Secret};
use dpplan::store::{History, Journal, RedbStore, RunStatus};
use serde_json::Value;

const HEAD: &str = r#"import "std/datapower"

inventory {
  device "QA1" { host = "qa1.example.com" password = env("DP_PASSWORD") }
}
"#;

const ACTIVITY: &str = r#"
  activity secure_backup {
    devices = "QA1"
    cert    = "backup-cert"
  }
"#;

/// A plan named `name` with the attributes `attrs` and one activity.
fn plan(name: &str, attrs: &str) -> String {
    format!("plan \"{name}\" {{\n{attrs}\n{ACTIVITY}}}\n")
}

/// One diagnostic as `check --format json` gives it: code, line, column, message, help.
type Found = (String, u64, u64, String, String);

/// `dpplan check --format json` of `text` (with `files` beside it): each diagnostic, and the
/// exit status.
fn check(text: &str, files: &[(&str, &str)]) -> (Vec<Found>, i32) {
    let mut t = Test::new().file("p.dpplan", text);
    for (name, body) in files {
        t = t.file(name, body);
    }
    let ran = t.args(["check", "--format", "json", "p.dpplan"]).run();
    let found = ran
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
                d["message"].as_str().unwrap().to_string(),
                d["help"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    (found, ran.status)
}

fn codes(found: &[Found]) -> Vec<&str> {
    found.iter().map(|d| d.0.as_str()).collect()
}

#[test]
fn check_refuses_schedules_that_are_not_five_cron_fields() {
    let text = format!(
        "{HEAD}{}{}{}{}{}{}",
        plan("seconds", "  schedule = \"0 0 22 * * mon-fri\""),
        plan("hour", "  schedule = \"0 24 * * *\""),
        plan("wraps", "  schedule = \"0 22 * * fri-mon\""),
        plan("nickname", "  schedule = \"@hourly\""),
        plan("never", "  schedule = \"0 0 31 apr *\""),
        plan("number", "  schedule = 22"),
    );
    let (found, status) = check(&text, &[]);
    assert_eq!(status, 1);
    assert_eq!(
        codes(&found),
        ["DP0044", "DP0044", "DP0044", "DP0044", "DP0044", "DP0008"],
        "{found:#?}"
    );
    // Six fields: the help gives the expression without its seconds.
    assert!(found[0].4.contains("\"0 22 * * mon-fri\""), "{found:#?}");
    // A bad field is pointed at: `24` in `  schedule = "0 24 * * *"` is at column 17.
    assert_eq!((found[1].1, found[1].2), (15, 17));
    assert!(
        found[1].3.contains("`24` is not a valid hour"),
        "{found:#?}"
    );
    assert!(found[1].4.contains("0-23"));
    assert!(found[2].4.contains("fri-sun,mon"), "{found:#?}");
    assert!(found[3].4.contains("\"0 * * * *\""), "{found:#?}");
    assert!(found[4].3.contains("never fires"), "{found:#?}");
}

#[test]
fn check_accepts_names_ranges_lists_and_steps() {
    let text = format!(
        "{HEAD}{}{}{}",
        plan("a", "  schedule = \"*/15 22-23 * * MON-Fri\""),
        plan("b", "  schedule = \"0,30 1 1,15 jan-mar,oct *\""),
        plan("c", "  schedule = \"0 3 * * sun,7\""),
    );
    let (found, status) = check(&text, &[]);
    assert_eq!((found.len(), status), (0, 0), "{found:#?}");
    let checked = check::check(&Root::Text {
        name: "p.dpplan".into(),
        text,
        base: std::env::temp_dir(),
    });
    let p = checked.program.plan("a").unwrap();
    assert_eq!(
        p.schedule.as_ref().map(|s| s.cron.as_str()),
        Some("*/15 22-23 * * MON-Fri")
    );
}

#[test]
fn a_schedule_outside_the_window_warns_and_one_inside_does_not() {
    let window = "  window {\n    days = [fri]\n    from = 22:00\n    to   = 04:00\n    tz   = \"Europe/Berlin\"\n  }";
    let text = format!(
        "{HEAD}{}{}{}",
        // Saturday 02:00 is inside Friday's window, which runs past midnight.
        plan("inside", &format!("{window}\n  schedule = \"0 2 * * sat\"")),
        // Friday 02:00 is not: Thursday has no window.
        plan(
            "outside",
            &format!("{window}\n  schedule = \"0 2 * * fri\"")
        ),
        // Without a window any time will do.
        plan("no-window", "  schedule = \"0 12 * * *\""),
    );
    let (found, status) = check(&text, &[]);
    assert_eq!(status, 0, "a warning only");
    assert_eq!(codes(&found), ["DP0045"], "{found:#?}");
    assert_eq!(found[0].1, 27, "the second plan's schedule: {found:#?}");
    assert!(
        found[0].4.contains("fri 22:00-04:00 Europe/Berlin"),
        "{found:#?}"
    );
    assert!(found[0].4.contains("\"0 22 * * fri\""), "{found:#?}");
}

#[test]
fn notifiers_mean_what_they_say() {
    let notifiers = r#"
notify "ops" {
  on      = [failed, missed, interrupted, failed]
  webhook = "https://hooks.example.com/dpplan"
  syslog  = "tcp://logs.example.com:601"
  email {
    smtp     = "smtp.example.com:587"
    from     = "dpplan@example.com"
    to       = ["ops@example.com", "oncall@example.com"]
    user     = "dpplan"
    password = env("DP_PASSWORD")
    tls      = false
  }
}
"#;
    let root = format!(
        "import \"notifiers.dpplan\"\n{HEAD}\nnotify \"audit\" {{ syslog = \"udp://[::1]:514\" }}\n\nsettings {{\n  keep_runs = 200\n  keep_days = 30\n}}\n{}",
        plan("nightly", "  notify = [\"ops\", \"audit\", \"ops\"]")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notifiers.dpplan"), notifiers).unwrap();
    std::fs::write(dir.path().join("p.dpplan"), &root).unwrap();
    let checked = check::check_file(&dir.path().join("p.dpplan"));
    let diagnostics = crate::support::without_missing_secrets(checked.diagnostics);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let p = &checked.program;
    assert_eq!(p.settings.keep_runs, Some(200));
    assert_eq!(p.settings.keep_days, Some(30));
    assert_eq!(p.plan("nightly").unwrap().notify, ["ops", "audit"]);
    // Declared in the imported file, in import order: the imported file's first.
    let names: Vec<&str> = p.notifiers.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["ops", "audit"]);
    let ops = &p.notifiers[0];
    assert_eq!(
        ops.on,
        [RunStatus::Failed, RunStatus::Missed, RunStatus::Interrupted]
    );
    assert!(ops.at.ends_with("notifiers.dpplan:2:8"), "{}", ops.at);
    assert_eq!(
        ops.webhook.as_deref(),
        Some("https://hooks.example.com/dpplan")
    );
    let syslog = ops.syslog.as_ref().unwrap();
    assert_eq!(
        (syslog.udp, syslog.host.as_str(), syslog.port),
        (false, "logs.example.com", 601)
    );
    let email = ops.email.as_ref().unwrap();
    assert_eq!((email.host.as_str(), email.port), ("smtp.example.com", 587));
    assert_eq!(email.from, "dpplan@example.com");
    assert_eq!(email.to, ["ops@example.com", "oncall@example.com"]);
    assert_eq!(email.user.as_deref(), Some("dpplan"));
    assert_eq!(email.password, Some(Secret::Env("DP_PASSWORD".into())));
    assert!(!email.starttls);
    // Without `on`: every outcome but COMPLETED; without `tls`: STARTTLS.
    let audit = &p.notifiers[1];
    assert_eq!(audit.on.len(), 11);
    assert!(!audit.on.contains(&RunStatus::Completed));
    assert!(audit.on.contains(&RunStatus::Missed));
    assert_eq!(audit.syslog.as_ref().unwrap().host, "::1");
    assert!(audit.email.is_none() && audit.webhook.is_none());
}

#[test]
fn check_reports_each_notifier_mistake_where_it_is() {
    let text = format!(
        r#"{HEAD}
notify "ops" {{
  on      = [faild, Completed]
  webhook = "ftp://hooks.example.com/x"
  syslog  = "syslog://logs.example.com:514"
  retries = 3
  email {{
    smtp = "smtp.example.com:http"
    from = "dpplan at example.com"
    to   = ["ops@example.com", "ops"]
  }}
}}

notify "quiet" {{ }}

notify "empty" {{
  email {{
    smtp = "smtp.example.com:25"
    from = "dpplan@example.com"
    to   = []
  }}
}}

notify "ops" {{ webhook = "https://hooks.example.com/x" }}

notify "spare" {{ webhook = "https://hooks.example.com/spare" }}

{}"#,
        plan(
            "nightly",
            "  notify = [\"ops\", \"quiet\", \"empty\", \"oops\", \"pagr\"]"
        )
    );
    let (found, status) = check(&text, &[]);
    assert_eq!(status, 1);
    let got: Vec<(&str, u64, &str)> = found
        .iter()
        .map(|d| (d.0.as_str(), d.1, d.4.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("DP0046", 8, "did you mean `failed`?"),
            ("DP0046", 8, "outcomes are written in lowercase: `completed`"),
            ("DP0047", 9, "write the URL the run's outcome is POSTed to, e.g. webhook = \"https://hooks.example.com/dpplan\""),
            ("DP0047", 10, "write e.g. syslog = \"udp://127.0.0.1:514\" or \"tcp://logs.example.com:601\""),
            ("DP0005", 11, "notifier `ops` takes: on, webhook, syslog"),
            ("DP0047", 13, "write the mail server and its port, e.g. smtp = \"smtp.example.com:587\""),
            ("DP0047", 14, "write a bare address such as ops@example.com (no display name, no spaces)"),
            ("DP0047", 15, "write a bare address such as ops@example.com (no display name, no spaces)"),
            ("DP0009", 19, "add webhook = \"https://...\", syslog = \"udp://HOST:514\" or an email { ... } block"),
            ("DP0047", 25, "list at least one address, e.g. to = [\"ops@example.com\"]"),
            ("DP0007", 29, "first declared at p.dpplan:7:8; names must be unique: rename or remove one"),
            ("DP0049", 31, "add notify = [\"spare\"] to the plans it is for, or remove it"),
            // `oops` most likely meant `ops`; `pagr` is like no notifier.
            ("DP0048", 34, "did you mean `ops`?"),
            ("DP0048", 34, "notifiers: ops, quiet, empty, spare"),
        ],
        "{found:#?}"
    );
}

#[test]
fn notifiers_may_live_in_an_imported_file_and_unused_ones_are_warned_there() {
    let lib = "notify \"ops\" { webhook = \"https://hooks.example.com/a\" }\nnotify \"pager\" { syslog = \"udp://127.0.0.1:514\" }\n";
    let text = format!(
        "import \"lib/notify.dpplan\"\n{HEAD}{}",
        plan("nightly", "  notify = \"ops\"")
    );
    let (found, status) = check(&text, &[("lib/notify.dpplan", lib)]);
    assert_eq!(status, 0);
    assert_eq!(codes(&found), ["DP0049"], "{found:#?}");
    assert!(found[0].3.contains("`pager`"));
    // No notifier at all: the help says how to declare one.
    let (found, _) = check(
        &format!("{HEAD}{}", plan("nightly", "  notify = [\"ops\"]")),
        &[],
    );
    assert_eq!(codes(&found), ["DP0048"]);
    assert!(found[0].4.contains("no notifier is declared"), "{found:#?}");
}

#[test]
fn journal_retention_takes_positive_whole_numbers() {
    let (found, status) = check(
        "settings {\n  keep_runs = 0\n  keep_days = 1d\n}\nsettings {\n  keep_runs = 5\n}\n",
        &[],
    );
    assert_eq!(status, 1);
    assert_eq!(codes(&found), ["DP0015", "DP0008", "DP0007"], "{found:#?}");
    let (found, status) = check("settings {\n  keep_runs = 1\n  keep_days = 3650\n}\n", &[]);
    assert_eq!((found.len(), status), (0, 0), "{found:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_schedule_and_when_it_is_next_due() {
    use chrono::{Duration, DurationRound, Utc};
    let w = World::new(dpod()).await;
    // Every day at hh:07 UTC, hh two hours from now: due today or tomorrow at that time.
    let at = Utc::now().duration_trunc(Duration::hours(1)).unwrap()
        + Duration::hours(2)
        + Duration::minutes(7);
    let schedule = format!(
        "plan \"nightly\" {{\n  window {{ tz = \"UTC\" }}\n  schedule = \"7 {} * * *\"\n",
        at.format("%-H")
    );
    let file = plan_file(&w).replace("plan \"nightly\" {\n", &schedule);
    let t = Test::new()
        .file("p.dpplan", &file)
        .env("TZ", "Asia/Kolkata")
        .args(["plan", "p.dpplan"]);
    let ran = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0);
    let second = ran.stdout.lines().nth(1).unwrap_or_default();
    assert_eq!(
        second,
        format!(
            "schedule  7 {} * * * UTC: next due {}",
            at.format("%-H"),
            at.format("%Y-%m-%d %H:%M +00:00")
        ),
        "{}",
        ran.stdout
    );
    let t = Test::new()
        .file("p.dpplan", &file)
        .args(["plan", "p.dpplan", "--json"]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    assert_eq!(
        v["schedule"]["cron"],
        format!("7 {} * * *", at.format("%-H"))
    );
    assert_eq!(v["schedule"]["tz"], "UTC");
    assert_eq!(
        v["schedule"]["next_due"],
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    // Without a schedule: no line, and null.
    let t = Test::new()
        .file("p.dpplan", &plan_file(&w))
        .args(["plan", "p.dpplan", "--json"]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    assert_eq!(v["schedule"], Value::Null);
}

/// The stored run as a release before schedules and notifiers wrote it: `program` without
/// `notifiers`, settings without `keep_runs`/`keep_days`, plans without `schedule`/`notify`.
fn as_before_schedules(stored: &str) -> Value {
    let mut v: Value = serde_json::from_str(stored).unwrap();
    let program = v["program"].as_object_mut().unwrap();
    assert!(program.remove("notifiers").is_some(), "stored now");
    let settings = program["settings"].as_object_mut().unwrap();
    assert!(settings.remove("keep_runs").is_some());
    assert!(settings.remove("keep_days").is_some());
    for p in program["plans"].as_array_mut().unwrap() {
        let p = p.as_object_mut().unwrap();
        assert!(p.remove("schedule").is_some());
        assert!(p.remove("notify").is_some());
    }
    v
}

/// The same in the stored run's first format (version 1): each task with its steps, no step
/// sets, and the graph a JSON string with edges by node id.
fn as_version_1(mut v: Value) -> Value {
    let sets = v["step_sets"].as_array().unwrap().clone();
    let which = v["task_steps"].as_array().unwrap().clone();
    for (t, set) in v["tasks"].as_array_mut().unwrap().iter_mut().zip(which) {
        t["steps"] = sets[set.as_u64().unwrap() as usize].clone();
    }
    let nodes = v["graph"]["nodes"].as_array().unwrap().clone();
    let id = |i: &Value| nodes[i.as_u64().unwrap() as usize]["id"].clone();
    let edges: Vec<Value> = v["graph"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Value::Array(vec![id(&e[0]), id(&e[1])]))
        .collect();
    let graph = serde_json::json!({ "nodes": nodes, "edges": edges });
    let o = v.as_object_mut().unwrap();
    o.remove("step_sets");
    o.remove("task_steps");
    o.insert("version".into(), 1.into());
    o.insert("graph".into(), Value::String(graph.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_stored_before_schedules_and_notifiers_still_read() {
    let w = World::new(dpod()).await;
    let plan = r#"
notify "ops" { webhook = "https://hooks.example.com/dpplan" }

settings { keep_runs = 10 }

plan "nightly" {
  window { tz = "UTC" }
  schedule = "0 22 * * *"
  notify   = ["ops"]

  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}
"#;
    let (report, journal) = w.run(plan, "nightly").await;
    assert_eq!(report.status, RunStatus::Completed);
    let created = journal.created(1).unwrap();
    let records = journal.records(1);
    // The new fields are stored with new runs.
    assert!(created
        .graph
        .contains("\"schedule\":{\"cron\":\"0 22 * * *\"}"));
    assert!(created.graph.contains("\"notifiers\":[{\"name\":\"ops\""));
    let v2 = as_before_schedules(&created.graph);
    let v1 = as_version_1(v2.clone());

    let state = w.dir.path().join("old.redb");
    {
        let store = RedbStore::open(&state).unwrap();
        for old in [&v2, &v1] {
            let mut run = created.clone();
            run.graph = old.to_string();
            let id = store.create_run(run).await.unwrap();
            store.append(id, records.clone()).await.unwrap();
            let retry = dpplan::engine::retry_plan(&store, id, &[1]).unwrap();
            let p = retry.program.plan("nightly").unwrap();
            assert_eq!(p.schedule, None, "run {id}");
            assert!(p.notify.is_empty());
            assert!(retry.program.notifiers.is_empty());
            assert_eq!(retry.program.settings.keep_runs, None);
            assert_eq!(retry.program.devices.len(), 5);
            assert_eq!(store.run(id).unwrap().summary.status, RunStatus::Completed);
        }
    }
    // And the binary retries from them: the old run's first task, again, to completion.
    for run in ["1", "2"] {
        let t = Test::new().args([
            "retry",
            run,
            "--task",
            "1",
            "--quiet",
            "--json",
            "--state",
            state.to_str().unwrap(),
        ]);
        let v = tokio::task::spawn_blocking(move || t.run())
            .await
            .unwrap()
            .status(0)
            .json();
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert_eq!(v["tasks"].as_array().unwrap().len(), 1, "{v}");
    }
    w.assert_clean();
}
