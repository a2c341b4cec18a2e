//! `dpplan serve` through the binary, on real sockets, against a simulated fleet started by
//! the test: schedules and window openings, the API and its token, kill -9 and restart,
//! catch-up and MISSED after downtime, the CLI beside a running serve.

use crate::engine::World;
use crate::support::fleet::{DeviceEntry, FleetFile};
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A fleet slow enough to catch a run mid-way: QA1, QA2, TEST8; DOWN1 down; SLOW1-3 quiescing
/// in 700 ms.
pub(crate) fn fleet() -> FleetFile {
    fleet_with_slow("700ms")
}

/// [`fleet`] with SLOW1-3 quiescing in `delay`.
pub(crate) fn fleet_with_slow(delay: &str) -> FleetFile {
    let slow = |name: &str| DeviceEntry::new(name).set("quiesce_delay", delay);
    FleetFile::new()
        .set("quiesce_delay", "200ms")
        .set("unquiesce_delay", "100ms")
        .set("backup_file_size", "64KiB")
        .domains(&["default", "DOMAIN1", "DOMAIN2"])
        .devices(&["QA1", "QA2", "TEST8"])
        .device(DeviceEntry::new("DOWN1").down())
        .device(slow("SLOW1"))
        .device(slow("SLOW2"))
        .device(slow("SLOW3"))
}

pub(crate) const TOKEN: &str = "t0ken-for-tests";

/// A running `dpplan serve`.
pub(crate) struct Serve {
    child: Child,
    pub(crate) url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts serve on `plan` (a file in `dir`) with the state file `dir/state.redb`, its
    /// clock reading `now` (RFC 3339) when given; waits until its API answers.
    pub(crate) fn start(dir: &Path, plan: &str, now: Option<&str>) -> Serve {
        Serve::start_env(dir, plan, now, &[])
    }

    /// [`Serve::start`] with more environment variables.
    fn start_env(dir: &Path, plan: &str, now: Option<&str>, env: &[(&str, &str)]) -> Serve {
        Serve::start_with(dir, plan, now, env, true)
    }

