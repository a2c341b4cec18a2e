//! `dpplan demo`: the nightly example plan against an embedded simulated fleet (DPOD's
//! example: QA1-3 secure backups, TEST8's DOMAIN1 and DOMAIN2 exports, TEST9 down), in a
//! fresh directory, then the run's result pages. No setup, no network beyond loopback, no
//! environment variables. The directory is kept, with the fleet file, so the plan can be run
//! again against the same fleet; `--clean` removes the directories earlier demos kept.

use super::codes::{EXIT_FAILED, EXIT_OK};
use super::error::{self, CliError};
use super::report::{self, RunsArgs, ShowArgs, StateArg};
use super::run::{load, report as outcome_table, run_checked, runtime, PlanArgs};
use super::screen::UtcArg;
use crate::engine::RunReport;
use crate::sim::{self, Fleet, RunningFleet};
use crate::store::RunStatus;
use clap::Args;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// `dpplan demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Remove the directories earlier demos kept (plan, fleet, state, store), and run nothing.
    #[arg(long)]
    pub clean: bool,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
}

/// The demo plan, with `@INVENTORY@` where the started fleet's inventory goes.
const TEMPLATE: &str = include_str!("demo.dpplan.in");

/// The password every simulated device accepts; the plan reads it from the file `pw`.
const PASSWORD: &str = "demo-s3cret";

/// The prefix of the demo's directories, in the temporary directory.
const PREFIX: &str = "dpplan-demo-";

/// The file that marks a directory as a demo's: `--clean` removes only those.
const MARKER: &str = ".dpplan-demo";

/// The fleet file written into the demo's directory: [`FLEET`] on the ports the demo used.
const FLEET_FILE: &str = "fleet.toml";

/// DPOD's example fleet, with a little latency so the progress display has something to show.
const FLEET: &str = r#"
[defaults]
user = "backup"
password = "demo-s3cret"
quiesce_delay = "1200ms"
unquiesce_delay = "600ms"
backup_file_size = "2MiB"
certs = ["backup-cert"]
domains = ["default", "DOMAIN1", "DOMAIN2"]

[[device]]
name = "QA1"
[[device.fault]]
op = "get-file"
kind = "delay"
delay = "250ms"
times = 1000

[[device]]
name = "QA2"
[[device.fault]]
op = "get-file"
kind = "delay"
delay = "300ms"
times = 1000

[[device]]
name = "QA3"
[[device.fault]]
op = "get-file"
kind = "delay"
delay = "200ms"
times = 1000

[[device]]
name = "TEST8"
unsaved = ["DOMAIN2"]
[[device.fault]]
op = "do-export"
kind = "delay"
delay = "500ms"
times = 1000

[[device]]
name = "TEST9"
down = true
"#;

/// The hook scripts of the example plans.
const SCRIPTS: [(&str, &str); 4] = [
    (
        "pre-plan.sh",
        include_str!("../../plans/scripts/pre-plan.sh"),
    ),
    (
        "post-plan.sh",
        include_str!("../../plans/scripts/post-plan.sh"),
    ),
    (
        "pre-task.sh",
        include_str!("../../plans/scripts/pre-task.sh"),
    ),
    (
        "post-task.sh",
        include_str!("../../plans/scripts/post-task.sh"),
    ),
];

/// The inventory block for the started fleet: loopback, HTTPS verified against the
/// simulator's CA in `ca.pem`, the password read from the file `pw`.
fn inventory(fleet: &RunningFleet) -> String {
    let mut s = String::from(
        "inventory {\n  defaults {\n    user     = \"backup\"\n    password = file(\"pw\")  # secrets only through env() or file()\n    tls_ca   = \"ca.pem\"    # the simulator's CA: TLS is verified\n  }\n",
    );
    for d in &fleet.devices {
        s.push_str(&format!(
            "  device \"{}\" {{ host = \"{}\"  port = {} }}\n",
            d.name,
            d.connect_addr().ip(),
            d.addr.port()
        ));
    }
    s.push_str("}\n");
    s
}

/// [`FLEET`] with each device on the port it got, so `dpplan sim --fleet` serves the fleet
/// the demo's plan names.
fn fleet_file(fleet: &RunningFleet) -> String {
    let mut text = String::from(
        "# The demo's simulated fleet, on the ports its plan names. In this directory:\n\
         #   dpplan sim --fleet fleet.toml --tls --ca-out ca.pem\n\
         # then, while it runs: dpplan run demo.dpplan --state state.redb\n",
    );
    for line in FLEET.lines() {
        text.push_str(line);
        text.push('\n');
        let name = line
            .strip_prefix("name = \"")
            .and_then(|rest| rest.strip_suffix('"'));
        if let Some(d) = name.and_then(|n| fleet.device(n)) {
            text.push_str(&format!("port = {}\n", d.addr.port()));
        }
    }
    text
}

/// Writes the demo's files into `dir`: CA, password, scripts, store, fleet file and plan.
fn prepare(dir: &Path, fleet: &RunningFleet) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        dir.join(MARKER),
        "a directory `dpplan demo` made; `dpplan demo --clean` removes it\n",
    )?;
    std::fs::write(dir.join(FLEET_FILE), fleet_file(fleet))?;
    std::fs::write(dir.join("ca.pem"), fleet.ca_pem.as_deref().unwrap_or(""))?;
    std::fs::write(dir.join("pw"), format!("{PASSWORD}\n"))?;
    std::fs::set_permissions(dir.join("pw"), std::fs::Permissions::from_mode(0o600))?;
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    for (name, text) in SCRIPTS {
        let p = scripts.join(name);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::create_dir_all(dir.join("store"))?;
    let plan = dir.join("demo.dpplan");
    std::fs::write(&plan, TEMPLATE.replace("@INVENTORY@", &inventory(fleet)))?;
    Ok(plan)
}

