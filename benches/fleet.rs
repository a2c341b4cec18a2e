//! Fleet-scale benchmark (docs/performance.md, "Fleet scale"): what a user feels. 1,000
//! simulated appliances that take `latency` (50 ms) to answer every request, a secure backup
//! of each (small files), `max_parallel = 64`, through the real client, engine and state
//! file. Measured against the ideal: every request's latency, spread over 64 lanes (the
//! transfers of 1 KiB files are negligible), the requests being those the simulator counted.
//! Floor: within 1.05 x the ideal; peak RSS (the whole process, simulator included) under
//! 128 MiB.
//!
//! Since a task asks some of its requests together (a backup's files, 4 at a time), a lane
//! can carry more than one request at once, and the time can beat that ideal. So the bench
//! also reports the round trips each appliance waited for in sequence (timed from the
//! engine's side: every call to the appliance goes through [`Traced`]), and the time over
//! those round trips spread over the 64 lanes: what remains of the engine's, the client's
//! and the simulator's own overhead.
//!
//! `cargo bench --bench fleet`; `DPPLAN_BENCH_DEVICES=192` for a quick run (three full rounds),
//! `DPPLAN_BENCH_LATENCY=50ms`; `DPPLAN_BENCH_TRACE=1` adds each call's timing by operation.

use dpplan::appliance::{
    Appliance, ApplianceError, DomainStatus, Downloaded, Firmware, QuiesceState, QuiesceTarget,
    RemoteFile,
};
use dpplan::check::{self, Device, Root};
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Connector, Engine, Observer, RunOptions, RunStart};
use dpplan::soma::SomaConnector;
use dpplan::store::{Journal, RedbStore, TaskStatus};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// One appliance call as the engine saw it: device, operation, start and end.
type Call = (String, &'static str, Instant, Instant);

/// Every appliance call, timed from the engine's side.
#[derive(Default)]
struct Trace(std::sync::Mutex<Vec<Call>>);

impl Trace {
    async fn time<T>(
        &self,
        device: &str,
        op: &'static str,
        f: impl std::future::Future<Output = T>,
    ) -> T {
        let start = Instant::now();
        let r = f.await;
        let end = Instant::now();
        if let Ok(mut calls) = self.0.lock() {
            calls.push((device.to_string(), op, start, end));
        }
        r
    }

    /// The round trips of each appliance that waited on one another: the longest chain of
    /// its calls, each begun after the one before it ended, in the probe phase plus in its
    /// task. Calls shorter than half the latency made no request (the firmware the client
    /// kept from the probe).
    fn round_trips(&self, latency: Duration, tasks_from: Option<Instant>) -> Vec<u64> {
        let Ok(calls) = self.0.lock() else {
            return Vec::new();
        };
        let mut by_dev: BTreeMap<(&str, bool), Vec<(Instant, Instant)>> = BTreeMap::new();
        for (d, _, s, e) in calls.iter() {
            if *e - *s < latency / 2 {
                continue;
            }
            let task = tasks_from.is_some_and(|t| *s >= t);
            by_dev.entry((d, task)).or_default().push((*s, *e));
        }
        let mut trips: BTreeMap<&str, u64> = BTreeMap::new();
        for ((d, _), mut v) in by_dev {
            v.sort();
            let mut depth: Vec<u64> = Vec::with_capacity(v.len());
            for (i, (s, _)) in v.iter().enumerate() {
                let before = (0..i).filter(|&j| v[j].1 <= *s).map(|j| depth[j]).max();
                depth.push(before.unwrap_or(0) + 1);
            }
            *trips.entry(d).or_default() += depth.into_iter().max().unwrap_or(0);
        }
        trips.into_values().collect()
    }

    /// `DPPLAN_BENCH_TRACE`: each operation's calls, timed (ms).
    fn by_operation(&self) {
        let Ok(calls) = self.0.lock() else { return };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut by_op: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (_, op, s, e) in calls.iter() {
            by_op.entry(op).or_default().push(ms(*e - *s));
        }
        println!("trace: appliance calls as the engine saw them (ms)");
        for (op, mut v) in by_op {
            v.sort_by(f64::total_cmp);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            println!(
                "  {op:<18} n {:>6}  mean {mean:>7.2}  p50 {:>7.2}  p90 {:>7.2}  p99 {:>7.2}  max {:>7.2}",
                v.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(1.0)
            );
        }
    }
}

/// An appliance whose every call is timed into a [`Trace`].
struct Traced {
    inner: Arc<dyn Appliance>,
    trace: Arc<Trace>,
}

#[async_trait::async_trait]
impl Appliance for Traced {
    fn device(&self) -> &str {
        self.inner.device()
    }
    async fn probe(&self) -> Result<(), ApplianceError> {
        self.trace
            .time(self.inner.device(), "probe", self.inner.probe())
            .await
    }
    async fn firmware(&self) -> Result<Firmware, ApplianceError> {
        self.trace
            .time(self.inner.device(), "firmware", self.inner.firmware())
            .await
    }
    async fn domains(&self) -> Result<Vec<DomainStatus>, ApplianceError> {
        self.trace
            .time(self.inner.device(), "domains", self.inner.domains())
            .await
    }
    async fn free_temporary(&self) -> Result<u64, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "free_temporary",
                self.inner.free_temporary(),
            )
            .await
    }
    async fn certificate_exists(&self, name: &str) -> Result<bool, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "certificate_exists",
                self.inner.certificate_exists(name),
            )
            .await
    }
    async fn quiesce(
        &self,
        target: &QuiesceTarget,
        timeout: Duration,
    ) -> Result<(), ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "quiesce",
                self.inner.quiesce(target, timeout),
            )
            .await
    }
    async fn unquiesce(&self, target: &QuiesceTarget) -> Result<(), ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "unquiesce",
                self.inner.unquiesce(target),
            )
            .await
    }
    async fn quiesce_state(&self, target: &QuiesceTarget) -> Result<QuiesceState, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "quiesce_state",
                self.inner.quiesce_state(target),
            )
            .await
    }
    async fn observed_quiesce_state(
        &self,
        target: &QuiesceTarget,
    ) -> Result<Option<QuiesceState>, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "quiesce_state",
                self.inner.observed_quiesce_state(target),
            )
            .await
    }
    async fn save_config(&self, domain: &str) -> Result<(), ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "save_config",
                self.inner.save_config(domain),
            )
            .await
    }
    async fn secure_backup(&self, cert: &str, destination: &str) -> Result<(), ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "secure_backup",
                self.inner.secure_backup(cert, destination),
            )
            .await
    }
    async fn list_directory(&self, dir: &str) -> Result<Vec<RemoteFile>, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "list_directory",
                self.inner.list_directory(dir),
            )
            .await
    }
    async fn download(&self, path: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "download",
                self.inner.download(path, dest),
            )
            .await
    }
    async fn download_at_most(
        &self,
        path: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<Downloaded, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "download",
                self.inner.download_at_most(path, dest, max_bytes),
            )
            .await
    }
    async fn remove_directory(&self, dir: &str) -> Result<(), ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "remove_directory",
                self.inner.remove_directory(dir),
            )
            .await
    }
    async fn export_domain(
        &self,
        domain: &str,
        persisted: bool,
        comment: &str,
        dest: &Path,
    ) -> Result<Downloaded, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "export_domain",
                self.inner.export_domain(domain, persisted, comment, dest),
            )
            .await
    }
    async fn export_all(&self, comment: &str, dest: &Path) -> Result<Downloaded, ApplianceError> {
        self.trace
            .time(
                self.inner.device(),
                "export_all",
                self.inner.export_all(comment, dest),
            )
            .await
    }
}

