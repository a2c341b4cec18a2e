//! `dpplan plan`, `dpplan graph` and `dpplan run`.

use super::codes::{EXIT_FAILED, EXIT_OK};
use super::output::{color_stderr, out};
use super::progress::{Progress, Say};
use super::render::Human;
use super::report::{json_out, open_writer};
use super::screen::{Stream, UtcArg};
use super::CliError;
use crate::check::{self, Checked, Program};
use crate::compile::{PlanGraph, Task};
use crate::engine::clock::{Clock, SystemClock};
use crate::engine::{Engine, RunOptions, RunReport};
use crate::report::plan::{dry_run_text, PlanView};
use crate::report::table::{Column, Table, Tone};
use crate::soma::SomaConnector;
use crate::store::RunStatus;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Exit code of `run`/`resume`: the run was interrupted and can be resumed.
pub const EXIT_INTERRUPTED: u8 = 4;
/// Exit code of `run`/`resume`: the run ended WARNING.
pub const EXIT_WARNING: u8 = 5;

/// Which plan of a file, and the file.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The plan file.
    pub file: PathBuf,
    /// The plan to use, when the file has several.
    #[arg(long = "plan")]
    pub plan: Option<String>,
}

/// `dpplan plan`.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub utc: UtcArg,
}

/// Graph formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// `dpplan graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// The run graph expanded against the live fleet, instead of the kinds' templates.
    #[arg(long)]
    pub expanded: bool,
}

/// `dpplan run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The state file (default: $DPPLAN_STATE, else $XDG_STATE_HOME/dpplan/state.redb, else
    /// ~/.local/state/dpplan/state.redb).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Fail at once (exit 1) when another process writes the state file, instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Run even outside the plan's maintenance window.
    #[arg(long)]
    pub ignore_window: bool,
    /// Only the tasks of devices matching PATTERN (`*`, `?`; repeat or separate with commas).
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Print the outcome as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress lines (for cron).
    #[arg(long)]
    pub quiet: bool,
}

/// The checker's warnings that a run must repeat every time (cron runs never see `check`):
/// certificate verification off (DP0033) and plain HTTP (DP0034), as
/// `warning DP0033: ... (fleet.dpplan:7:5)`.
pub(crate) fn safety_warnings(checked: &Checked) -> Vec<String> {
    use crate::diag::Code;
    checked
        .diagnostics
        .iter()
        .filter(|d| matches!(d.code, Code::TlsInsecure | Code::PlainHttp))
        .map(|d| {
            let at = d
                .span
                .map(|sp| {
                    let f = checked.sources.get(sp.file);
                    let (l, c) = f.line_col(sp.start);
                    format!(" ({}:{l}:{c})", f.name)
                })
                .unwrap_or_default();
            format!("warning {}: {}{at}", d.code.as_str(), d.message)
        })
        .collect()
}

/// Who runs this command and how, for the first line of a run's log: user, host, the
/// command line, and the plan file with its SHA-256 when there is one.
pub(crate) fn origin(plan_file: Option<&Path>) -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid {}", rustix::process::getuid().as_raw()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    // Arguments may not be UTF-8 (paths): shown lossily, never a panic.
    let command: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut s = format!("{user}@{host}: {}", command.join(" "));
    if let Some(f) = plan_file {
        let shown = std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf());
        match std::fs::read(f) {
            Ok(bytes) => {
                use sha2::Digest;
                let hash = hex::encode(sha2::Sha256::digest(&bytes));
                s.push_str(&format!(" (plan file {}, sha256 {hash})", shown.display()));
            }
            Err(_) => s.push_str(&format!(" (plan file {})", shown.display())),
        }
    }
    s
}

