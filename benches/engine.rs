//! Benchmark of the engine (DESIGN.md section 9, issue "Never lose a run"):
//!
//! (a) 10,000 tasks x 4 steps, 256 in flight, against in-process instant appliances, every
//!     step's intent and result durable in a real redb state file: with group commit, and
//!     beside it the same run committing every record alone;
//! (b) the same plan against the simulator over HTTP (256 simulated devices);
//! (c) resume of an interrupted 10,000-task run: time from the start of `resume` (opening the
//!     state file included) to its first new step.
//!
//! Run: `cargo bench --bench engine` (`-- --tasks N` for another size). Figures go in
//! docs/performance.md.

use dpplan::appliance::Appliance;
use dpplan::check::{self, Device, Root};
use dpplan::compile::Task;
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Connector, Engine, Observer, RunOptions};
use dpplan::sim::instant::InstantAppliance;
use dpplan::soma::SomaConnector;
use dpplan::store::{Journal, RedbStore, TaskStatus};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct InstantConnector;

impl Connector for InstantConnector {
    fn connect(&self, device: &Device) -> Result<Arc<dyn Appliance>, String> {
        Ok(Arc::new(InstantAppliance::new(&device.name)))
    }
}

const KIND: &str = r#"
kind bench per device {
  action = "SECURE_BACKUP"
  param quiesce : duration = 60s
  step validate  = dp.validate(device, quiesce = quiesce)
  step quiesce   = dp.quiesce(device, timeout = quiesce)
  step save      = dp.save_config(device)
  step unquiesce = dp.unquiesce(device, timeout = quiesce) always
}
"#;

/// A plan of `devices` devices and `per_device` activities (one task each per device).
fn plan(hosts: &[(String, u16)], per_device: usize, parallel: usize) -> String {
    let mut s = String::from(KIND);
    let _ = writeln!(s, "settings {{ max_parallel = {parallel} }}");
    s.push_str("inventory {\n  defaults {\n    password = file(\"pw\")\n    tls = false\n  }\n");
    for (i, (host, port)) in hosts.iter().enumerate() {
        let _ = writeln!(
            s,
            "  device \"D{i:05}\" {{ host = \"{host}\"  port = {port} }}"
        );
    }
    s.push_str("}\nplan \"bench\" {\n");
    for a in 0..per_device {
        let _ = writeln!(s, "  activity bench \"a{a}\" {{ devices = \"D*\" }}");
    }
    s.push_str("}\n");
    s
}

/// Counts steps started, and can raise the interrupt flag after a number of them.
struct Counter {
    steps: AtomicU64,
    interrupt_after: u64,
    flag: Mutex<Option<Arc<AtomicBool>>>,
    first: Mutex<Option<Instant>>,
}

impl Observer for Counter {
    fn step(&self, _t: &Task, _s: &str) {
        let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 {
            if let Ok(mut f) = self.first.lock() {
                f.get_or_insert_with(Instant::now);
            }
        }
        if n == self.interrupt_after {
            if let Ok(f) = self.flag.lock() {
                if let Some(f) = f.as_ref() {
                    f.store(true, Ordering::SeqCst);
                }
            }
        }
    }
    fn task(&self, _t: &Task, _s: TaskStatus) {}
}

fn counter(interrupt_after: u64) -> Arc<Counter> {
    Arc::new(Counter {
        steps: AtomicU64::new(0),
        interrupt_after,
        flag: Mutex::new(None),
        first: Mutex::new(None),
    })
}

