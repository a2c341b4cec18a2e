//! Benchmark: the journal's durable step throughput, with group commit and without.
//!
//! 256 concurrent tokio tasks share 10,000 tasks x 6 steps; each step appends its intent and
//! its result, durable (fsynced) when the append returns. Two shapes: one append holding the
//! pair (60,000 appends), and the engine's real shape, an append for the intent and another
//! for the result (120,000 appends). Each is run with group commit and with one commit per
//! append. The state file lives under the target directory (a real disk, real fsyncs).
//!
//! Run: `cargo bench --bench journal` (`-- --tasks N --steps S --inflight W --repeat R` for
//! other sizes; group-commit modes run R times, 5 by default, and report the median).
//! Figures go in docs/performance.md.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dpplan::store::{
    History, Journal, NewRun, Record, RedbStore, RunId, StepOutcome, TaskRecord, TaskStatus,
};

struct Args {
    tasks: u32,
    steps: u32,
    inflight: u32,
    repeat: u32,
}

fn args() -> Args {
    let mut a = Args {
        tasks: 10_000,
        steps: 6,
        inflight: 256,
        repeat: 5,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse().ok());
        match (argv[i].as_str(), value) {
            ("--tasks", Some(v)) => a.tasks = v,
            ("--steps", Some(v)) => a.steps = v,
            ("--inflight", Some(v)) => a.inflight = v,
            ("--repeat", Some(v)) => a.repeat = v,
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

const STEPS: [&str; 6] = [
    "validate",
    "pre_script",
    "quiesce",
    "backup",
    "unquiesce",
    "post_script",
];

struct Outcome {
    elapsed: Duration,
    commits: u64,
    appends: u64,
    run: RunId,
    /// Still open: the crash child dies holding it.
    store: Arc<RedbStore>,
}

async fn run(a: &Args, path: &Path, group: bool, split: bool) -> Outcome {
    let store = RedbStore::open(path).unwrap();
    store.set_group_commit(group);
    let tasks = (1..=a.tasks)
        .map(|id| TaskRecord {
            id,
            activity: 1,
            action: "SECURE_BACKUP".into(),
            device: format!("GW{id:05}"),
            domain: "all-domains".into(),
            status: TaskStatus::Pending,
            reason: None,
        })
        .collect();
    let id = store
        .create_run(NewRun {
            plan: "bench".into(),
            started: Utc::now(),
            plan_text: String::new(),
            plan_hash: String::new(),
            graph: String::new(),
            activities: Vec::new(),
            tasks,
        })
        .await
        .unwrap();
    let store = Arc::new(store);
    let before = store.commits();
    let next = Arc::new(AtomicU32::new(1));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.inflight {
        let store = Arc::clone(&store);
        let next = Arc::clone(&next);
        let (total, steps) = (a.tasks, a.steps);
        workers.push(tokio::spawn(async move {
            let mut appends = 0u64;
            loop {
                let task = next.fetch_add(1, Ordering::Relaxed);
                if task > total {
                    return appends;
                }
                for s in 0..steps {
                    let step = STEPS[s as usize % STEPS.len()].to_string();
                    let intent = Record::StepIntent {
                        task,
                        step: step.clone(),
                        attempt: 1,
                        at: Utc::now(),
                    };
                    let result = Record::StepResult {
                        task,
                        step,
                        attempt: 1,
                        outcome: StepOutcome::Succeeded,
                        error: None,
                        at: Utc::now(),
                        retry: false,
                    };
                    if split {
                        store.append(id, vec![intent]).await.unwrap();
                        store.append(id, vec![result]).await.unwrap();
                        appends += 2;
                    } else {
                        store.append(id, vec![intent, result]).await.unwrap();
                        appends += 1;
                    }
                }
            }
        }));
    }
    let mut appends = 0;
    for w in workers {
        appends += w.await.unwrap();
    }
    let elapsed = start.elapsed();
    Outcome {
        elapsed,
        commits: store.commits() - before,
        appends,
        run: id,
        store,
    }
}

/// Times what `resume` does first: open the state file, find the run, fold its journal.
fn reopen(path: &Path, what: &str) {
    assert!(path.exists(), "{}", path.display());
    let start = Instant::now();
    let store = RedbStore::open(path).unwrap();
    let opened = start.elapsed();
    let id = store.runs(None, 1).unwrap()[0].id;
    let detail = store.run(id).unwrap();
    let total = start.elapsed();
    let steps: usize = detail.tasks.iter().map(|t| t.steps.len()).sum();
    let size = std::fs::metadata(path).unwrap().len();
    println!(
        "{what}: open {:.1} ms, open + run() folding {} steps {:.1} ms (file {:.1} MiB)",
        opened.as_secs_f64() * 1e3,
        steps,
        total.as_secs_f64() * 1e3,
        size as f64 / (1024.0 * 1024.0)
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The child of the crash measurement: write the whole workload, then die without
    // closing the file, as kill -9 would leave it.
    if let Some(path) = crash_path() {
        let open = rt.block_on(run(&a, &path, true, true));
        assert!(open.store.commits() > 0);
        std::process::abort();
    }
    let steps = f64::from(a.tasks) * f64::from(a.steps);
    println!(
        "journal: {} tasks x {} steps, {} in flight; intent + result durable per step",
        a.tasks, a.steps, a.inflight
    );
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>14} {:>12}",
        "mode", "time", "appends", "commits", "appends/commit", "steps/s"
    );
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for (split, shape) in [(false, "pair in one append"), (true, "intent, then result")] {
        for (group, label) in [(true, "group commit"), (false, "commit per append")] {
            // Group commit is fast enough to repeat (fsync latency on a shared disk varies);
            // the median of the repeats is reported, the spread on the line below.
            let repeats = if group { a.repeat.max(1) } else { 1 };
            let mut runs = Vec::new();
            for r in 0..repeats {
                let path = dir.path().join(format!("state-{split}-{group}-{r}.redb"));
                let o = rt.block_on(run(&a, &path, group, split));
                assert!(o.run >= 1);
                runs.push(o);
            }
            runs.sort_by_key(|o| o.elapsed);
            let fastest = runs[0].elapsed;
            let slowest = runs[runs.len() - 1].elapsed;
            let o = runs.swap_remove(runs.len() / 2);
            drop(runs);
            drop(o.store);
            if repeats > 1 {
                label_spread(repeats, steps, fastest, slowest);
            }
            println!(
                "{:<40} {:>9.2}s {:>10} {:>10} {:>14.1} {:>12.0}",
                format!("{shape}, {label}"),
                o.elapsed.as_secs_f64(),
                o.appends,
                o.commits,
                o.appends as f64 / o.commits.max(1) as f64,
                steps / o.elapsed.as_secs_f64()
            );
        }
    }
    reopen(
        &dir.path().join("state-true-true-0.redb"),
        "after a clean close",
    );

    let crashed = dir.path().join("crashed.redb");
    let status = Command::new(std::env::current_exe().unwrap())
        .arg("--crash")
        .arg(&crashed)
        .args([
            "--tasks",
            &a.tasks.to_string(),
            "--steps",
            &a.steps.to_string(),
        ])
        .args(["--inflight", &a.inflight.to_string()])
        .status()
        .unwrap();
    assert!(!status.success(), "the crash child exited cleanly");
    reopen(&crashed, "after an abort (redb repairs)");
}

fn label_spread(repeats: u32, steps: f64, fastest: Duration, slowest: Duration) {
    println!(
        "  ({repeats} runs: {:.0} to {:.0} steps/s; median below)",
        steps / slowest.as_secs_f64(),
        steps / fastest.as_secs_f64()
    );
}

fn crash_path() -> Option<PathBuf> {
    let argv: Vec<String> = std::env::args().collect();
    let i = argv.iter().position(|a| a == "--crash")?;
    argv.get(i + 1).map(PathBuf::from)
}