/// `dpplan demo`.
pub fn demo(args: DemoArgs) -> Result<u8, CliError> {
    if args.clean {
        return clean();
    }
    let dir = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir()
        .map_err(|e| CliError::Failed(format!("cannot create a temporary directory: {e}")))?
        .keep();
    let outcome = demo_in(&dir, &args);
    println!(
        "\nThe demo's files stay in {} (`dpplan demo --clean` removes them).",
        dir.display()
    );
    outcome
}

/// `dpplan demo --clean`: removes every directory an earlier demo kept in the temporary
/// directory (named `dpplan-demo-*` and holding the demo's marker file), saying which.
fn clean() -> Result<u8, CliError> {
    let tmp = std::env::temp_dir();
    let entries = std::fs::read_dir(&tmp).map_err(|e| CliError::io("cannot read", &tmp, e))?;
    let mut kept: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|e| e.path())
        .filter(|p| p.join(MARKER).is_file())
        .collect();
    kept.sort();
    if kept.is_empty() {
        println!("no demo directories to remove in {}", tmp.display());
        return Ok(EXIT_OK);
    }
    // A directory that cannot be removed is reported and the others go on.
    let mut failed = false;
    for dir in kept {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => println!("removed {}", dir.display()),
            Err(e) => {
                error::print(&CliError::io("cannot remove", dir, e));
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Reported(EXIT_FAILED))
    } else {
        Ok(EXIT_OK)
    }
}

fn demo_in(dir: &Path, args: &DemoArgs) -> Result<u8, CliError> {
    // The fleet runs on its own runtime, beside the one `run` starts for the engine.
    let sim_rt = runtime()?;
    let fleet =
        Fleet::parse(FLEET).map_err(|e| CliError::internal(format!("the demo fleet: {e}")))?;
    let running = sim_rt
        .block_on(sim::serve(&fleet, IpAddr::V4(Ipv4Addr::LOCALHOST), true))
        .map_err(|e| CliError::failed(format!("cannot start the simulated fleet: {e}")))?;
    let outcome = with_fleet(dir, &running, args);
    sim_rt.block_on(running.shutdown());
    outcome
}

fn with_fleet(dir: &Path, fleet: &RunningFleet, args: &DemoArgs) -> Result<u8, CliError> {
    let plan_file = prepare(dir, fleet).map_err(|e| {
        // A full or read-only disk is the machine's state, not a bug: exit 1 (docs/cli.md).
        CliError::Failed(format!(
            "cannot write the demo's files in {}: {e}",
            dir.display()
        ))
    })?;
    let state = dir.join("state.redb");
    println!("dpplan demo: the nightly example plan against a simulated DataPower fleet");
    println!();
    println!("  directory  {}", dir.display());
    println!("  plan       {}", plan_file.display());
    println!("  state      {}", state.display());
    println!("  store      {}", dir.join("store").display());
    println!(
        "  fleet      {} (SOMA over HTTPS on loopback)",
        dir.join(FLEET_FILE).display()
    );
    for d in &fleet.devices {
        if d.down {
            println!("    {:<6} {} (down)", d.name, d.connect_addr());
        } else {
            println!("    {:<6} {}", d.name, d.url());
        }
    }
    println!();
    println!(
        "$ dpplan run {} --state {}",
        plan_file.display(),
        state.display()
    );
    let (checked, plan) = load(&PlanArgs {
        file: plan_file.clone(),
        plan: None,
    })?;
    let options = crate::engine::RunOptions {
        origin: Some(super::run::origin(Some(&plan_file))),
        ..crate::engine::RunOptions::default()
    };
    let r = run_checked(checked, &plan, &state, options, args.quiet, false)?.report;
    let outcome = outcome_table(&r, false);
    let outcome = match r.status {
        // DPOD's example ends WARNING: TEST9 is down, so its task is SKIPPED.
        RunStatus::Completed | RunStatus::Warning => Ok(EXIT_OK),
        _ => outcome,
    };
    pages(&r, &state);
    backups(&r, &dir.join("store"));
    outcome
}

/// The run's result pages, as `dpplan runs` and `dpplan show` print them.
fn pages(r: &RunReport, state: &Path) {
    let arg = || StateArg {
        state: Some(state.to_path_buf()),
    };
    let st = state.display();
    println!("\n$ dpplan runs --state {st}");
    // A page that cannot be shown says why, and the demo goes on.
    if let Err(e) = report::runs(RunsArgs {
        plan: None,
        limit: 40,
        json: false,
        utc: UtcArg { utc: false },
        state: arg(),
    }) {
        error::print(&e);
    }
    let views: [(Option<u32>, Option<u32>); 4] = [
        (None, None),
        (Some(1), None),
        (Some(2), None),
        (None, Some(1)),
    ];
    for (activity, task) in views {
        let mut line = format!("\n$ dpplan show {}", r.run);
        if let Some(a) = activity {
            line.push_str(&format!(" --activity {a}"));
        }
        if let Some(t) = task {
            line.push_str(&format!(" --task {t}"));
        }
        println!("{line} --state {st}");
        if let Err(e) = report::show(ShowArgs {
            run: r.run,
            activity,
            task,
            json: false,
            utc: UtcArg { utc: false },
            state: arg(),
        }) {
            error::print(&e);
        }
    }
    println!("\nThe activity log: dpplan log {} --state {st}", r.run);
}

/// Where the backups went.
fn backups(r: &RunReport, store: &Path) {
    println!("\nBackups in {}:", store.display());
    for t in &r.tasks {
        for f in &t.files {
            println!("  {f}");
        }
    }
}
