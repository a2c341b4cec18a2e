//! `dpplan restore` (a one-off restore plan built from a plan file's inventory and store),
//! `dpplan backups` (the store's catalogue) and `dpplan diff` (two domain exports compared).

use super::codes::EXIT_OK;
use super::error::CliError;
use super::output::out;
use super::report::{json_out, open_state, StateArg};
use super::run::{report, run_checked, state_path};
use super::screen::Stream;
use crate::backups::catalogue::{self, EXPORT_DOMAIN};
use crate::backups::export;
use crate::engine::RunOptions;
use crate::report::diff::ExportDiff;
use crate::report::{self as rep, Zone};
use crate::store::History;
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// `dpplan restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The plan file whose inventory and store the restore uses.
    pub file: PathBuf,
    /// The device to restore.
    #[arg(long)]
    pub device: String,
    /// The domain to import into; without it, a secure restore of the whole device.
    #[arg(long)]
    pub domain: Option<String>,
    /// Which backup: a run's number, or a path (an export ZIP, a secure backup's folder);
    /// default: the newest in the store.
    #[arg(long, value_name = "RUN|PATH")]
    pub from: Option<String>,
    /// The crypto identification credential of a secure restore.
    #[arg(long, value_name = "NAME")]
    pub cred: Option<String>,
    /// The dry run alone: show what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Change the device without asking.
    #[arg(long)]
    pub yes: bool,
    /// Print the run's outcome as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub state: StateArg,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// The plan text of the one-off restore.
fn restore_plan(args: &RestoreArgs, name: &str, dry_run_only: bool) -> Result<String, CliError> {
    let from = match &args.from {
        None => "latest".to_string(),
        Some(f) if f.parse::<u64>().is_ok() => format!("run({f})"),
        Some(f) => {
            let p =
                std::path::absolute(f).map_err(|e| CliError::usage(format!("--from {f}: {e}")))?;
            format!("path({})", quoted(&p.display().to_string()))
        }
    };
    let device = quoted(&args.device);
    let activity = match &args.domain {
        Some(d) => format!(
            "activity import_domain {{\n    devices = {device}\n    domains = {}\n    from = {from}\n    dry_run_only = {dry_run_only}\n  }}",
            quoted(d)
        ),
        None => {
            let cred = args.cred.as_deref().ok_or_else(|| {
                CliError::usage("a secure restore (no --domain) needs --cred NAME: the crypto identification credential matching the backup's certificate")
            })?;
            let kind = if dry_run_only {
                "secure_restore_drill"
            } else {
                "secure_restore"
            };
            let confirm = if dry_run_only {
                String::new()
            } else {
                format!("\n    confirm = {device}")
            };
            format!(
                "activity {kind} {{\n    devices = {device}\n    from = {from}\n    cred = {}{confirm}\n  }}",
                quoted(cred)
            )
        }
    };
    Ok(format!(
        "\n# ==== dpplan restore ====\nimport \"std/datapower\"\nplan {} {{\n  on_failure = stop\n  {activity}\n}}\n",
        quoted(name)
    ))
}

/// Checks the plan file with the restore plan added, and runs it.
fn run_restore(args: &RestoreArgs, dry_run_only: bool) -> Result<(u8, u64), CliError> {
    let text = crate::check::load::read_plan_file(&args.file)
        .map_err(|e| CliError::usage(format!("{}: {e}", args.file.display())))?;
    let mut name = match &args.domain {
        Some(d) => format!("restore {} {d}", args.device),
        None => format!("restore {}", args.device),
    };
    if dry_run_only {
        name.push_str(" (dry run)");
    }
    let base = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = crate::check::Root::Text {
        name: args.file.display().to_string(),
        text: format!("{text}{}", restore_plan(args, &name, dry_run_only)?),
        base,
    };
    let checked = crate::check::check(&root);
    if checked.has_errors() {
        let lines: Vec<String> = checked
            .diagnostics
            .iter()
            .filter(|d| d.severity() == crate::diag::Severity::Error)
            .map(|d| format!("{}: {}", d.code, d.message))
            .collect();
        return Err(CliError::usage(format!(
            "the restore plan does not check: {}",
            lines.join("; ")
        )));
    }
    let options = RunOptions {
        ignore_window: true,
        origin: Some(format!("dpplan restore {}", args.file.display())),
        ..RunOptions::default()
    };
    let path = state_path(args.state.state.as_deref());
    let ended = run_checked(checked, &name, &path, options, args.quiet, false)?;
    let run = ended.report.run;
    let code = report(&ended.report, args.json)?;
    ended.deliver(true);
    if !args.json {
        let store = open_state(&args.state)?;
        let detail = store.run(run)?;
        let look = Stream::Stdout.look(Zone::Local);
        for t in &detail.tasks {
            if let Some(page) = rep::TaskPage::new(&detail, t.task.id) {
                for i in &page.imports {
                    out(&format!("\n{}", i.render(look)))?;
                }
            }
        }
    }
    Ok((code, run))
}