    /// [`Serve::start_env`], with [`TOKEN`] as its token or (`token` false) none.
    pub(crate) fn start_with(
        dir: &Path,
        plan: &str,
        now: Option<&str>,
        env: &[(&str, &str)],
        token: bool,
    ) -> Serve {
        let state = dir.join("state.redb");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpplan"));
        cmd.arg("serve")
            .arg(dir.join(plan))
            .args(["--listen", "127.0.0.1:0"]);
        if token {
            std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
            cmd.arg("--token-file").arg(dir.join("token"));
        }
        cmd.arg("--state")
            .arg(&state)
            .env_remove("DPPLAN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match now {
            Some(t) => cmd.env("DPPLAN_TEST_NOW", t),
            None => cmd.env_remove("DPPLAN_TEST_NOW"),
        };
        cmd.env_remove("DPPLAN_FAILPOINT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(l);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            let holder = dpplan::store::owner::holder(&state);
            if let Some(u) = holder.owner().and_then(|o| o.serve.clone()) {
                break u;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited {status}: {:?}", lines.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "serve did not start: {:?}",
                lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Serve { child, url, lines }
    }

    pub(crate) fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits for the exit; returns its code.
    fn stop(mut self) -> i32 {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

pub(crate) async fn post(url: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = client().post(url).body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// Polls `GET /api/runs/{id}` until the run's status is final; returns the page.
pub(crate) async fn finished(s: &Serve, run: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, page) = get(&format!("{}/api/runs/{run}", s.url)).await;
        if code == 200 {
            let status = page["run"]["status"].as_str().unwrap_or("").to_string();
            if ![
                "RUNNING",
                "WAITING_FOR_PRE_VALIDATION",
                "SLEEPING",
                "INTERRUPTED",
            ]
            .contains(&status.as_str())
            {
                return page;
            }
        }
        assert!(
            Instant::now() < deadline,
            "run {run} did not finish: {page}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `GET /api/runs` until a run of plan `plan` exists; returns its id.
async fn nth_run_of(s: &Serve, plan: &str, n: usize, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let (_, runs) = get(&format!("{}/api/runs?plan={plan}", s.url)).await;
        let runs = runs.as_array().cloned().unwrap_or_default();
        if runs.len() >= n {
            // Newest first.
            return runs[runs.len() - n]["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no run of {plan}:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CLI's stdout for `args` (with the state file of `dir`).
fn cli(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .args(args)
        .arg("--state")
        .arg(dir.join("state.redb"))
        .env("DP_PASSWORD", "s3cret")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn write_plan(w: &World, name: &str, plans: &str) -> PathBuf {
    let p = w.dir.path().join(name);
    std::fs::write(&p, w.plan_file("", plans)).unwrap();
    p
}

pub(crate) const ADHOC: &str = r#"
plan "adhoc" {
  activity secure_backup { devices = "QA*"  cert = "backup-cert"  quiesce = 60s }
  activity export_domain { devices = "TEST8"  domains = "DOMAIN*" }
}
plan "withdown" {
  activity export_domain { devices = ["QA1", "DOWN1"]  domains = "DOMAIN1" }
}
plan "shared" {
  activity export_domain { devices = "SLOW1"  domains = "DOMAIN*"  quiesce = 60s }
}
plan "slow" {
  activity export_domain { devices = ["SLOW1", "SLOW2", "SLOW3"]  domains = "DOMAIN*"  quiesce = 60s }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_route_works_and_is_refused_without_the_token() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let u = &s.url;
    let (code, body) = post(&format!("{u}/api/plans/adhoc/runs"), None, "").await;
    assert_eq!(code, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("token"));
    let (code, _) = post(&format!("{u}/api/plans/adhoc/runs"), Some("wrong"), "").await;
    assert_eq!(code, 401);
    for action in ["interrupt", "resume", "cancel", "retry"] {
        let (code, _) = post(&format!("{u}/api/runs/1/{action}"), None, "").await;
        assert_eq!(code, 401, "{action}");
    }
    let (code, body) = post(&format!("{u}/api/plans/nope/runs"), Some(TOKEN), "").await;
    assert_eq!((code, body["error"].as_str().is_some()), (404, true));
    let (code, _) = post(
        &format!("{u}/api/plans/adhoc/runs"),
        Some(TOKEN),
        "{\"bogus\": 1}",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = post(
        &format!("{u}/api/plans/adhoc/runs"),
        Some(TOKEN),
        "{\"devices\": \"NOPE*\"}",
    )
    .await;
    assert_eq!(code, 400);

    // Run now; a second start of the same plan while it runs is a conflict.
    let (code, body) = post(&format!("{u}/api/plans/adhoc/runs"), Some(TOKEN), "{}").await;
    assert_eq!(code, 202, "{body}");
    let run = body["run"].as_u64().unwrap();
    let (code, _) = post(&format!("{u}/api/plans/adhoc/runs"), Some(TOKEN), "").await;
    assert_eq!(code, 409);
    let page = finished(&s, run).await;
    assert_eq!(page["run"]["status"], "COMPLETED", "{page}");

    // The API's JSON is the CLI's JSON.
    let (_, api_runs) = get(&format!("{u}/api/runs")).await;
    let (code, out, err) = cli(w.dir.path(), &["runs", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(api_runs, serde_json::from_str::<Value>(&out).unwrap());
    let (_, api_run) = get(&format!("{u}/api/runs/{run}")).await;
    let (_, out, _) = cli(w.dir.path(), &["show", &run.to_string(), "--json"]);
    assert_eq!(api_run, serde_json::from_str::<Value>(&out).unwrap());
    let (_, api_task) = get(&format!("{u}/api/runs/{run}/tasks/1")).await;
    let (_, out, _) = cli(
        w.dir.path(),
        &["show", &run.to_string(), "--task", "1", "--json"],
    );
    assert_eq!(api_task, serde_json::from_str::<Value>(&out).unwrap());
    let (_, api_act) = get(&format!("{u}/api/runs/{run}/activities/2")).await;
    let (_, out, _) = cli(
        w.dir.path(),
        &["show", &run.to_string(), "--activity", "2", "--json"],
    );
    assert_eq!(api_act, serde_json::from_str::<Value>(&out).unwrap());
    let (_, api_log) = get(&format!("{u}/api/runs/{run}/log")).await;
    let (_, out, _) = cli(w.dir.path(), &["log", &run.to_string(), "--json"]);
    assert_eq!(api_log, serde_json::from_str::<Value>(&out).unwrap());
    assert!(api_log[0]["message"]
        .as_str()
        .unwrap()
        .contains("an API request from 127.0.0.1"));

    // Errors: 404 for what does not exist, 400 for what is malformed, 409 for what cannot be.
    assert_eq!(get(&format!("{u}/api/runs/999")).await.0, 404);
    assert_eq!(get(&format!("{u}/api/runs/x")).await.0, 400);
    assert_eq!(get(&format!("{u}/api/runs/{run}/tasks/99")).await.0, 404);
    assert_eq!(get(&format!("{u}/api/runs?status=BOGUS")).await.0, 400);
    assert_eq!(get(&format!("{u}/api/nothing")).await.0, 404);
    for (action, code) in [
        ("resume", 409),
        ("interrupt", 409),
        ("cancel", 409),
        ("explode", 404),
    ] {
        let url = format!("{u}/api/runs/{run}/{action}");
        assert_eq!(post(&url, Some(TOKEN), "").await.0, code, "{action}");
    }
    let (_, completed) = get(&format!("{u}/api/runs?status=completed&plan=adhoc")).await;
    assert_eq!(completed.as_array().unwrap().len(), 1);

    // Retry of a run with nothing left to retry is a conflict; of a failed one, a new run.
    let (code, body) = post(&format!("{u}/api/runs/{run}/retry"), Some(TOKEN), "").await;
    assert_eq!(code, 409, "{body}");
    let (_, body) = post(&format!("{u}/api/plans/withdown/runs"), Some(TOKEN), "").await;
    let failed = body["run"].as_u64().unwrap();
    assert_eq!(finished(&s, failed).await["run"]["status"], "WARNING");
    let (code, body) = post(&format!("{u}/api/runs/{failed}/retry"), Some(TOKEN), "").await;
    assert_eq!(code, 202, "{body}");
    let retried = body["run"].as_u64().unwrap();
    assert!(retried > failed);
    finished(&s, retried).await;
    let (_, log) = get(&format!("{u}/api/runs/{retried}/log")).await;
    assert!(log.to_string().contains("retry of run"), "{log}");

    // Interrupt a running run; resume it; cancel another mid-way.
    let (_, body) = post(&format!("{u}/api/plans/slow/runs"), Some(TOKEN), "").await;
    let r = body["run"].as_u64().unwrap();
    assert_eq!(
        post(&format!("{u}/api/runs/{r}/interrupt"), Some(TOKEN), "")
            .await
            .0,
        202
    );
    status_becomes(&s, r, "INTERRUPTED").await;
    w.assert_clean();
    assert_eq!(
        post(&format!("{u}/api/runs/{r}/resume"), Some(TOKEN), "")
            .await
            .0,
        202
    );
    assert_eq!(finished(&s, r).await["run"]["status"], "COMPLETED");
    let (_, body) = post(&format!("{u}/api/plans/slow/runs"), Some(TOKEN), "").await;
    let c = body["run"].as_u64().unwrap();
    assert_eq!(
        post(&format!("{u}/api/runs/{c}/cancel"), Some(TOKEN), "")
            .await
            .0,
        202
    );
    let page = finished(&s, c).await;
    assert_eq!(page["run"]["status"], "CANCELLED", "{page}");
    w.assert_clean();

    // /metrics counts them.
    let text = client()
        .get(format!("{u}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("dpplan_runs_total{plan=\"slow\",status=\"CANCELLED\"} 1"),
        "{text}"
    );
    assert!(text.contains("dpplan_device_last_success_timestamp_seconds{device=\"QA1\"}"));
    assert_eq!(s.stop(), 0);
}

/// Polls until run `run` has status `wanted`.
pub(crate) async fn status_becomes(s: &Serve, run: u64, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, page) = get(&format!("{}/api/runs/{run}", s.url)).await;
        if page["run"]["status"] == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} is not {wanted}: {page}\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_beside_a_running_serve_and_run_points_at_it() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let (_, body) = post(&format!("{}/api/plans/adhoc/runs", s.url), Some(TOKEN), "").await;
    let run = body["run"].as_u64().unwrap();
    finished(&s, run).await;
    let (code, out, err) = cli(w.dir.path(), &["runs"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("adhoc") && out.contains("COMPLETED"), "{out}");
    let plan = w.dir.path().join("p.dpplan");
    let (code, _, err) = cli(
        w.dir.path(),
        &[
            "run",
            plan.to_str().unwrap(),
            "--plan",
            "adhoc",
            "--no-wait",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("dpplan serve") && err.contains(&format!("{}/api/plans/", s.url)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_a_restart_finishes_the_run_with_nothing_quiesced() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let (_, body) = post(&format!("{}/api/plans/slow/runs", s.url), Some(TOKEN), "").await;
    let run = body["run"].as_u64().unwrap();
    // Killed while a domain is quiesced.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["SLOW1", "SLOW2", "SLOW3"].iter().any(|d| {
        w.state(d)
            .domains
            .iter()
            .any(|x| !x.quiesce_state.is_empty())
    }) {
        assert!(Instant::now() < deadline, "nothing quiesced:\n{}", s.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.kill9();
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let page = finished(&s, run).await;
    assert_eq!(page["run"]["status"], "COMPLETED", "{page}");
    w.assert_clean();
    let (_, log) = get(&format!("{}/api/runs/{run}/log", s.url)).await;
    assert!(
        log.to_string()
            .contains("resumed by dpplan serve at its start"),
        "{log}"
    );
    assert_eq!(s.stop(), 0);
}

const WINDOWED: &str = r#"
plan "win" {
  window { from = 22:00  to = 22:30  tz = "UTC" }
  activity export_domain { devices = "QA1"  domains = "DOMAIN1" }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_opening_starts_a_plan_and_downtime_ends_as_catch_up_or_missed() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", WINDOWED);
    // Two seconds before the window opens: the opening starts a run by itself.
    let s = Serve::start(w.dir.path(), "p.dpplan", Some("2026-06-01T21:59:58Z"));
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    assert_eq!(plans[0]["next_run"], "2026-06-01T22:00:00.000Z", "{plans}");
    let first = nth_run_of(&s, "win", 1, Duration::from_secs(15)).await;
    assert_eq!(finished(&s, first).await["run"]["status"], "COMPLETED");
    let (_, log) = get(&format!("{}/api/runs/{first}/log", s.url)).await;
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .contains("its window opened"),
        "{log}"
    );
    assert_eq!(s.stop(), 0);

    // Down over the next day's opening, back while the window is open: a catch-up run.
    let s = Serve::start(w.dir.path(), "p.dpplan", Some("2026-06-02T22:10:00Z"));
    let second = nth_run_of(&s, "win", 2, Duration::from_secs(15)).await;
    assert_eq!(finished(&s, second).await["run"]["status"], "COMPLETED");
    let (_, log) = get(&format!("{}/api/runs/{second}/log", s.url)).await;
    assert!(
        log[0]["message"].as_str().unwrap().contains("catch-up"),
        "{log}"
    );
    assert_eq!(s.stop(), 0);

    // Down over two openings, back after the window closed: one MISSED run, nothing done.
    let s = Serve::start(w.dir.path(), "p.dpplan", Some("2026-06-04T23:00:00Z"));
    let third = nth_run_of(&s, "win", 3, Duration::from_secs(15)).await;
    let page = finished(&s, third).await;
    assert_eq!(page["run"]["status"], "MISSED", "{page}");
    assert!(
        page["run"]["error"]
            .as_str()
            .unwrap()
            .contains("due at 2026-06-04T22:00:00"),
        "{page}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, runs) = get(&format!("{}/api/runs?plan=win", s.url)).await;
    assert_eq!(
        runs.as_array().unwrap().len(),
        3,
        "no run after the MISSED one: {runs}"
    );
    // Nothing ran in this process: QA1's last backup comes from the history, read after start.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = client()
            .get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("dpplan_device_last_success_timestamp_seconds{device=\"QA1\"}") {
            assert!(
                text.contains("dpplan_runs_total{plan=\"win\",status=\"MISSED\"} 1"),
                "{text}"
            );
            assert!(
                text.contains("dpplan_runs_total{plan=\"win\",status=\"COMPLETED\"} 2"),
                "{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.stop(), 0);
}

const SCHEDULED: &str = r#"
plan "sched" {
  schedule = "0 22 * * *"
  activity export_domain { devices = "QA1"  domains = "DOMAIN1" }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_a_schedule_a_few_seconds_ahead_starts_by_itself() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", SCHEDULED);
    let s = Serve::start(w.dir.path(), "p.dpplan", Some("2026-03-10T21:59:57Z"));
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    assert_eq!(plans[0]["schedule"], "0 22 * * *");
    assert_eq!(plans[0]["next_run"], "2026-03-10T22:00:00.000Z", "{plans}");
    // Nothing before it falls due.
    let (_, runs) = get(&format!("{}/api/runs", s.url)).await;
    assert_eq!(runs, serde_json::json!([]));
    let run = nth_run_of(&s, "sched", 1, Duration::from_secs(15)).await;
    assert_eq!(finished(&s, run).await["run"]["status"], "COMPLETED");
    let (_, log) = get(&format!("{}/api/runs/{run}/log", s.url)).await;
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .contains("scheduled; due at 2026-03-10T22:00:00"),
        "{log}"
    );
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    assert_eq!(plans[0]["next_run"], "2026-03-11T22:00:00.000Z");
    assert_eq!(plans[0]["last_run"]["id"], run);
    assert!(
        s.log().contains(&format!(
            "plan \"sched\" fell due at 2026-03-10T22:00:00+00:00: run {run}"
        )),
        "{}",
        s.log()
    );
    assert_eq!(s.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_plan_with_errors_keeps_its_old_version() {
    let w = World::new(fleet()).await;
    let file = write_plan(&w, "p.dpplan", WINDOWED);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let names = |plans: &Value| -> Vec<String> {
        plans
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let hup = |s: &Serve| {
        let pid = rustix::process::Pid::from_child(&s.child);
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    };
    async fn wait_log(s: &Serve, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !s.log().contains(needle) {
            assert!(Instant::now() < deadline, "no `{needle}` in:\n{}", s.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    std::fs::write(&file, w.plan_file("", &format!("{WINDOWED}{SCHEDULED}"))).unwrap();
    hup(&s);
    wait_log(&s, "reloaded: 2 plan(s)").await;
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    assert_eq!(names(&plans), ["sched", "win"]);
    // A broken file: the plans stay as they were, the problem is logged and shown.
    std::fs::write(&file, w.plan_file("", "plan \"win\" { bogus = 1 }")).unwrap();
    hup(&s);
    wait_log(&s, "keep their previous version").await;
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    assert_eq!(names(&plans), ["sched", "win"]);
    assert!(
        plans[0]["problem"].as_str().unwrap().contains("bogus"),
        "{plans}"
    );
    assert!(s.log().contains("DP0005"), "{}", s.log());
    assert_eq!(s.stop(), 0);
}

#[test]
fn serve_refuses_to_start_on_plan_errors_or_beyond_loopback_without_token_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.dpplan"), "plan \"x\" { bogus = 1 }\n").unwrap();
    let serve = |args: &[&str], token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dpplan"));
        c.arg("serve")
            .args(args)
            .arg("--state")
            .arg(dir.path().join("s.redb"));
        match token {
            Some(t) => c.env("DPPLAN_TOKEN", t),
            None => c.env_remove("DPPLAN_TOKEN"),
        };
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bad = dir.path().join("bad.dpplan");
    let bad = bad.to_str().unwrap();
    let (code, err) = serve(&[bad, "--listen", "127.0.0.1:0"], None);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("DP0005") && err.contains("check clean"),
        "{err}"
    );
    std::fs::write(dir.path().join("ok.dpplan"), "plan \"x\" {}\n").unwrap();
    let ok = dir.path().join("ok.dpplan");
    let ok = ok.to_str().unwrap();
    let (code, err) = serve(&[ok, "--listen", "0.0.0.0:0"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("needs a token"), "{err}");
    let (code, err) = serve(&[ok, "--listen", "0.0.0.0:0"], Some("t"));
    assert_eq!(code, Some(1));
    assert!(err.contains("needs TLS"), "{err}");
    let (code, err) = serve(&[dir.path().join("nothing").to_str().unwrap()], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such file or directory"), "{err}");
}

/// A CA and a certificate it signs for 127.0.0.1, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), key.serialize_pem())
}

/// Starts serve on `0.0.0.0:0` with TLS and [`TOKEN`] in `dir` (plan `x`, doing nothing);
/// returns it, its port and the CA that signed its certificate (PEM).
pub(crate) fn beyond_loopback(dir: &Path) -> (Child, String, String) {
    std::fs::write(dir.join("p.dpplan"), "plan \"x\" {}\n").unwrap();
    let (ca, cert, key) = certificates();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let state = dir.join("state.redb");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpplan"))
        .arg("serve")
        .arg(dir.join("p.dpplan"))
        .args(["--listen", "0.0.0.0:0", "--tls-cert"])
        .arg(dir.join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.join("key.pem"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--state")
        .arg(&state)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        if let Some(u) = dpplan::store::owner::holder(&state)
            .owner()
            .and_then(|o| o.serve.clone())
        {
            break u;
        }
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none());
        std::thread::sleep(Duration::from_millis(20));
    };
    let port = url.rsplit(':').next().unwrap().to_string();
    assert!(url.starts_with("https://"), "{url}");
    (child, port, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_request_needs_the_token_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, ca) = beyond_loopback(dir.path());
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let tls = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let r = tls.get(format!("{base}/api/runs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = tls
        .get(format!("{base}/api/runs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Plain HTTP is not spoken.
    assert!(client()
        .get(format!("http://127.0.0.1:{port}/api/runs"))
        .send()
        .await
        .is_err());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_run_and_task_changes() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let mut stream = client()
        .get(format!("{}/api/events", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        stream.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let (_, body) = post(&format!("{}/api/plans/adhoc/runs", s.url), Some(TOKEN), "").await;
    let run = body["run"].as_u64().unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let end = format!(
        "data: {{\"type\":\"run\",\"run\":{run},\"plan\":\"adhoc\",\"status\":\"COMPLETED\"}}"
    );
    while !text.contains(&end) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no end event in:\n{text}"))
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&format!("event: run\ndata: {{\"type\":\"run\",\"run\":{run},\"plan\":\"adhoc\",\"status\":\"RUNNING\"}}")), "{text}");
    for task in 1..=4 {
        assert!(
            text.contains(&format!("\"run\":{run},\"task\":{task},"))
                && text.contains("\"status\":\"SUCCEEDED\""),
            "task {task}: {text}"
        );
    }
    // A graceful stop ends the stream.
    assert_eq!(s.stop(), 0);
    let rest = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(rest.is_ok(), "the event stream outlived serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plans_run_at_once_but_a_device_is_worked_on_by_one_run_at_a_time() {
    let w = World::new(fleet()).await;
    write_plan(&w, "p.dpplan", ADHOC);
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let (_, a) = post(&format!("{}/api/plans/slow/runs", s.url), Some(TOKEN), "").await;
    let (_, b) = post(&format!("{}/api/plans/shared/runs", s.url), Some(TOKEN), "").await;
    let (a, b) = (a["run"].as_u64().unwrap(), b["run"].as_u64().unwrap());
    // Both at once: the second started while the first runs (its quiesces take seconds).
    let (_, plans) = get(&format!("{}/api/plans", s.url)).await;
    let running: Vec<&Value> = plans
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["running"].as_u64().map(|_| &p["name"]))
        .collect();
    assert_eq!(running, ["shared", "slow"], "{plans}");
    assert_eq!(finished(&s, a).await["run"]["status"], "COMPLETED");
    assert_eq!(finished(&s, b).await["run"]["status"], "COMPLETED");
    // SLOW1's tasks of the two runs never overlap.
    let mut spans = Vec::new();
    for run in [a, b] {
        for t in 1.. {
            let (code, task) = get(&format!("{}/api/runs/{run}/tasks/{t}", s.url)).await;
            if code == 404 {
                break;
            }
            if task["task"]["device"] == "SLOW1" {
                let at = |k: &str| {
                    chrono::DateTime::parse_from_rfc3339(task["task"][k].as_str().unwrap()).unwrap()
                };
                spans.push((at("started"), at("finished"), run));
            }
        }
    }
    assert_eq!(spans.len(), 4, "{spans:?}");
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlap on SLOW1: {spans:?}");
    }
    w.assert_clean();
    assert_eq!(s.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_notifies_each_outcome_once_and_again_after_a_crash_before_delivery() {
    use crate::support::receivers::HttpReceiver;
    let hook = HttpReceiver::start();
    let w = World::new(fleet()).await;
    let plans = format!(
        "notify \"ops\" {{ on = [completed, missed]  webhook = \"{}\" }}\n{}",
        hook.url("/hook"),
        WINDOWED.replace("plan \"win\" {", "plan \"win\" {\n  notify = [\"ops\"]")
    );
    write_plan(&w, "p.dpplan", &plans);
    // The run's outcome is durable with its notification, then serve dies before sending it.
    let s = Serve::start_env(
        w.dir.path(),
        "p.dpplan",
        None,
        &[("DPPLAN_FAILPOINT", "after-outcome")],
    );
    let (code, body) = post(
        &format!("{}/api/plans/win/runs", s.url),
        Some(TOKEN),
        "{\"ignore_window\": true}",
    )
    .await;
    assert_eq!(code, 202, "{body}");
    let mut s = s;
    let status = s.child.wait().unwrap();
    assert!(
        !status.success(),
        "the failpoint did not stop serve: {}",
        s.log()
    );
    assert!(hook.requests.all().is_empty());
    drop(s);
    // The next start delivers it, once.
    let s = Serve::start(w.dir.path(), "p.dpplan", None);
    let got = hook.requests.wait_for(1);
    assert_eq!(got[0].json()["run"]["id"], 1, "{:?}", got[0].json());
    assert_eq!(got[0].json()["run"]["status"], "COMPLETED");
    // A second outcome: one more, not a repeat of the first.
    let (_, body) = post(
        &format!("{}/api/plans/win/runs", s.url),
        Some(TOKEN),
        "{\"ignore_window\": true}",
    )
    .await;
    let second = body["run"].as_u64().unwrap();
    finished(&s, second).await;
    let got = hook.requests.wait_for(2);
    assert_eq!(got[1].json()["run"]["id"], second);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests.all().len(), 2, "a repeat");
    let (_, log) = get(&format!("{}/api/runs/1/log", s.url)).await;
    assert!(log.to_string().contains("delivered"), "{log}");
    assert!(s.log().contains("notify ops"), "{}", s.log());
    assert_eq!(s.stop(), 0);

    // A MISSED run is notified too.
    let s = Serve::start(w.dir.path(), "p.dpplan", Some("2030-01-10T23:00:00Z"));
    let got = hook.requests.wait_for(3);
    assert_eq!(got.len(), 3, "{}", s.log());
    assert_eq!(
        got[2].json()["run"]["status"],
        "MISSED",
        "{:?}",
        got[2].json()
    );
    assert_eq!(s.stop(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_retention_keeps_the_newest_runs_and_never_an_unfinished_one() {
    let w = World::new(fleet()).await;
    let plan = w.dir.path().join("p.dpplan");
    std::fs::write(
        &plan,
        w.plan_file(
            "settings { keep_runs = 2 }\n",
            "plan \"p\" {\n  activity export_domain { devices = \"QA1\"  domains = \"DOMAIN1\" }\n}\n",
        ),
    )
    .unwrap();
    let p = plan.to_str().unwrap();
    let dir = w.dir.path();
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dpplan"));
        c.args(["run", p, "--quiet", "--state"])
            .arg(dir.join("state.redb"))
            .env_remove("DPPLAN_FAILPOINT");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap().status.code()
    };
    // Run 1 is killed mid-way: unfinished, it must stay.
    assert_ne!(run(&[("DPPLAN_FAILPOINT", "after-intent")]), Some(0));
    for _ in 0..4 {
        assert_eq!(run(&[]), Some(0));
    }
    let (code, out, err) = cli(dir, &["runs", "--json"]);
    assert_eq!(code, 0, "{err}");
    let ids: Vec<u64> = serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [5, 4, 1], "{out}");
    let (code, _, err) = cli(dir, &["show", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("no run 2"), "{err}");
    // The kept runs read back whole.
    let (code, out, _) = cli(dir, &["log", "4", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("run COMPLETED"), "{out}");
}
