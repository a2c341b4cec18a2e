//! Benchmark of `dpplan serve`'s API and the result pages over a long history.
//!
//! (a) `GET /api/runs` under load: a state file with 10,000 runs of 8 plans (2 to 6 tasks
//!     each, about 3% FAILED), `dpplan::serve::Server` started in process on it, and 32
//!     concurrent clients (reqwest, keep-alive) asking for `/api/runs` (the default 40),
//!     `/api/runs?plan=P`, `/api/runs?status=FAILED` and, the worst case of the status filter,
//!     `/api/runs?status=CANCELLED` (no run has it) for some seconds each. p50, p99 and max
//!     latency and requests per second for each; before that, the same queries on the store
//!     alone. Floor: p99 under 50 ms for the first three.
//! (b) A year of nightly runs: 365 runs x 1,000 tasks (365,000 tasks), then `dpplan runs
//!     --state FILE` (the real binary, end to end; floor 100 ms), `dpplan show RUN --json` of
//!     one 1,000-task run and `GET /api/runs/{id}` of it. Reports how long building the
//!     history took, serve's start on it, and the state file's size and what fills it.
//!
//! The runs' records are the engine's own: each plan is run once by the real engine against
//! in-process instant appliances into a memory journal, and that run is replayed into the
//! state file through the public store API (`RedbStore`, `Journal::create_run` and `append`,
//! several runs in flight so they share commits), its times moved to the run's date and
//! stretched to a realistic length; some runs get a task failed in the replay.
//!
//! Run: `cargo bench --bench serve` (`-- --only a|b`, `--runs N`, `--clients C`,
//! `--seconds S` per query and round, `--repeat R` rounds, `--query TEXT` for only the
//! queries of (a) that contain TEXT, `--year-runs N`, `--year-tasks N`, `--inflight N` runs
//! replayed at once, `--keep DIR` to leave the state files in DIR). `--prune` also times
//! journal retention (`keep_days = 90`, `keep_runs = 30`) on the year: see `prune_year`. Figures go in docs/performance.md.

#![allow(clippy::unwrap_used)]

use chrono::{DateTime, TimeDelta, Utc};
use dpplan::backups::timestamp;
use dpplan::check::{self, Checked, Program, Root};
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Connector, Engine, RunOptions};
use dpplan::serve::{Config, Reporter, Server};
use dpplan::sim::instant::InstantAppliance;
use dpplan::soma::SomaConnector;
use dpplan::store::memory::MemoryJournal;
use dpplan::store::{
    History, Journal, NewRun, Record, RedbStore, RunId, RunStatus, StepOutcome, TaskStatus,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    only: Option<String>,
    runs: usize,
    clients: usize,
    seconds: f64,
    repeat: usize,
    year_runs: usize,
    year_tasks: usize,
    inflight: usize,
    keep: Option<PathBuf>,
    query: Option<String>,
    prune: bool,
}