/// `dpplan restore`.
pub fn restore(args: RestoreArgs) -> Result<u8, CliError> {
    if args.dry_run {
        return run_restore(&args, true).map(|(code, _)| code);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "a restore changes {}: pass --yes to go ahead (or --dry-run to see what it would change)",
                args.device
            )));
        }
        let (code, _) = run_restore(&args, true)?;
        if code != EXIT_OK {
            return Ok(code);
        }
        let what = match &args.domain {
            Some(d) => format!("domain {d} of {}", args.device),
            None => format!("the whole of {} (type its name)", args.device),
        };
        eprint!("\nRestore {what}? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        let answer = answer.trim();
        let yes = match &args.domain {
            Some(_) => answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes"),
            None => answer == args.device,
        };
        if !yes {
            eprintln!("nothing changed");
            return Ok(EXIT_OK);
        }
    }
    run_restore(&args, false).map(|(code, _)| code)
}

/// `dpplan backups`.
#[derive(Debug, Args)]
pub struct BackupsArgs {
    /// Only this device's backups.
    pub device: Option<String>,
    /// Only this domain's exports.
    #[arg(long)]
    pub domain: Option<String>,
    /// The store's root (default: the store of the newest run's plan).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Print the catalogue as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArg,
}

/// How many of the newest runs `dpplan backups` reads for restores and drills.
const DRILL_RUNS: usize = 500;

/// The store of the newest run in the state file.
fn newest_store(state: &StateArg) -> Result<PathBuf, CliError> {
    let store = open_state(state)?;
    let Some(run) = store.runs(None, 1)?.into_iter().next() else {
        return Err(CliError::usage(
            "no runs in the state file to find the store by; name it with --store DIR",
        ));
    };
    let stored = store.stored_run(run.id)?;
    crate::engine::stored_store_root(&stored).ok_or_else(|| {
        CliError::usage(format!(
            "run {}'s plan has no store; name one with --store DIR",
            run.id
        ))
    })
}

/// `dpplan backups`.
pub fn backups(args: BackupsArgs) -> Result<u8, CliError> {
    let root = match &args.store {
        Some(s) => s.clone(),
        None => newest_store(&args.state)?,
    };
    if !root.is_dir() {
        return Err(CliError::usage(format!(
            "{}: no such store folder",
            root.display()
        )));
    }
    let (entries, unreadable) = catalogue::scan(&root);
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| args.device.as_ref().is_none_or(|d| &e.manifest.device == d))
        .filter(|e| args.domain.as_ref().is_none_or(|d| &e.manifest.domain == d))
        .collect();
    // What restores and drills said of each backup, from the state file when there is one.
    let path = state_path(args.state.state.as_deref());
    let drills = if path.is_file() {
        let store = open_state(&args.state)?;
        rep::catalogue::last_drills(&store, DRILL_RUNS)?
    } else {
        Default::default()
    };
    let view = rep::catalogue::catalogue_view(&root, &entries, &unreadable, &drills);
    if args.json {
        json_out(&view)?;
    } else if view.backups.is_empty() {
        eprintln!("no backups in {}", root.display());
    } else {
        out(&view.render(Stream::Stdout.look(Zone::Local)))?;
    }
    for (p, why) in &unreadable {
        eprintln!("warning: {}: {why}", p.display());
    }
    Ok(EXIT_OK)
}

/// `dpplan diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// An export: a ZIP path, or RUN:DEVICE:DOMAIN (the export run RUN wrote).
    pub a: String,
    /// The other export (same forms); with --live, none.
    #[arg(required_unless_present = "live")]
    pub b: Option<String>,
    /// Compare A with the domain's running configuration on the appliance (a fresh export).
    #[arg(long, conflicts_with = "b")]
    pub live: bool,
    /// With --live and a path: the plan file whose inventory reaches the device (default: the
    /// inventory of the newest run).
    #[arg(long = "plan", value_name = "FILE")]
    pub plan_file: Option<PathBuf>,
    /// Print the differences as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArg,
}