/// The state file to use: `--state`, else `$DPPLAN_STATE`, else
/// `$XDG_STATE_HOME/dpplan/state.redb`, else `~/.local/state/dpplan/state.redb` (docs/cli.md): the same history whatever directory a command starts in.
pub fn state_path(arg: Option<&Path>) -> PathBuf {
    if let Some(p) = arg {
        return p.to_path_buf();
    }
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("DPPLAN_STATE") {
        return p;
    }
    // The XDG base directory spec: a relative value is invalid and ignored.
    let state_home = var("XDG_STATE_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| var("HOME").map(|h| h.join(".local").join("state")));
    match state_home {
        Some(dir) => dir.join("dpplan").join("state.redb"),
        // No HOME at all: the current directory, as before.
        None => PathBuf::from(".dpplan").join("state.redb"),
    }
}

/// The async runtime the engine, serve, the simulator and the demo's fleet run on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Checks the file and picks the plan; on errors in the file, renders them. The file is named
/// by its absolute path, so paths in the plan (scripts, the store, secrets) and the plan text
/// stored with a run do not depend on the directory the command was started in.
pub(crate) fn load(args: &PlanArgs) -> Result<(Checked, String), CliError> {
    let checked = check::check_file(&args.file);
    if checked.has_errors() {
        let h = Human::new(&checked.sources, color_stderr());
        for d in &checked.diagnostics {
            eprint!("{}", h.render(d));
        }
        return Err(CliError::PlanErrors {
            path: args.file.clone(),
        });
    }
    let plan = match (&args.plan, checked.program.plans.as_slice()) {
        (Some(p), _) if checked.program.plan(p).is_some() => p.clone(),
        (Some(p), plans) => {
            let names: Vec<&str> = plans.iter().map(|x| x.name.as_str()).collect();
            return Err(CliError::usage(format!(
                "{} has no plan `{p}` (plans: {})",
                args.file.display(),
                names.join(", ")
            )));
        }
        (None, [one]) => one.name.clone(),
        (None, []) => {
            return Err(CliError::usage(format!(
                "{} defines no plan",
                args.file.display()
            )));
        }
        (None, plans) => {
            let names: Vec<&str> = plans.iter().map(|x| x.name.as_str()).collect();
            return Err(CliError::usage(format!(
                "{} defines several plans; choose one with --plan ({})",
                args.file.display(),
                names.join(", ")
            )));
        }
    };
    Ok((checked, plan))
}

fn engine(
    program: Program,
    plan: &str,
    journal: Arc<dyn crate::store::Journal>,
    options: RunOptions,
) -> Engine {
    Engine::new(
        Arc::new(program),
        plan,
        journal,
        Arc::new(SomaConnector),
        Arc::new(SystemClock),
        options,
    )
}

/// Probes the fleet and expands plan `plan` into its tasks and graph, touching nothing (the
/// journal is in memory).
fn expand(
    program: &Program,
    plan: &str,
) -> Result<(Vec<Task>, crate::compile::PlanGraph), CliError> {
    let rt = runtime()?;
    let journal = Arc::new(crate::store::memory::MemoryJournal::new());
    let e = engine(program.clone(), plan, journal, RunOptions::default());
    Ok(rt.block_on(e.expand())?)
}

/// `dpplan plan`: expansion against the live fleet, changing nothing.
pub fn dry_run(args: DryRunArgs) -> Result<u8, CliError> {
    let (checked, plan) = load(&args.plan)?;
    let (tasks, _) = expand(&checked.program, &plan)?;
    let now = SystemClock.now();
    let view = PlanView::new(&checked.program, &plan, &tasks, now);
    if args.json {
        json_out(&view)?;
    } else {
        out(&dry_run_text(
            &view,
            checked.program.plan(&plan),
            now,
            Stream::Stdout.fit(),
            args.utc.utc,
        ))?;
    }
    Ok(EXIT_OK)
}

/// `dpplan graph`.
pub fn graph(args: GraphArgs) -> Result<u8, CliError> {
    let (checked, plan) = load(&args.plan)?;
    let g = if args.expanded {
        expand(&checked.program, &plan)?.1
    } else {
        templates(&checked.program, &plan)
    };
    out(&match args.format {
        GraphFormat::Dot => g.to_dot(),
        GraphFormat::Mermaid => g.to_mermaid(),
    })?;
    Ok(EXIT_OK)
}

/// The step templates of the kinds a plan uses, as one graph (one chain per kind).
fn templates(program: &Program, plan: &str) -> PlanGraph {
    use crate::compile::{Target, TaskStep};
    let mut tasks = Vec::new();
    let Some(p) = program.plan(plan) else {
        return crate::compile::graph(&dummy_plan(), &[]);
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, a) in p.activities.iter().enumerate() {
        let Some(k) = program.kinds.get(&a.kind) else {
            continue;
        };
        if !seen.insert(k.name.clone()) {
            continue;
        }
        let steps: Vec<TaskStep> = k
            .steps
            .iter()
            .enumerate()
            .map(|(j, s)| TaskStep {
                name: s.name.clone(),
                call: s.call.clone(),
                always: s.always,
                undo: s.undo.clone(),
                policy: p.on_failure.clone(),
                timeout_ms: s.timeout_ms,
                after: if s.after.is_empty() {
                    if j == 0 {
                        vec![]
                    } else {
                        vec![j - 1]
                    }
                } else {
                    s.after
                        .iter()
                        .filter_map(|n| k.steps.iter().position(|x| &x.name == n))
                        .collect()
                },
                phase: 0,
            })
            .collect();
        tasks.push(Task {
            id: tasks.len() as u32 + 1,
            activity: i as u32 + 1,
            kind: k.name.clone(),
            action: k.action.clone(),
            device: format!("<{}>", k.name),
            target: Target::Device,
            skipped: None,
            failed: None,
            params: Default::default(),
            steps: steps.into(),
        });
    }
    crate::compile::graph(p, &tasks)
}

fn dummy_plan() -> crate::check::Plan {
    crate::check::Plan {
        name: String::new(),
        window: None,
        on_failure: crate::check::Policy::Stop,
        stages: crate::check::Stages::Pipelined,
        on_window_close: crate::check::OnWindowClose::Cancel,
        pre_plan: None,
        post_plan: None,
        activities: Vec::new(),
        schedule: None,
        notify: Vec::new(),
    }
}

/// What a run's final status makes of the command (docs/cli.md, "Result pages"): its exit
/// code, or a failure already shown by the run's table or JSON.
pub fn status_outcome(status: RunStatus) -> Result<u8, CliError> {
    match status {
        RunStatus::Completed => Ok(EXIT_OK),
        RunStatus::Warning => Ok(EXIT_WARNING),
        RunStatus::Interrupted => Ok(EXIT_INTERRUPTED),
        _ => Err(CliError::Reported(EXIT_FAILED)),
    }
}

/// Prints a run's outcome (table on stderr, or JSON on stdout); what its status makes of the
/// command.
pub fn report(r: &RunReport, json: bool) -> Result<u8, CliError> {
    if json {
        // The report's own serialization: the same shape as `DPPLAN_TASKS` and the API.
        json_out(r)?;
    } else {
        let mut table = Table::new(vec![
            Column::right("ID"),
            Column::whole("ACTION"),
            Column::left("DEVICE"),
            Column::left("DOMAIN"),
            Column::right("FILES"),
            Column::whole("STATUS"),
            Column::left("ERROR"),
        ]);
        for t in &r.tasks {
            let status = t.status.as_str();
            table.toned_row(vec![
                (t.id.to_string(), Tone::Plain),
                (t.action.clone(), Tone::Plain),
                (t.device.clone(), Tone::Plain),
                (t.domain.clone(), Tone::Plain),
                (t.files.len().to_string(), Tone::Plain),
                (status.to_string(), Tone::of_status(status)),
                (t.error.clone().unwrap_or_default(), Tone::Plain),
            ]);
        }
        if !r.tasks.is_empty() {
            eprint!("{}", table.render(Stream::Stderr.fit()));
        }
        match (&r.error, r.status) {
            (_, RunStatus::Interrupted) => eprintln!(
                "run {}: INTERRUPTED; `dpplan resume {}` continues it",
                r.run, r.run
            ),
            (Some(e), _) => eprintln!(
                "run {}: {} ({})",
                r.run,
                r.status.as_str(),
                crate::report::table::printable(e, false)
            ),
            (None, _) => eprintln!("run {}: {}", r.run, r.status.as_str()),
        }
    }
    status_outcome(r.status)
}

/// `dpplan run`.
pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let (checked, plan) = load(&args.plan)?;
    let path = state_path(args.state.as_deref());
    if !args.devices.is_empty() {
        let p = checked.program.plan(&plan);
        let selected = p
            .map(|p| crate::compile::devices_to_probe(&checked.program, p))
            .unwrap_or_default();
        for pattern in &args.devices {
            if !selected
                .iter()
                .any(|(d, _)| crate::check::patterns::matches(pattern, d))
            {
                let names: Vec<&str> = selected.iter().map(|(d, _)| *d).take(8).collect();
                return Err(CliError::usage(format!(
                    "--devices {pattern} matches no device of plan {plan} (its devices: {}{})",
                    names.join(", "),
                    if selected.len() > names.len() {
                        ", ..."
                    } else {
                        ""
                    }
                )));
            }
        }
    }
    let warnings = safety_warnings(&checked);
    for w in &warnings {
        eprintln!("{w}");
    }
    let options = RunOptions {
        ignore_window: args.ignore_window,
        devices: args.devices.clone(),
        origin: Some(origin(Some(&args.plan.file))),
        warnings,
        ..RunOptions::default()
    };
    let ended = run_checked(checked, &plan, &path, options, args.quiet, args.no_wait)?;
    let outcome = report(&ended.report, args.json);
    ended.deliver(args.quiet);
    outcome
}

