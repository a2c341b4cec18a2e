//! Progress of `run`, `resume` and `demo` on stderr: live lines on a terminal (indicatif), one
//! per running task, under a line of overall counts; plain log lines otherwise.
//!
//! Bytes and rate while downloading come from the store, not the engine: a ticker thread
//! stats the running tasks' files every 200 ms ([`crate::backups::task_bytes`]).

use crate::backups as output;
use crate::compile::Task;
use crate::engine::{Observer, RunStart};
use crate::store::{RunId, TaskStatus};
use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How the progress of a run is shown.
pub(crate) enum Progress {
    /// Nothing (`--quiet`).
    Quiet,
    /// One line per task status change (stderr is not a terminal).
    Lines,
    /// Live lines, redrawn in place.
    Live(Live),
}

impl Progress {
    /// Live lines when stderr is a terminal (and `TERM` is not `dumb`), else plain lines;
    /// nothing when `quiet`.
    pub(crate) fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        {
            Progress::Live(Live::new())
        } else {
            Progress::Lines
        }
    }

    /// The observer to give the engine.
    pub(crate) fn observer(&self) -> Option<Arc<dyn Observer>> {
        match self {
            Progress::Quiet => None,
            Progress::Lines => Some(Arc::new(Lines)),
            Progress::Live(l) => Some(l.inner.clone()),
        }
    }

    /// Prints a message on stderr, above the live lines if any.
    pub(crate) fn sayer(&self) -> Say {
        match self {
            Progress::Live(l) => {
                let mp = l.inner.mp.clone();
                Arc::new(move |m: &str| {
                    if mp.println(m).is_err() {
                        eprintln!("{m}");
                    }
                })
            }
            _ => Arc::new(|m: &str| eprintln!("{m}")),
        }
    }

    /// Clears the live lines (before the final table is printed).
    pub(crate) fn finish(self) {
        if let Progress::Live(l) = self {
            l.finish();
        }
    }
}

/// Prints one message on stderr without breaking the progress display.
pub(crate) type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// Progress as plain lines on stderr.
struct Lines;

impl Observer for Lines {
    fn task(&self, t: &Task, status: TaskStatus) {
        eprintln!(
            "task {} {} {} {}: {}",
            t.id,
            t.action,
            crate::report::table::printable(&t.device, false),
            crate::report::table::printable(t.target.domain_label(), false),
            status.as_str()
        );
    }
}

/// The live display and the thread that refreshes it.
pub(crate) struct Live {
    inner: Arc<Inner>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    mp: MultiProgress,
    overall: ProgressBar,
    state: Mutex<State>,
    stop: AtomicBool,
    since: Instant,
}

#[derive(Default)]
struct State {
    run: Option<RunId>,
    started: Option<DateTime<Utc>>,
    store: Option<PathBuf>,
    total: usize,
    skipped: usize,
    finished: BTreeMap<&'static str, usize>,
    width: (usize, usize),
    running: BTreeMap<u32, Running>,
}

struct Running {
    bar: ProgressBar,
    task: Task,
    step: String,
    since: Instant,
    step_since: Instant,
}

