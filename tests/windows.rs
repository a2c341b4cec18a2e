//! Maintenance windows through the binary: a run outside its window says which window and
//! when it next opens (and stores that in the journal); `dpplan plan` shows the window and
//! whether it is open, as text and JSON. Windows are built around the real clock: one that
//! opens two hours from now (UTC, every day) is closed now and next opens at the top of the
//! hour after next.

use crate::engine::World;
use crate::run_cli::plan_file;
use crate::support::fleet::dpod;
use crate::support::Test;
use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};

/// A window block, every day, `from`-`to` in UTC.
fn window(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "plan \"nightly\" {{\n  window {{\n    from = {:02}:00\n    to   = {:02}:00\n    tz   = \"UTC\"\n  }}\n",
        from.hour(),
        to.hour()
    )
}

/// A window closed now: it opens in the hour after next, for an hour. Returns the plan
/// header and when it next opens.
fn closed_now() -> (String, DateTime<Utc>) {
    let now = Utc::now();
    let opens = now.duration_trunc(Duration::hours(1)).unwrap() + Duration::hours(2);
    (window(opens, opens + Duration::hours(1)), opens)
}

const PLAN: &str = r#"import "std/datapower"
store "store" {}
inventory {
  defaults { password = env("DP_PASSWORD") }
  device "QA1" { host = "qa1.example.com" }
}
plan "nightly" {
  activity secure_backup {
    devices = "QA*"
    cert    = "backup-cert"
  }
}
"#;

#[test]
fn a_run_outside_its_window_says_which_window_and_when_it_opens() {
    let (header, opens) = closed_now();
    let plan = PLAN.replace("plan \"nightly\" {\n", &header);
    let t = Test::new()
        .file("p.dpplan", &plan)
        .file("store/.keep", "")
        .args(["run", "p.dpplan", "--quiet"]);
    let ran = t.run().status(1);
    let from = opens.hour();
    let to = (from + 1) % 24;
    let why = format!(
        "outside the plan's maintenance window every day {from:02}:00-{to:02}:00 UTC; next opens {}; --ignore-window runs anyway",
        opens.format("%Y-%m-%d %H:%M +00:00")
    );
    assert_eq!(
        ran.stderr,
        format!("run 1: OUTSIDE_WINDOW ({why})\n"),
        "no empty table, the window and its next opening"
    );
    // The journal keeps it: the runs page shows it whole in a pipe.
    let ran = Test::new()
        .cwd(t.path())
        .args(["runs", "--json"])
        .env(
            "DPPLAN_STATE",
            t.path().join("state.redb").to_str().unwrap(),
        )
        .run()
        .status(0);
    assert_eq!(ran.json()[0]["error"], why.as_str());
    assert_eq!(ran.json()[0]["status"], "OUTSIDE_WINDOW");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_window_and_when_it_next_opens() {
    let w = World::new(dpod()).await;
    let (header, opens) = closed_now();
    let file = plan_file(&w).replace("plan \"nightly\" {\n", &header);
    let t = Test::new()
        .file("p.dpplan", &file)
        .env("TZ", "Asia/Kolkata")
        .args(["plan", "p.dpplan"]);
    let ran = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0);
    let from = opens.hour();
    let to = (from + 1) % 24;
    let first = ran.stdout.lines().next().unwrap_or_default();
    // Times of the window are in its own zone, with the offset.
    assert_eq!(
        first,
        format!(
            "window  every day {from:02}:00-{to:02}:00 UTC: closed; next opens {}",
            opens.format("%Y-%m-%d %H:%M +00:00")
        ),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("\nID  ACTIVITY"), "{}", ran.stdout);

    let t = Test::new()
        .file("p.dpplan", &file)
        .args(["plan", "p.dpplan", "--json"]);
    let v = tokio::task::spawn_blocking(move || t.run())
        .await
        .unwrap()
        .status(0)
        .json();
    let win = &v["window"];
    assert_eq!(win["open"], false, "{v}");
    assert_eq!(
        win["next_open"],
        opens.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    assert_eq!(win["closes"], serde_json::Value::Null);
    assert_eq!(win["tz"], "UTC");
    assert_eq!(win["from"], format!("{from:02}:00"));
    assert_eq!(win["days"].as_array().unwrap().len(), 7);
    assert_eq!(v["tasks"].as_array().unwrap().len(), 6);

    // A window open now says when it closes; no window says the plan runs at any time.
    let now = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let open = plan_file(&w).replace(
        "plan \"nightly\" {\n",
        &window(now, now + Duration::hours(2)),
    );
    for (file, want) in [
        (
            open,
            format!(
                "open now; closes {}",
                (now + Duration::hours(2)).format("%Y-%m-%d %H:%M +00:00")
            ),
        ),
        (
            plan_file(&w),
            "window  none: the plan runs at any time".into(),
        ),
    ] {
        let t = Test::new()
            .file("p.dpplan", &file)
            .args(["plan", "p.dpplan"]);
        let ran = tokio::task::spawn_blocking(move || t.run())
            .await
            .unwrap()
            .status(0);
        let first = ran.stdout.lines().next().unwrap_or_default().to_string();
        assert!(first.ends_with(&want), "{first}");
    }
    w.assert_clean();
}