/// A run that has ended (its outcome durable, its notifications queued), and what delivers
/// the notifications after its outcome is shown.
pub(crate) struct Ended {
    /// What the run came to.
    pub report: RunReport,
    rt: tokio::runtime::Runtime,
    store: Arc<crate::store::RedbStore>,
    interrupts: tokio::task::JoinHandle<()>,
}

impl Ended {
    /// Delivers what the state file's outbox has due, for a few seconds at most
    /// (docs/notifications.md); never changes the run's exit code.
    pub fn deliver(self, quiet: bool) {
        // Interrupts now cut the delivery short, not the process (the run is over).
        self.interrupts.abort();
        super::notify::deliver(&self.rt, self.store, quiet);
    }
}

/// Runs plan `plan` of a checked program with the state file at `path`, showing progress on
/// stderr (live on a terminal) unless `quiet`; waits for another writer of the state file
/// unless `no_wait`.
pub(crate) fn run_checked(
    checked: Checked,
    plan: &str,
    path: &Path,
    options: RunOptions,
    quiet: bool,
    no_wait: bool,
) -> Result<Ended, CliError> {
    let text = checked.stored_text();
    run_program(checked.program, plan, &text, path, options, quiet, no_wait)
}

/// Runs plan `plan` of `program` (its text stored with the run) with the state file at
/// `path`: what `run_checked` and `retry` share.
pub(super) fn run_program(
    program: Program,
    plan: &str,
    text: &str,
    path: &Path,
    options: RunOptions,
    quiet: bool,
    no_wait: bool,
) -> Result<Ended, CliError> {
    let store = Arc::new(open_writer(path, no_wait)?);
    let rt = runtime()?;
    let keep = (program.settings.keep_runs, program.settings.keep_days);
    let mut e = engine(program, plan, store.clone(), options);
    let progress = Progress::new(quiet);
    if let Some(o) = progress.observer() {
        e = e.observe(o);
    }
    let live = e.live();
    let say = progress.sayer();
    let (outcome, interrupts) = rt.block_on(async {
        let interrupts = tokio::spawn(interrupts(live, say));
        let outcome = e.run(text).await;
        if outcome.is_ok() {
            // Journal retention (`keep_runs`, `keep_days`): the plan's old finished runs go.
            let now = chrono::Utc::now();
            if let Err(err) =
                crate::store::retention::apply(&store, plan, keep.0, keep.1, now).await
            {
                eprintln!("warning: journal retention: {err}");
            }
        }
        (outcome, interrupts)
    });
    progress.finish();
    // The journal failing (a full disk) or an unreadable stored run is failed work: exit 1.
    let report = outcome?;
    Ok(Ended {
        report,
        rt,
        store,
        interrupts,
    })
}