async fn run_once(
    text: &str,
    dir: &std::path::Path,
    connector: Arc<dyn Connector>,
    group_commit: bool,
    observer: Arc<Counter>,
) -> (Duration, u64, Arc<RedbStore>) {
    let path = dir.join("plan.dpplan");
    std::fs::write(&path, text).expect("plan");
    let checked = check::check(&Root::Path(path));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics.first());
    let state = dir.join(format!(
        "state-{}.redb",
        if group_commit { "group" } else { "single" }
    ));
    let _ = std::fs::remove_file(&state);
    let store = Arc::new(RedbStore::open(&state).expect("state"));
    store.set_group_commit(group_commit);
    let journal: Arc<dyn Journal> = store.clone();
    let engine = Engine::new(
        Arc::new(checked.program),
        "bench",
        journal,
        connector,
        Arc::new(SystemClock),
        RunOptions {
            ignore_window: true,
            ..RunOptions::default()
        },
    )
    .observe(observer.clone());
    if let Ok(mut f) = observer.flag.lock() {
        *f = Some(engine.interrupt_flag());
    }
    let t = Instant::now();
    let report = engine.run(text).await.expect("run");
    let el = t.elapsed();
    let steps = observer.steps.load(Ordering::Relaxed);
    assert!(report
        .tasks
        .iter()
        .all(|t| t.status.is_final() || observer.interrupt_after > 0));
    (el, steps, store)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tasks: usize = args
        .iter()
        .position(|a| a == "--tasks")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    // `--only a|b|c`: one part (for profiling).
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let part = |p: &str| only.as_deref().is_none_or(|o| o == p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pw"), "admin").expect("pw");
    rt.block_on(async {
        // (a) in process.
        let hosts: Vec<(String, u16)> = (0..tasks).map(|_| ("127.0.0.1".to_string(), 1)).collect();
        let text = plan(&hosts, 1, 256);
        if part("a") {
        let (el, steps, _) = run_once(&text, dir.path(), Arc::new(InstantConnector), true, counter(0)).await;
        let group = steps as f64 / el.as_secs_f64();
        println!(
            "(a) {tasks} tasks, {steps} steps, 256 in flight, instant appliances, group commit: {:.2} s = {group:.0} steps/s",
            el.as_secs_f64()
        );
        let small = (tasks / 10).max(100);
        let hosts_small: Vec<(String, u16)> = hosts[..small].to_vec();
        let text_small = plan(&hosts_small, 1, 256);
        let (el, steps, _) = run_once(&text_small, dir.path(), Arc::new(InstantConnector), false, counter(0)).await;
        let single = steps as f64 / el.as_secs_f64();
        println!(
            "(a) floor: {small} tasks, {steps} steps, one fsynced commit per record: {:.2} s = {single:.0} steps/s",
            el.as_secs_f64()
        );
        println!("(a) floor 50000 steps/s: {}", if group >= 50_000.0 { "met" } else { "NOT met" });
        }

        // (c) resume of an interrupted run.
        if part("c") {
        let c = counter((steps_per_task() * tasks as u64) / 2);
        let (_, _, store) = run_once(&text, dir.path(), Arc::new(InstantConnector), true, c).await;
        let state = store.path().to_path_buf();
        drop(store);
        let first = counter(0);
        let t0 = Instant::now();
        let store = Arc::new(RedbStore::open(&state).expect("reopen"));
        let journal: Arc<dyn Journal> = store.clone();
        let report = Engine::builder(journal, Arc::new(InstantConnector), Arc::new(SystemClock))
            .options(RunOptions { ignore_window: true, ..RunOptions::default() })
            .observe(first.clone())
            .resume(store.as_ref(), 1)
            .await
            .expect("resume");
        let to_first = first.first.lock().ok().and_then(|f| *f).map(|f| f - t0);
        println!(
            "(c) resume of an interrupted {tasks}-task run: first new step after {:.1} ms (whole resume {:.2} s, ended {})",
            to_first.map(|d| d.as_secs_f64() * 1e3).unwrap_or(f64::NAN),
            t0.elapsed().as_secs_f64(),
            report.status.as_str()
        );
        println!(
            "(c) floor 0.5 s: {}",
            if to_first.is_some_and(|d| d < Duration::from_millis(500)) { "met" } else { "NOT met" }
        );
        }

        // (b) over HTTP against the simulator: 256 devices, tasks spread over them.
        if !part("b") {
            return;
        }
        let mut fleet = String::from("[defaults]\nuser = \"admin\"\npassword = \"admin\"\nquiesce_delay = \"0s\"\nunquiesce_delay = \"0s\"\ndomains = [\"default\", \"DOMAIN1\"]\n");
        for i in 0..256 {
            let _ = write!(fleet, "[[device]]\nname = \"D{i:05}\"\n");
        }
        let sim = dpplan::sim::serve(
            &dpplan::sim::Fleet::parse(&fleet).expect("fleet"),
            "127.0.0.1".parse().expect("ip"),
            false,
        )
        .await
        .expect("sim");
        let hosts: Vec<(String, u16)> = sim
            .devices
            .iter()
            .map(|d| ("127.0.0.1".to_string(), d.addr.port()))
            .collect();
        let per = tasks.div_ceil(256);
        let text = plan(&hosts, per, 256);
        let (el, steps, store) = run_once(&text, dir.path(), Arc::new(SomaConnector), true, counter(0)).await;
        let http = steps as f64 / el.as_secs_f64();
        println!(
            "(b) {} tasks on 256 simulated devices over HTTP, {steps} steps: {:.2} s = {http:.0} steps/s ({} commits)",
            per * 256,
            el.as_secs_f64(),
            store.commits()
        );
        // (b) has no floor: a real appliance takes 50 ms or more a request, so the client's
        // CPU per request never limits a backup; `cargo bench --bench fleet` measures what does.
        let _ = http;
    });
}

fn steps_per_task() -> u64 {
    4
}