fn args() -> Args {
    let mut a = Args {
        only: None,
        runs: 10_000,
        clients: 32,
        seconds: 3.0,
        repeat: 3,
        year_runs: 365,
        year_tasks: 1_000,
        inflight: 4,
        keep: None,
        query: None,
        prune: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        let n = v.parse::<usize>().ok();
        match (argv[i].as_str(), n) {
            ("--only", _) => a.only = Some(v),
            ("--keep", _) => a.keep = Some(PathBuf::from(v)),
            ("--query", _) => a.query = Some(v),
            ("--seconds", _) => a.seconds = v.parse().unwrap_or(a.seconds),
            ("--runs", Some(n)) => a.runs = n,
            ("--clients", Some(n)) => a.clients = n,
            ("--repeat", Some(n)) => a.repeat = n.max(1),
            ("--year-runs", Some(n)) => a.year_runs = n,
            ("--year-tasks", Some(n)) => a.year_tasks = n,
            ("--inflight", Some(n)) => a.inflight = n.max(1),
            ("--prune", _) => {
                a.prune = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

struct InstantConnector;

impl Connector for InstantConnector {
    fn connect(
        &self,
        device: &dpplan::check::Device,
    ) -> Result<Arc<dyn dpplan::appliance::Appliance>, String> {
        Ok(Arc::new(InstantAppliance::new(&device.name)))
    }
}

/// serve's log lines, on stderr.
struct Quiet;

impl Reporter for Quiet {
    fn say(&self, line: &str) {
        eprintln!("  serve: {line}");
    }
    fn diagnostics(&self, _: &Checked) -> String {
        String::new()
    }
}

/// A plan file: the standard library, a store under `dir`, the devices, then `plans`. No plan
/// has a schedule or a window, so serve never starts one.
fn plan_file(dir: &Path, devices: &[String], plans: &str) -> String {
    let mut s = String::from("import \"std/datapower\"\n");
    let _ = writeln!(s, "settings {{ max_parallel = 64 }}");
    let _ = writeln!(s, "store \"{}\" {{}}", dir.join("store").display());
    s.push_str("inventory {\n  defaults {\n    password = file(\"pw\")\n    tls = false\n  }\n");
    for (i, d) in devices.iter().enumerate() {
        let _ = writeln!(
            s,
            "  device \"{d}\" {{ host = \"dp{i}.example.com\"  port = 5550 }}"
        );
    }
    s.push_str("}\n");
    s.push_str(plans);
    s
}

/// One run as the engine wrote it: what `create_run` got and every record appended.
struct Template {
    run: NewRun,
    records: Vec<Record>,
    /// The step whose failure the replay injects (`backup` or `export`).
    main_step: &'static str,
}

/// Runs plan `name` of `file` once with the real engine against instant appliances,
/// journaling to `journal`; returns the run's id.
async fn engine_run(
    file: &Path,
    program: &Arc<Program>,
    name: &str,
    journal: Arc<dyn Journal>,
) -> RunId {
    let text = std::fs::read_to_string(file).unwrap();
    let engine = Engine::new(
        program.clone(),
        name,
        journal,
        Arc::new(InstantConnector),
        Arc::new(SystemClock),
        RunOptions {
            ignore_window: true,
            origin: Some(format!(
                "started by dpplan serve (scheduled; due at 2026-01-01T02:00:00+00:00), plan file {}",
                file.display()
            )),
            ..RunOptions::default()
        },
    );
    let report = engine.run(&text).await.unwrap();
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    report.run
}

fn program(file: &Path) -> Arc<Program> {
    let checked = check::check(&Root::Path(file.to_path_buf()));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics.first());
    Arc::new(checked.program)
}

/// Runs each plan of `file` once with the real engine against instant appliances.
async fn templates(file: &Path, plans: &[(String, &'static str)]) -> Vec<Template> {
    let program = program(file);
    let mut out = Vec::new();
    for (name, main_step) in plans {
        let journal = Arc::new(MemoryJournal::new());
        let run = engine_run(file, &program, name, journal.clone()).await;
        out.push(Template {
            run: journal.created(run).unwrap(),
            records: journal.records(run),
            main_step,
        });
    }
    out
}

fn shift(at: &mut DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>, stretch: i64) {
    let us = (*at - from).num_microseconds().unwrap_or(0);
    *at = to + TimeDelta::microseconds(us.saturating_mul(stretch));
}

/// The template as run `start` of its plan: times moved and stretched `stretch` times, task
/// `fail` (if any) failed in its main step.
fn replay(
    t: &Template,
    start: DateTime<Utc>,
    stretch: i64,
    fail: Option<u32>,
) -> (NewRun, Vec<Record>) {
    let from = t.run.started;
    let mut run = t.run.clone();
    run.started = start;
    let (from_dir, to_dir) = (timestamp(from), timestamp(start));
    let mut records = Vec::with_capacity(t.records.len());
    for r in &t.records {
        let mut r = r.clone();
        match &mut r {
            Record::StepIntent { at, .. }
            | Record::Task { at, .. }
            | Record::Run { at, .. }
            | Record::Log { at, .. } => shift(at, from, start, stretch),
            Record::StepResult { at, .. } => shift(at, from, start, stretch),
            // Its directory is named after the run's start.
            Record::File { file, .. } => {
                file.path = file.path.replace(&from_dir, &to_dir);
            }
            Record::Facts { .. } | Record::Import { .. } => {}
        }
        if let Some(f) = fail {
            match &mut r {
                Record::StepResult {
                    task,
                    step,
                    outcome,
                    error,
                    ..
                } if *task == f && step == t.main_step => {
                    *outcome = StepOutcome::Failed;
                    *error = Some(format!(
                        "dp{f}.example.com:5550: the appliance answered 500 Internal Server Error to {}",
                        t.main_step
                    ));
                }
                Record::File { task, .. } if *task == f => continue,
                Record::Task {
                    task,
                    status,
                    error,
                    ..
                } if *task == f && *status == TaskStatus::Succeeded => {
                    *status = TaskStatus::Failed;
                    *error = Some(format!("step {} failed", t.main_step));
                }
                Record::Run { status, error, .. } if *status == RunStatus::Completed => {
                    *status = RunStatus::Failed;
                    *error = Some("1 task failed".into());
                }
                _ => {}
            }
        }
        records.push(r);
    }
    (run, records)
}

/// Appends `records` to run `id` in order, `chunk` records per append.
async fn append_all(store: Arc<RedbStore>, id: RunId, records: Vec<Record>, chunk: usize) {
    let mut it = records.into_iter().peekable();
    while it.peek().is_some() {
        let part: Vec<Record> = it.by_ref().take(chunk).collect();
        store.append(id, part).await.unwrap();
    }
}

/// Creates the runs `make(i)` for `i` in `range` in order of `i` (their ids increase with it),
/// `batch` at a time, and appends their records, concurrently across runs.
async fn build(
    store: &Arc<RedbStore>,
    count: usize,
    batch: usize,
    chunk: usize,
    make: impl Fn(usize) -> (NewRun, Vec<Record>),
) -> u64 {
    let mut records_total = 0u64;
    let mut i = 0;
    while i < count {
        let n = batch.min(count - i);
        let runs: Vec<(NewRun, Vec<Record>)> = (i..i + n).map(&make).collect();
        // join_all polls in order and each create_run sends its request on its first poll, so
        // ids follow `i`.
        let creates = runs.iter().map(|(r, _)| store.create_run(r.clone()));
        let ids: Vec<RunId> = futures_util::future::join_all(creates)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "ids out of order");
        let mut handles = Vec::new();
        for (id, (_, records)) in ids.into_iter().zip(runs) {
            records_total += records.len() as u64;
            handles.push(tokio::spawn(append_all(store.clone(), id, records, chunk)));
        }
        for h in handles {
            h.await.unwrap();
        }
        i += n;
    }
    records_total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// A runtime of `workers` threads named `name` (so a profile tells serve from its clients).
fn runtime(workers: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts serve on `state` with the plans of `plan` (none ever falls due); returns it with
/// how long the start took. Runs on `rt` (as `dpplan serve`: one worker per core).
fn start_serve(rt: &tokio::runtime::Runtime, state: &Path, plan: &Path) -> (Server, Duration) {
    let t = Instant::now();
    let store = Arc::new(RedbStore::open(state).unwrap());
    let config = Config {
        paths: vec![plan.to_path_buf()],
        listen: "127.0.0.1:0".parse().unwrap(),
        store,
        token: None,
        tls: None,
        connector: Arc::new(SomaConnector),
        clock: Arc::new(SystemClock),
        warnings: |_| Vec::new(),
    };
    let server = rt
        .block_on(Server::start(config, Arc::new(Quiet)))
        .map_err(|(e, _)| e)
        .unwrap();
    (server, t.elapsed())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// `clients` clients each asking for `url` in a loop for `seconds`: every request's latency
/// (request sent to body read), and the wall time.
async fn hammer(url: &str, clients: usize, seconds: f64) -> (Vec<Duration>, Duration) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let url = url.to_string();
        handles.push(tokio::spawn(async move {
            let c = client();
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200, "{url}");
                let body = r.bytes().await.unwrap();
                lat.push(t.elapsed());
                assert!(!body.is_empty(), "{url}: empty answer");
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let wall = start.elapsed();
    all.sort();
    (all, wall)
}

/// Part (a).
fn part_a(a: &Args, dir: &Path) {
    let build_rt = runtime(2, "build");
    let plans: Vec<(String, &'static str)> = (0..8)
        .map(|k| {
            let name = format!("{}-{k}", ["nightly", "exports"][k % 2]);
            (name, ["backup", "export"][k % 2])
        })
        .collect();
    let mut devices = Vec::new();
    let mut text = String::new();
    for (k, (name, _)) in plans.iter().enumerate() {
        let n = 2 + k % 5;
        let mine: Vec<String> = (0..n).map(|j| format!("P{k}DP{j}")).collect();
        let list = mine
            .iter()
            .map(|d| format!("\"{d}\""))
            .collect::<Vec<_>>()
            .join(", ");
        if k % 2 == 0 {
            let _ = writeln!(
                text,
                "plan \"{name}\" {{\n  activity secure_backup {{ devices = [{list}]  cert = \"backup-cert\"  quiesce = 60s }}\n}}"
            );
        } else {
            let _ = writeln!(
                text,
                "plan \"{name}\" {{\n  activity export_domain {{ devices = [{list}]  domains = all }}\n}}"
            );
        }
        devices.extend(mine);
    }
    let file = dir.join("a.dpplan");
    std::fs::write(&file, plan_file(dir, &devices, &text)).unwrap();
    let tmpl = build_rt.block_on(templates(&file, &plans));
    for t in &tmpl {
        println!(
            "(a) template {}: {} tasks, {} records, plan text {} bytes, stored run {} bytes",
            t.run.plan,
            t.run.tasks.len(),
            t.records.len(),
            t.run.plan_text.len(),
            t.run.graph.len()
        );
    }
    let tasks: usize = (0..a.runs)
        .map(|i| tmpl[i % tmpl.len()].run.tasks.len())
        .sum();

    let state = dir.join("a.redb");
    let _ = std::fs::remove_file(&state);
    let store = Arc::new(RedbStore::open(&state).unwrap());
    let now = Utc::now();
    let every = TimeDelta::minutes(50);
    let count = a.runs;
    let t = Instant::now();
    let records = build_rt.block_on(build(&store, count, 256, 4096, |i| {
        let start = now - every * i32::try_from(count - i).unwrap();
        // About 3% of runs fail (one task), spread evenly.
        let fail = (i % 33 == 7).then_some(1);
        // Template runs take tens of ms; stretched 1,000 times: a minute or two.
        replay(&tmpl[i % tmpl.len()], start, 1_000, fail)
    }));
    let built = t.elapsed();
    let commits = store.commits();
    drop(store);
    let size = std::fs::metadata(&state).unwrap().len();
    println!(
        "(a) history: {count} runs of {} plans, {tasks} tasks, {records} records in {:.2} s ({commits} commits); state file {:.1} MiB",
        plans.len(),
        built.as_secs_f64(),
        mib(size)
    );

    store_alone(&state, &plans[3].0);
    let srv_rt = runtime(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        "serve",
    );
    let (server, took) = start_serve(&srv_rt, &state, &file);
    println!("(a) serve started on it in {:.1} ms", ms(took));
    let base = server.url().to_string();
    let cli_rt = runtime(2, "client");
    let queries = [
        "/api/runs".to_string(),
        format!("/api/runs?plan={}", plans[3].0),
        "/api/runs?status=FAILED".to_string(),
        // No run has it: the whole history is read (not under the floor: the worst case).
        "/api/runs?status=CANCELLED".to_string(),
    ];
    // What each answers, once.
    for q in &queries {
        let url = format!("{base}{q}");
        let body: serde_json::Value = cli_rt.block_on(async {
            serde_json::from_slice(
                &client()
                    .get(&url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap(),
            )
            .unwrap()
        });
        let n = body.as_array().map_or(0, Vec::len);
        let wanted = if q.contains("CANCELLED") { 0 } else { 40 };
        assert!(n == wanted || a.runs < 2_000, "{q}: {n} runs");
    }
    println!(
        "(a) {} clients, {:.0} s per query and round, {} rounds (p99 is the median of the rounds')",
        a.clients, a.seconds, a.repeat
    );
    println!(
        "{:<32} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "query", "p50 ms", "p99 ms", "max ms", "req/s", "requests"
    );
    let mut worst = 0.0f64;
    for q in queries
        .iter()
        .filter(|q| a.query.as_deref().is_none_or(|s| q.contains(s)))
    {
        let url = format!("{base}{q}");
        // Warm: connections open, pages cached.
        cli_rt.block_on(hammer(&url, a.clients, 0.5));
        let mut rounds = Vec::new();
        for _ in 0..a.repeat {
            let (lat, wall) = cli_rt.block_on(hammer(&url, a.clients, a.seconds));
            let p50 = ms(percentile(&lat, 0.50));
            let p99 = ms(percentile(&lat, 0.99));
            let max = ms(*lat.last().unwrap());
            let rate = lat.len() as f64 / wall.as_secs_f64();
            println!(
                "  round: {q:<24} {p50:>9.2} {p99:>9.2} {max:>9.2} {rate:>9.0} {:>10}",
                lat.len()
            );
            rounds.push((p50, p99, max, rate, lat.len()));
        }
        let p50 = median(rounds.iter().map(|r| r.0).collect());
        let p99 = median(rounds.iter().map(|r| r.1).collect());
        let max = rounds.iter().map(|r| r.2).fold(0.0, f64::max);
        let rate = median(rounds.iter().map(|r| r.3).collect());
        let n: usize = rounds.iter().map(|r| r.4).sum();
        println!("{q:<32} {p50:>9.2} {p99:>9.2} {max:>9.2} {rate:>9.0} {n:>10}");
        if !q.contains("CANCELLED") {
            worst = worst.max(p99);
        }
    }
    println!(
        "(a) floor p99 < 50 ms (the first three queries): {} (worst median p99 {worst:.2} ms)",
        if worst < 50.0 { "met" } else { "NOT met" }
    );
    srv_rt.block_on(server.stop());
}

/// The queries of (a) on the store alone, in process, one at a time: what each costs before
/// HTTP and JSON (median of 200 calls).
fn store_alone(state: &Path, plan: &str) {
    let store = RedbStore::open(state).unwrap();
    let time = |what: &str, f: &dyn Fn() -> usize| {
        let mut v = Vec::new();
        let mut n = 0;
        for _ in 0..200 {
            let t = Instant::now();
            n = f();
            v.push(ms(t.elapsed()));
        }
        println!("(a) store alone: {what}: {:.3} ms ({n} runs)", median(v));
    };
    time("runs(None, 40)", &|| store.runs(None, 40).unwrap().len());
    time(&format!("runs(Some({plan:?}), 40)"), &|| {
        store.runs(Some(plan), 40).unwrap().len()
    });
    time("runs_with_status(None, FAILED, 40)", &|| {
        store
            .runs_with_status(None, RunStatus::Failed, 40)
            .unwrap()
            .len()
    });
    time("runs_with_status(None, CANCELLED, 40)", &|| {
        store
            .runs_with_status(None, RunStatus::Cancelled, 40)
            .unwrap()
            .len()
    });
    time("runs(None, all) filtered by FAILED (before)", &|| {
        store
            .runs(None, usize::MAX)
            .unwrap()
            .iter()
            .filter(|r| r.status == RunStatus::Failed)
            .take(40)
            .count()
    });
}

/// Runs the binary `times` times; the wall times (ms), and the last stdout's size.
fn time_cli(args: &[&str], times: usize) -> (Vec<f64>, usize) {
    let mut out = Vec::new();
    let mut bytes = 0;
    for _ in 0..times {
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_dpplan"))
            .args(args)
            .env_remove("DPPLAN_STATE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        out.push(ms(t.elapsed()));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        bytes = o.stdout.len();
    }
    (out, bytes)
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    format!(
        "median {:.1} ms ({} runs: {min:.1} to {max:.1})",
        median(v.to_vec()),
        v.len()
    )
}

/// Part (b).
fn part_b(a: &Args, dir: &Path) {
    let build_rt = runtime(2, "build");
    let devices: Vec<String> = (1..=a.year_tasks).map(|i| format!("DP{i:04}")).collect();
    let plan = "plan \"nightly\" {\n  activity secure_backup { devices = \"DP*\"  cert = \"backup-cert\"  quiesce = 60s }\n}\n";
    let file = dir.join("b.dpplan");
    std::fs::write(&file, plan_file(dir, &devices, plan)).unwrap();
    let t = Instant::now();
    let tmpl = build_rt.block_on(templates(&file, &[("nightly".into(), "backup")]));
    let tmpl = &tmpl[0];
    println!(
        "(b) template: the engine ran {} tasks, {} records, in {:.2} s",
        tmpl.run.tasks.len(),
        tmpl.records.len(),
        t.elapsed().as_secs_f64()
    );
    // What the state file holds for one run, as JSON (its key and page overheads aside).
    let journal_bytes: usize = tmpl
        .records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    let task_bytes: usize = tmpl
        .run
        .tasks
        .iter()
        .map(|t| serde_json::to_vec(t).unwrap().len())
        .sum();
    println!(
        "(b) one run as stored: journal {:.2} MiB ({} records, {:.0} bytes each), tasks {:.2} MiB, stored run (graph) {:.2} MiB, plan text {:.2} MiB",
        mib(journal_bytes as u64),
        tmpl.records.len(),
        journal_bytes as f64 / tmpl.records.len() as f64,
        mib(task_bytes as u64),
        mib(tmpl.run.graph.len() as u64),
        mib(tmpl.run.plan_text.len() as u64)
    );
    // The same run written by the engine itself, step by step with group commit: how the
    // replay's file compares with the engine's.
    let engine_file = dir.join("b-engine.redb");
    let _ = std::fs::remove_file(&engine_file);
    let store = Arc::new(RedbStore::open(&engine_file).unwrap());
    build_rt.block_on(engine_run(&file, &program(&file), "nightly", store.clone()));
    drop(store);
    println!(
        "(b) the same run written by the engine itself into a new state file: {:.1} MiB",
        mib(std::fs::metadata(&engine_file).unwrap().len())
    );
    let state = dir.join("b.redb");
    let _ = std::fs::remove_file(&state);
    let store = Arc::new(RedbStore::open(&state).unwrap());
    let days = a.year_runs;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(2, 0, 0)
        .unwrap()
        .and_utc();
    let t = Instant::now();
    let records = build_rt.block_on(build(&store, days, a.inflight, 2048, |i| {
        let start = today - TimeDelta::days(i64::try_from(days - i).unwrap());
        // One night in ten a device fails its backup.
        let fail = (i % 10 == 3).then_some(u32::try_from(i % a.year_tasks).unwrap() + 1);
        // The instant run takes a fraction of a second; stretched to about 40 minutes.
        replay(tmpl, start, 20_000, fail)
    }));
    let built = t.elapsed();
    let commits = store.commits();
    drop(store);
    let size = std::fs::metadata(&state).unwrap().len();
    println!(
        "(b) history: {days} runs x {} tasks = {} tasks, {records} records, built in {:.1} s ({commits} commits, {:.0} records/s); state file {:.1} MiB",
        a.year_tasks,
        days * a.year_tasks,
        built.as_secs_f64(),
        records as f64 / built.as_secs_f64(),
        mib(size)
    );

    let s = state.display().to_string();
    let (v, bytes) = time_cli(&["runs", "--state", &s], 7);
    println!(
        "(b) `dpplan runs --state FILE`: {} ({bytes} bytes out)",
        spread(&v)
    );
    let floor = median(v);
    println!(
        "(b) floor 100 ms: {}",
        if floor < 100.0 { "met" } else { "NOT met" }
    );
    let newest = days.to_string();
    let (v, bytes) = time_cli(&["show", &newest, "--json", "--state", &s], 5);
    println!(
        "(b) `dpplan show {newest} --json` ({} tasks): {} ({bytes} bytes out)",
        a.year_tasks,
        spread(&v)
    );
    let (v, bytes) = time_cli(&["show", &newest, "--state", &s], 5);
    println!(
        "(b) `dpplan show {newest}` (table): {} ({bytes} bytes out)",
        spread(&v)
    );
    let (v, bytes) = time_cli(
        &["show", &newest, "--activity", "1", "--json", "--state", &s],
        5,
    );
    println!(
        "(b) `dpplan show {newest} --activity 1 --json` (its {} tasks listed): {} ({:.2} MiB out)",
        a.year_tasks,
        spread(&v),
        mib(bytes as u64)
    );

    let srv_rt = runtime(
        std::thread::available_parallelism().map_or(2, |n| n.get()),
        "serve",
    );
    let (server, took) = start_serve(&srv_rt, &state, &file);
    println!(
        "(b) serve started on the year's history in {:.1} ms",
        ms(took)
    );
    let cli_rt = runtime(2, "client");
    for q in [format!("/api/runs/{newest}"), "/api/runs".to_string()] {
        let url = format!("{}{q}", server.url());
        let c = client();
        let mut v = Vec::new();
        let mut size = 0;
        for _ in 0..7 {
            let t = Instant::now();
            let body = cli_rt.block_on(async {
                let r = c.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap()
            });
            v.push(ms(t.elapsed()));
            size = body.len();
        }
        println!(
            "(b) GET {q}: {} ({:.1} KiB)",
            spread(&v),
            size as f64 / 1024.0
        );
    }
    srv_rt.block_on(server.stop());

    file_stats(&state);
    if a.prune {
        prune_year(&state);
    }
}

/// What redb says fills the state file: the bytes stored, its pages, and free space.
fn file_stats(state: &Path) {
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open(state)
        .unwrap();
    let txn = db.begin_write().unwrap();
    let st = txn.stats().unwrap();
    let page = st.page_size() as u64;
    let size = std::fs::metadata(state).unwrap().len();
    println!(
        "(b) state file {:.1} MiB: {:.1} MiB stored, {:.1} MiB of B-tree metadata, {:.1} MiB fragmented in {} allocated pages ({:.1} MiB); {:.1} MiB of the file unallocated",
        mib(size),
        mib(st.stored_bytes()),
        mib(st.metadata_bytes()),
        mib(st.fragmented_bytes()),
        st.allocated_pages(),
        mib(st.allocated_pages() * page),
        mib(size.saturating_sub(st.allocated_pages() * page))
    );
    txn.abort().unwrap();
}

/// Journal retention on the year's history (`--prune`, after part (b)), each on a copy of
/// the state file: (1) `keep_days = 90` (the runs older than 90 days before the newest go),
/// (2) `keep_runs = 30`; for each, the time retention takes, the file's size before and after
/// (redb reuses freed pages for later runs rather than shrinking the file), the runs left, and
/// `dpplan runs` after it.
fn prune_year(state: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for (what, keep_runs, keep_days) in [
        ("keep_days = 90", None, Some(90)),
        ("keep_runs = 30", Some(30), None),
    ] {
        let copy = state.with_extension("prune.redb");
        std::fs::copy(state, &copy).unwrap();
        let before = std::fs::metadata(&copy).unwrap().len();
        let store = RedbStore::open(&copy).unwrap();
        let all = store.runs(None, usize::MAX).unwrap();
        let newest = all[0].started + TimeDelta::hours(1);
        let plans: std::collections::BTreeSet<String> =
            all.iter().map(|r| r.plan.clone()).collect();
        let t = Instant::now();
        let mut gone = 0;
        for plan in &plans {
            gone += rt
                .block_on(dpplan::store::retention::apply(
                    &store, plan, keep_runs, keep_days, newest,
                ))
                .unwrap();
        }
        let took = t.elapsed();
        let left = store.runs(None, usize::MAX).unwrap().len();
        drop(store);
        let after = std::fs::metadata(&copy).unwrap().len();
        let c = copy.display().to_string();
        let (v, _) = time_cli(&["runs", "--state", &c], 5);
        println!(
            "(prune) {what}: {gone} of {} runs removed in {:.2} s, {left} left; state file {:.1} MiB before, {:.1} MiB after; `dpplan runs` after: {}",
            all.len(),
            took.as_secs_f64(),
            mib(before),
            mib(after),
            spread(&v)
        );
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(dpplan::store::owner::sidecar(&copy));
    }
}

fn main() {
    let a = args();
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let part = |p: &str| a.only.as_deref().is_none_or(|o| o == p);
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw"), "admin").unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    println!(
        "serve benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if part("a") {
        part_a(&a, &dir);
    }
    if part("b") {
        part_b(&a, &dir);
    }
}