/// A fresh export of the running configuration of the domain export `a` is of, into `dir`.
fn live_export(
    args: &DiffArgs,
    a: &export::ExportContent,
    dir: &Path,
) -> Result<PathBuf, CliError> {
    let run = args
        .a
        .split(':')
        .next()
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|_| !Path::new(&args.a).exists());
    let program = match (&args.plan_file, run) {
        (Some(f), _) => {
            let checked = crate::check::check_file(f);
            if checked.has_errors() {
                return Err(CliError::usage(format!(
                    "{}: does not check (dpplan check {} says why)",
                    f.display(),
                    f.display()
                )));
            }
            checked.program
        }
        (None, Some(run)) => {
            let store = open_state(&args.state)?;
            crate::engine::stored_program(&store.stored_run(run)?)
                .ok_or_else(|| CliError::usage(format!("run {run} stored no program")))?
        }
        (None, None) => {
            let store = open_state(&args.state)?;
            let Some(newest) = store.runs(None, 1)?.into_iter().next() else {
                return Err(CliError::usage(
                    "no runs to take the inventory from: name a plan file with --plan FILE",
                ));
            };
            crate::engine::stored_program(&store.stored_run(newest.id)?)
                .ok_or_else(|| CliError::usage("the newest run stored no program"))?
        }
    };
    let device = program.device(&a.device).ok_or_else(|| {
        CliError::usage(format!(
            "the export is of device {:?}, which the inventory does not have",
            a.device
        ))
    })?;
    let app = crate::engine::Connector::connect(&crate::soma::SomaConnector, device)
        .map_err(CliError::usage)?;
    let dest = dir.join("live.zip");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(e.to_string()))?;
    rt.block_on(app.export_domain(&a.domain, false, "dpplan diff --live", &dest))
        .map_err(|e| CliError::failed(e.to_string()))?;
    Ok(dest)
}

/// A ZIP path, or the export `RUN:DEVICE:DOMAIN` names.
fn export_path(spec: &str, state: &StateArg, scratch: &Path) -> Result<PathBuf, CliError> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let mut parts = spec.splitn(3, ':');
    let (Some(Ok(run)), Some(device), Some(domain)) = (
        parts.next().map(str::parse::<u64>),
        parts.next(),
        parts.next(),
    ) else {
        return Err(CliError::usage(format!(
            "{spec}: neither an existing file nor RUN:DEVICE:DOMAIN"
        )));
    };
    let store = open_state(state)?;
    let stored = store.stored_run(run)?;
    let root = crate::engine::stored_store_root(&stored)
        .ok_or_else(|| CliError::usage(format!("run {run}'s plan has no store")))?;
    let chosen = catalogue::choose(
        &root,
        device,
        Some(domain),
        &crate::check::BackupRef::Run(run),
    )
    .map_err(CliError::failed)?;
    match chosen.entry {
        // An all-domains export holds the domain's own inside.
        Some(e) if e.manifest.action == EXPORT_DOMAIN => {
            let copy = scratch.join(format!("{run}-{}.zip", crate::backups::sanitize(domain)));
            export::domain_export(&chosen.path, domain, &copy)
                .map_err(|e| CliError::failed(format!("{}: {e}", chosen.path.display())))
        }
        _ => Err(CliError::failed(format!("{spec}: not a domain export"))),
    }
}

/// `dpplan diff`: exit 0 when equal, 1 when different, 2 on trouble, like diff(1).
pub fn diff(args: DiffArgs) -> Result<u8, CliError> {
    let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
    let read = |spec: &str| -> Result<(PathBuf, export::ExportContent), CliError> {
        let p = export_path(spec, &args.state, tmp.path())?;
        let c = export::read(&p).map_err(|e| CliError::usage(format!("{}: {e}", p.display())))?;
        Ok((p, c))
    };
    // Trouble is 2 here, as diff(1) has it: 1 means "different".
    let trouble = |e: CliError| match e.code() {
        1 => CliError::usage(e.to_string()),
        _ => e,
    };
    let (pa, a) = read(&args.a).map_err(trouble)?;
    let (pb, b) = match &args.b {
        Some(b) => read(b).map_err(trouble)?,
        None => {
            let live = live_export(&args, &a, tmp.path()).map_err(trouble)?;
            let c = export::read(&live)
                .map_err(|e| CliError::usage(format!("the live export: {e}")))?;
            let name = format!("{}:{} (running)", a.device, a.domain);
            (PathBuf::from(name), c)
        }
    };
    let d = ExportDiff::between(&a, &b);
    if args.json {
        json_out(&d)?;
    } else {
        out(&d.render(&pa.display().to_string(), &pb.display().to_string()))?;
    }
    Ok(if d.is_empty() { EXIT_OK } else { 1 })
}