/// The SOMA connector, its clients wrapped in [`Traced`].
struct TracingConnector(Arc<Trace>);

impl Connector for TracingConnector {
    fn connect(&self, device: &Device) -> Result<Arc<dyn Appliance>, String> {
        Ok(Arc::new(Traced {
            inner: SomaConnector.connect(device)?,
            trace: self.0.clone(),
        }))
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
        let trace = Arc::new(Trace::default());
        let connector: Arc<dyn Connector> = Arc::new(TracingConnector(trace.clone()));
        let engine = Engine::new(
            Arc::new(checked.program),
            "fleet",
            journal,
            connector,
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
        let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
        for d in &sim.devices {
            for (op, n) in d.state().expect("state").ops {
                *by_op.entry(op).or_default() += n;
            }
        }
        let requests: u64 = by_op.values().sum();
        let per_device = |n: u64| n as f64 / devices as f64;
        println!(
            "fleet: requests per appliance {:.2}: {}",
            per_device(requests),
            by_op
                .iter()
                .map(|(op, n)| format!("{op} {:.2}", per_device(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let tasks_from = started.0.lock().ok().and_then(|s| *s);
        let trips = trace.round_trips(Duration::from_secs_f64(latency_s), tasks_from);
        // The fewest any appliance needed is what the client's requests require; more, on
        // some, comes of calls of uneven length (a file begun when a quick one ended, and the
        // next one after it).
        let fewest = trips.iter().copied().min().unwrap_or(0);
        let mean = trips.iter().sum::<u64>() as f64 / trips.len().max(1) as f64;
        println!("fleet: round trips in sequence per appliance: at least {fewest} (mean {mean:.2})");
        if std::env::var_os("DPPLAN_BENCH_TRACE").is_some() {
            trace.by_operation();
        }
        let ideal = requests as f64 * latency_s / f64::from(LANES);
        let ratio = took / ideal;
        let trips_ideal = (fewest * devices as u64) as f64 * latency_s / f64::from(LANES);
        let rss = peak_rss_kib() / 1024;
        println!(
            "fleet: {devices} appliances at {latency} a request, secure backup each, max_parallel {LANES}: {took:.2} s; {requests} requests, ideal {ideal:.2} s; ratio {ratio:.3} (floor 1.05: {}); peak RSS {rss} MiB (floor 128: {})",
            if ratio <= 1.05 { "met" } else { "NOT met" },
            if rss < 128 { "met" } else { "NOT met" },
        );
        println!(
            "fleet: {fewest} round trips in sequence per appliance, spread over {LANES} lanes: {trips_ideal:.2} s; time over it {:.3}",
            took / trips_ideal
        );
    });
}