/// First SIGINT/SIGTERM: no new step starts, running steps and owed `always` steps finish.
/// Second: exit at once, naming what is left quiesced; `dpplan resume` puts things right.
pub(super) async fn interrupts(live: Arc<crate::engine::Live>, say: Say) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        seen += 1;
        if seen == 1 {
            live.interrupt();
            say("interrupt: finishing running steps and releasing quiesced appliances; interrupt again to exit at once");
        } else {
            let killed = live.kill_scripts();
            if killed > 0 {
                say(&format!(
                    "interrupt: killed {killed} running hook script(s)"
                ));
            }
            let held: Vec<String> = live
                .quiesced()
                .iter()
                .map(|h| crate::report::table::printable(h, false))
                .collect();
            say(&forced_exit_message(live.run(), &held));
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    }
}

/// What a forced exit says: what is left quiesced, and the command that releases it.
fn forced_exit_message(run: Option<crate::store::RunId>, quiesced: &[String]) -> String {
    let resume = match run {
        Some(r) => format!("`dpplan resume {r}`"),
        None => "`dpplan resume`".to_string(),
    };
    if quiesced.is_empty() {
        format!("interrupt: exiting now; nothing is left quiesced; {resume} completes the run")
    } else {
        format!(
            "interrupt: exiting now; left quiesced (or quiescing): {}; {resume} releases them and completes the run",
            quiesced.join(", ")
        )
    }
}
