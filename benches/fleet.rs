//! Fleet-scale benchmark (docs/performance.md, "Fleet scale"): what a user feels. 1,000
//! simulated appliances that take `latency` (50 ms) to answer every request, a secure backup
//! of each (small files), `max_parallel = 64`, through the real client, engine and state
//! file. Measured against the ideal: every request's latency, spread over 64 lanes (the
//! transfers of 1 KiB files are negligible). Floor: within 1.05 x the ideal; peak RSS (the
//! whole process, simulator included) under 128 MiB.
//!
//! `cargo bench --bench fleet`; `DPPLAN_BENCH_DEVICES=200` for a quick run,
//! `DPPLAN_BENCH_LATENCY=50ms`.

use dpplan::check::{self, Root};
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Engine, Observer, RunOptions, RunStart};
use dpplan::soma::SomaConnector;
use dpplan::store::{Journal, RedbStore, TaskStatus};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

const LANES: u32 = 64;

/// When the run's tasks existed (the probe and expansion done).
struct Started(std::sync::Mutex<Option<Instant>>);

impl Observer for Started {
    fn run(&self, _run: &RunStart<'_>) {
        if let Ok(mut s) = self.0.lock() {
            *s = Some(Instant::now());
        }
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let devices: usize = std::env::var("DPPLAN_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let latency = std::env::var("DPPLAN_BENCH_LATENCY").unwrap_or_else(|_| "50ms".into());
    let latency_s = dpplan::sim::fleet::parse_duration(&latency)
        .expect("latency")
        .as_secs_f64();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut fleet = format!(
            "[defaults]\nuser = \"admin\"\npassword = \"admin\"\nlatency = \"{latency}\"\nbackup_file_size = \"1KiB\"\n"
        );
        for i in 0..devices {
            let _ = write!(fleet, "[[device]]\nname = \"D{i:05}\"\n");
        }
        let sim = dpplan::sim::serve(
            &dpplan::sim::Fleet::parse(&fleet).expect("fleet"),
            "127.0.0.1".parse().expect("ip"),
            false,
        )
        .await
        .expect("sim");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("pw"), "admin").expect("pw");
        std::fs::create_dir_all(dir.path().join("store")).expect("store");
        let mut text = format!(
            "import \"std/datapower\"\nsettings {{ max_parallel = {LANES} }}\nstore \"store\" {{}}\ninventory {{\n  defaults {{\n    user = \"admin\"\n    password = file(\"pw\")\n    tls = false\n  }}\n"
        );
        for d in &sim.devices {
            let _ = writeln!(
                text,
                "  device \"{}\" {{ host = \"127.0.0.1\"  port = {} }}",
                d.name,
                d.addr.port()
            );
        }
        text.push_str("}\nplan \"fleet\" {\n  activity secure_backup {\n    devices = \"D*\"\n    cert = \"backup-cert\"\n  }\n}\n");
        let path = dir.path().join("fleet.dpplan");
        std::fs::write(&path, &text).expect("plan");
        let checked = check::check(&Root::Path(path));
        assert!(!checked.has_errors(), "{:?}", checked.diagnostics.first());
        let store = Arc::new(RedbStore::open(&dir.path().join("state.redb")).expect("state"));
        let journal: Arc<dyn Journal> = store.clone();
        let engine = Engine::new(
            Arc::new(checked.program),
            "fleet",
            journal,
            Arc::new(SomaConnector),
            Arc::new(SystemClock),
            RunOptions {
                ignore_window: true,
                ..RunOptions::default()
            },
        );
        let started = Arc::new(Started(std::sync::Mutex::new(None)));
        let engine = engine.observe(started.clone());
        let t = Instant::now();
        let report = engine.run(&text).await.expect("run");
        let took = t.elapsed().as_secs_f64();
        let probe = started
            .0
            .lock()
            .ok()
            .and_then(|s| *s)
            .map(|s| (s - t).as_secs_f64())
            .unwrap_or(0.0);
        println!("fleet: probe and expansion {probe:.2} s, tasks {:.2} s", took - probe);
        assert!(
            report.tasks.iter().all(|t| t.status == TaskStatus::Succeeded),
            "{:?}",
            report.tasks.iter().find(|t| t.status != TaskStatus::Succeeded)
        );
        let requests: u64 = sim
            .devices
            .iter()
            .map(|d| d.state().expect("state").ops.values().sum::<u64>())
            .sum();
        let ideal = requests as f64 * latency_s / f64::from(LANES);
        let ratio = took / ideal;
        let rss = peak_rss_kib() / 1024;
        println!(
            "fleet: {devices} appliances at {latency} a request, secure backup each, max_parallel {LANES}: {took:.2} s; {requests} requests, ideal {ideal:.2} s; ratio {ratio:.3} (floor 1.05: {}); peak RSS {rss} MiB (floor 128: {})",
            if ratio <= 1.05 { "met" } else { "NOT met" },
            if rss < 128 { "met" } else { "NOT met" },
        );
    });
}
