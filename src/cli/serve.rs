//! `dpplan serve`: the daemon in the foreground (systemd runs it; docs/deploy.md). Log lines
//! go to stderr; SIGHUP reloads the plans; the first SIGTERM/SIGINT stops gracefully, a
//! second exits at once naming what is left quiesced.

use super::codes::EXIT_OK;
use super::error::{self, CliError};
use super::render::Human;
use super::report::open_writer;
use super::run::{runtime, safety_warnings, state_path};
use crate::check::Checked;
use crate::engine::clock::{Clock, ShiftedClock, SystemClock};
use crate::serve::{Config, Rejected, Reporter, Server};
use crate::soma::SomaConnector;
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8642";

/// `dpplan serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Plan files, or directories of *.dpplan files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Where the HTTP API listens. Beyond loopback it needs a token and TLS.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The state file (default: $DPPLAN_STATE, else $XDG_STATE_HOME/dpplan/state.redb, else
    /// ~/.local/state/dpplan/state.redb).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// A file holding the API's bearer token (else $DPPLAN_TOKEN); every POST needs it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The TLS certificate chain (PEM) of the API.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM) of the API.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// Log lines on stderr, each behind its UTC time.
struct Stderr;

impl Reporter for Stderr {
    fn say(&self, line: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        for l in line.lines() {
            eprintln!("{now} {l}");
        }
    }

    fn diagnostics(&self, checked: &Checked) -> String {
        let h = Human::new(&checked.sources, false);
        checked.diagnostics.iter().map(|d| h.render(d)).collect()
    }
}

/// The token: `--token-file` (its first line), else `$DPPLAN_TOKEN`; `Err` says what is wrong.
fn token(file: Option<&Path>) -> Result<Option<String>, String> {
    let Some(f) = file else {
        return Ok(std::env::var("DPPLAN_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()));
    };
    let text =
        std::fs::read_to_string(f).map_err(|e| format!("--token-file {}: {e}", f.display()))?;
    let t = text.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        return Err(format!("--token-file {}: the file is empty", f.display()));
    }
    Ok(Some(t))
}

/// The clock: the system's, or for trying schedules, one that reads `$DPPLAN_TEST_NOW`
/// (RFC 3339) at start.
fn clock() -> Result<Arc<dyn Clock>, String> {
    match std::env::var("DPPLAN_TEST_NOW") {
        Ok(v) if !v.is_empty() => chrono::DateTime::parse_from_rfc3339(&v)
            .map(|t| Arc::new(ShiftedClock::starting_at(t.to_utc())) as Arc<dyn Clock>)
            .map_err(|e| format!("DPPLAN_TEST_NOW={v}: {e}")),
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// `dpplan serve`.
pub fn serve(args: ServeArgs) -> Result<u8, CliError> {
    let token = token(args.token_file.as_deref()).map_err(CliError::Usage)?;
    let clock = clock().map_err(CliError::Usage)?;
    let path = state_path(args.state.as_deref());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io("cannot create", dir, e))?;
    }
    let store = Arc::new(open_writer(&path, false)?);
    let rt = runtime()?;
    let reporter: Arc<dyn Reporter> = Arc::new(Stderr);
    let config = Config {
        paths: args.paths,
        listen: args.listen,
        store,
        token,
        tls: args.tls_cert.zip(args.tls_key),
        connector: Arc::new(SomaConnector),
        clock,
        warnings: safety_warnings,
    };
    rt.block_on(async move {
        // Listening for the signals before anything else: a SIGHUP that came before would
        // end the process (its default action), e.g. `systemctl reload` just after a start.
        let Some(signals_) = Signals::new() else {
            return Err(CliError::internal("cannot listen for signals"));
        };
        let server = match Server::start(config, reporter.clone()).await {
            Ok(s) => s,
            Err((e, rejected)) => {
                // Each rejected file is reported; the error that ends serve comes last.
                for (file, why) in rejected {
                    match why {
                        Rejected::Errors(checked) => {
                            let h = Human::new(&checked.sources, super::output::color_stderr());
                            for d in &checked.diagnostics {
                                eprint!("{}", h.render(d));
                            }
                            error::print(&CliError::PlanErrors { path: file });
                        }
                        Rejected::Other(why) => error::print(&CliError::Failed(why)),
                    }
                }
                return Err(e.into());
            }
        };
        signals(server, reporter, signals_).await
    })
}

/// The signals serve answers.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Option<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Some(Signals {
            hup: signal(SignalKind::hangup()).ok()?,
            term: signal(SignalKind::terminate()).ok()?,
            int: signal(SignalKind::interrupt()).ok()?,
        })
    }
}

/// SIGHUP reloads; the first SIGTERM/SIGINT stops gracefully, a second exits at once.
async fn signals(
    server: Server,
    reporter: Arc<dyn Reporter>,
    signals: Signals,
) -> Result<u8, CliError> {
    let Signals {
        mut hup,
        mut term,
        mut int,
    } = signals;
    loop {
        tokio::select! {
            _ = hup.recv() => server.reload(),
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    reporter.say(
        "stopping: no new run starts; running runs finish their steps and release what they hold",
    );
    let daemon = server.daemon().clone();
    let stopping = tokio::spawn(server.stop());
    tokio::select! {
        _ = stopping => {
            reporter.say("stopped");
            Ok(EXIT_OK)
        }
        _ = term.recv() => forced(&daemon, &reporter),
        _ = int.recv() => forced(&daemon, &reporter),
    }
}

fn forced(daemon: &crate::serve::Daemon, reporter: &Arc<dyn Reporter>) -> ! {
    let held = daemon.quiesced();
    if held.is_empty() {
        reporter.say("exiting now; nothing is left quiesced; the next start resumes the runs");
    } else {
        reporter.say(&format!(
            "exiting now; left quiesced (or quiescing): {}; the next start (or `dpplan resume`) releases them",
            held.join(", ")
        ));
    }
    std::process::exit(i32::from(super::run::EXIT_INTERRUPTED))
}
