//! Benchmark of the dashboard: how soon the page of a 1,000-task run is interactive in
//! headless Chromium.
//!
//! A plan of 1,000 devices (one secure backup each) is run once by the real engine against
//! in-process instant appliances, into a new state file; `dpplan::serve::Server` is started
//! on it in process, and headless Chromium (chromedriver, as the tests drive it) opens
//! `/runs/{id}` several times. For each load the browser's own clock gives: the first byte of
//! the answer (`responseStart`), `domInteractive`, `DOMContentLoaded`'s end, `load`'s end,
//! and "interactive": when the page's script has run after DOMContentLoaded (times in the
//! browser's zone, the confirmations wired) and its live stream (`/api/events`) is open
//! (`window.dpplanReady`). All from the navigation's start, in ms; the median of the loads.
//! Also the page's size and the time serve takes to render it (over HTTP, without a browser).
//! Floor (docs/performance.md): interactive in under 1 s.
//!
//! Run: `cargo bench --bench dashboard` (`-- --tasks N` devices and tasks, `--loads N`).
//! Needs Debian's `chromium` and `chromium-driver`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/support/browser.rs"]
mod browser;

use dpplan::check::{self, Checked, Root};
use dpplan::engine::clock::SystemClock;
use dpplan::engine::{Connector, Engine, RunOptions};
use dpplan::serve::{Config, Reporter, Server};
use dpplan::sim::instant::InstantAppliance;
use dpplan::soma::SomaConnector;
use dpplan::store::{RedbStore, RunStatus};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct InstantConnector;

impl Connector for InstantConnector {
    fn connect(
        &self,
        device: &dpplan::check::Device,
    ) -> Result<Arc<dyn dpplan::appliance::Appliance>, String> {
        Ok(Arc::new(InstantAppliance::new(&device.name)))
    }
}

struct Quiet;

impl Reporter for Quiet {
    fn say(&self, _: &str) {}
    fn diagnostics(&self, _: &Checked) -> String {
        String::new()
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let tasks = arg("--tasks", 1000);
    let loads = arg("--loads", 7);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pw"), "secret\n").unwrap();
    std::fs::create_dir_all(d.join("store")).unwrap();
    let mut plan = String::from("import \"std/datapower\"\nsettings { max_parallel = 64 }\n");
    let _ = writeln!(plan, "store \"{}\" {{}}", d.join("store").display());
    plan.push_str("inventory {\n  defaults {\n    password = file(\"pw\")\n    tls = false\n  }\n");
    for i in 1..=tasks {
        let _ = writeln!(
            plan,
            "  device \"DP{i:04}\" {{ host = \"dp{i}.example.com\"  port = 5550 }}"
        );
    }
    plan.push_str("}\nplan \"nightly\" {\n  activity secure_backup { devices = \"DP*\"  cert = \"backup-cert\"  quiesce = 60s }\n}\n");
    let file = d.join("nightly.dpplan");
    std::fs::write(&file, &plan).unwrap();
    let checked = check::check(&Root::Path(file.clone()));
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics.first());
    let program = Arc::new(checked.program);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = d.join("state.redb");
    let store = Arc::new(RedbStore::open(&state).unwrap());
    let t = Instant::now();
    let report = rt.block_on(
        Engine::new(
            program,
            "nightly",
            store.clone(),
            Arc::new(InstantConnector),
            Arc::new(SystemClock),
            RunOptions {
                ignore_window: true,
                ..RunOptions::default()
            },
        )
        .run(&plan),
    );
    let report = report.unwrap();
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.error);
    let run = report.run;
    println!(
        "a run of {tasks} tasks written by the engine in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let server = rt
        .block_on(Server::start(
            Config {
                paths: vec![file.clone()],
                listen: "127.0.0.1:0".parse().unwrap(),
                store,
                token: None,
                tls: None,
                connector: Arc::new(SomaConnector),
                clock: Arc::new(SystemClock),
                warnings: |_| Vec::new(),
            },
            Arc::new(Quiet),
        ))
        .map_err(|(e, _)| e)
        .unwrap();
    let url = format!("{}/runs/{run}", server.url());

    // The page over HTTP alone: its size and how long serve takes to answer it.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut served = Vec::new();
    let mut bytes = 0;
    for _ in 0..loads {
        let t = Instant::now();
        let body =
            rt.block_on(async { http.get(&url).send().await.unwrap().bytes().await.unwrap() });
        served.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = body.len();
    }
    println!(
        "GET /runs/{run}: {:.0} KiB of HTML, served in {:.1} ms (median of {loads})",
        bytes as f64 / 1024.0,
        median(served)
    );

    let b = rt.block_on(browser::Browser::start(1280, 900));
    let mut figures: Vec<[f64; 6]> = Vec::new();
    for _ in 0..loads {
        rt.block_on(async {
            b.client.goto(&url).await.unwrap();
            assert!(
                b.until(
                    "return typeof window.dpplanReady === 'number';",
                    Duration::from_secs(30)
                )
                .await,
                "the page never became interactive"
            );
            let rows = b
                .eval("return document.querySelectorAll('#task-table tbody tr').length;")
                .await;
            assert_eq!(rows.as_u64(), Some(tasks as u64));
            let v = b
                .eval(
                    "const n = performance.getEntriesByType('navigation')[0];\
                     return [n.responseStart, n.domInteractive, n.domContentLoadedEventEnd,\
                             n.loadEventEnd, window.dpplanReady, window.dpplanScripted];",
                )
                .await;
            let f = |i: usize| v[i].as_f64().unwrap();
            figures.push([f(0), f(1), f(2), f(3), f(4), f(5)]);
        });
    }
    let col = |i: usize| median(figures.iter().map(|f| f[i]).collect());
    println!(
        "/runs/{run} ({tasks} tasks) in headless Chromium, median of {loads} loads, ms from the navigation's start:"
    );
    println!(
        "  first byte {:.0}, domInteractive {:.0}, DOMContentLoaded {:.0}, load {:.0}, script done {:.0}, interactive (script run, live stream open) {:.0}",
        col(0),
        col(1),
        col(2),
        col(3),
        col(5),
        col(4)
    );
    let each: Vec<String> = figures.iter().map(|f| format!("{:.0}", f[4])).collect();
    println!(
        "  interactive at each load, in order (the first with nothing cached): {} ms",
        each.join(", ")
    );
    println!(
        "  floor < 1000 ms (the median): {}",
        if col(4) < 1000.0 { "met" } else { "NOT MET" }
    );
    rt.block_on(b.close());
    rt.block_on(server.stop());
}