impl Live {
    fn new() -> Live {
        let mp = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let overall = mp.add(ProgressBar::new_spinner());
        overall.set_style(style());
        overall.set_message("probing the fleet");
        let inner = Arc::new(Inner {
            mp,
            overall,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            since: Instant::now(),
        });
        let tick = inner.clone();
        let ticker = std::thread::Builder::new()
            .name("dpplan-progress".into())
            .spawn(move || {
                while !tick.stop.load(Ordering::SeqCst) {
                    tick.refresh();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok();
        Live { inner, ticker }
    }

    fn finish(mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let state = self.inner.lock();
        for r in state.running.values() {
            r.bar.finish_and_clear();
        }
        drop(state);
        self.inner.overall.finish_and_clear();
        let _ = self.inner.mp.clear();
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Redraws every line: steps, elapsed times, bytes and rates.
    fn refresh(&self) {
        let state = self.lock();
        for r in state.running.values() {
            let bytes = match (&state.store, state.started) {
                (Some(root), Some(started)) => {
                    output::task_bytes(root, &r.task.device, &r.task.target, r.task.id, started)
                }
                _ => 0,
            };
            r.bar.set_message(task_line(&state, r, bytes));
            r.bar.tick();
        }
        self.overall.set_message(overall_line(&state, self.since));
        self.overall.tick();
    }
}

/// `QA1    all-domains  backup      0:03   12.0 MiB   4.0 MiB/s`
fn task_line(state: &State, r: &Running, bytes: u64) -> String {
    let (dw, mw) = state.width;
    let mut line = format!(
        "{:<dw$}  {:<mw$}  {:<11} {:>5}",
        crate::report::table::printable(&r.task.device, false),
        crate::report::table::printable(r.task.target.domain_label(), false),
        r.step,
        clock(r.since.elapsed()),
    );
    if bytes > 0 {
        let secs = r.step_since.elapsed().as_secs_f64().max(0.001);
        line.push_str(&format!(
            "  {:>10}  {:>10}/s",
            human_bytes(bytes as f64),
            human_bytes(bytes as f64 / secs)
        ));
    }
    line
}

/// `run 3: 6 tasks, 2 running, 3 succeeded, 1 skipped  0:05`
fn overall_line(state: &State, since: Instant) -> String {
    let Some(run) = state.run else {
        return format!("probing the fleet  {}", clock(since.elapsed()));
    };
    let mut parts = vec![format!("{} running", state.running.len())];
    for (status, n) in &state.finished {
        parts.push(format!("{n} {}", status.to_lowercase()));
    }
    if state.skipped > 0 {
        parts.push(format!("{} skipped", state.skipped));
    }
    format!(
        "run {run}: {} tasks, {}  {}",
        state.total,
        parts.join(", "),
        clock(since.elapsed())
    )
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Observer for Inner {
    fn run(&self, run: &RunStart<'_>) {
        let mut state = self.lock();
        state.run = Some(run.run);
        state.started = Some(run.started);
        state.store = run.store.map(PathBuf::from);
        state.total = run.tasks.len();
        state.skipped = run.tasks.iter().filter(|t| t.skipped.is_some()).count();
        let refused = run.tasks.iter().filter(|t| t.failed.is_some()).count();
        if refused > 0 {
            *state.finished.entry("FAILED").or_default() += refused;
        }
        state.width = run.tasks.iter().fold((6, 11), |(d, m), t| {
            (
                d.max(t.device.chars().count()),
                m.max(t.target.domain_label().chars().count()),
            )
        });
    }

    fn task(&self, t: &Task, status: TaskStatus) {
        let mut state = self.lock();
        if status == TaskStatus::Running {
            if state.running.contains_key(&t.id) {
                return;
            }
            let bar = self.mp.add(ProgressBar::new_spinner());
            bar.set_style(style());
            let now = Instant::now();
            let r = Running {
                bar,
                task: t.clone(),
                step: String::new(),
                since: now,
                step_since: now,
            };
            r.bar.set_message(task_line(&state, &r, 0));
            state.running.insert(t.id, r);
        } else if status.is_final() {
            if let Some(r) = state.running.remove(&t.id) {
                r.bar.finish_and_clear();
                self.mp.remove(&r.bar);
            }
            if status == TaskStatus::Skipped {
                // Tasks skipped at expansion were counted when the run began.
                if t.skipped.is_none() {
                    state.skipped += 1;
                }
            } else {
                *state.finished.entry(status.as_str()).or_default() += 1;
            }
        }
        self.overall.set_message(overall_line(&state, self.since));
    }

    fn step(&self, t: &Task, step: &str) {
        let mut state = self.lock();
        if let Some(r) = state.running.get_mut(&t.id) {
            r.step = step.to_string();
            r.step_since = Instant::now();
        }
    }
}
