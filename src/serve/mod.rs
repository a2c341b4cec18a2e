//! `dpplan serve`: the unattended mode. Loads and checks plans, schedules them, drives their
//! runs (one run of a plan at a time, one run per device at a time), resumes what a previous
//! process left unfinished, and answers the HTTP API (docs/serve.md) and the dashboard
//! (docs/dashboard.md).
//!
//! The library never prints: what the daemon has to say goes to a [`Reporter`] the CLI
//! provides.

pub mod api;
pub mod catalog;
pub mod daemon;
pub mod dashboard;
pub mod http;
pub mod metrics;
mod scheduler;
pub mod session;
mod shared;

use crate::check::Checked;
use crate::engine::clock::Clock;
use crate::engine::Connector;
use crate::store::RedbStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use catalog::{Catalog, Rejected};
pub use daemon::{Daemon, StartRequest};
pub use shared::{next_due, Event, Reporter, ServeError};

/// How serve is started.
pub struct Config {
    /// Plan files and directories.
    pub paths: Vec<PathBuf>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The state file, already open for writing.
    pub store: Arc<RedbStore>,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// PEM files of the TLS certificate chain and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How appliances are reached.
    pub connector: Arc<dyn Connector>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The warnings a run repeats in its log, picked from a check result.
    pub warnings: fn(&Checked) -> Vec<String>,
}

/// Delivers the outbox's notifications until the stop, logging each attempt.
async fn deliver(daemon: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    use crate::notify::AttemptResult;
    let reporter = daemon.reporter.clone();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let outcome = daemon
        .outbox
        .run(stopped, |pass| {
            for a in &pass.attempts {
                let what = match &a.result {
                    AttemptResult::Delivered => "delivered".to_string(),
                    AttemptResult::Failed { error, .. } => {
                        format!("attempt {} failed: {error}; tried again later", a.attempt)
                    }
                    AttemptResult::GaveUp { error } => {
                        format!("attempt {} failed: {error}; given up", a.attempt)
                    }
                };
                reporter.say(&format!(
                    "notify {} {} (run {}): {what}",
                    a.notifier, a.channel, a.run
                ));
            }
        })
        .await;
    if let Err(e) = outcome {
        reporter.say(&format!(
            "notifications stopped: the state file failed: {e}; the next start delivers them"
        ));
    }
}

/// A running serve.
pub struct Server {
    daemon: Arc<Daemon>,
    addr: SocketAddr,
    url: String,
    paths: Vec<PathBuf>,
    warnings: fn(&Checked) -> Vec<String>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Checks the plans (any file with errors: `Err` with the rejected files, nothing
    /// started), binds the listener, resumes unfinished runs, catches up on what fell due
    /// while serve was down, and starts the scheduler.
    pub async fn start(
        config: Config,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Server, (ServeError, Vec<(PathBuf, Rejected)>)> {
        let plain = |e: ServeError| (e, Vec::new());
        if !config.listen.ip().is_loopback() {
            if config.token.is_none() {
                return Err(plain(ServeError::Start(format!(
                    "listening on {} (beyond loopback) needs a token: --token-file or DPPLAN_TOKEN",
                    config.listen
                ))));
            }
            if config.tls.is_none() {
                return Err(plain(ServeError::Start(format!(
                    "listening on {} (beyond loopback) needs TLS: --tls-cert and --tls-key",
                    config.listen
                ))));
            }
        }
        let tls = match &config.tls {
            Some((cert, key)) => Some(http::tls_acceptor(cert, key).map_err(plain)?),
            None => None,
        };
        let files = catalog::files(&config.paths).map_err(|e| plain(ServeError::Start(e)))?;
        let (catalog, rejected) = catalog::load(&files, None, &config.warnings);
        if !rejected.is_empty() {
            return Err((
                ServeError::Start(
                    "the plans have errors; serve starts only with plans that check clean".into(),
                ),
                rejected,
            ));
        }
        if catalog.plans.is_empty() {
            return Err(plain(ServeError::Start(
                "no plan in the files given: name plan files or directories that hold them".into(),
            )));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| {
                plain(ServeError::Start(format!(
                    "cannot listen on {}: {e}",
                    config.listen
                )))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| plain(ServeError::Start(e.to_string())))?;
        let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
        let _ = config.store.announce_serve(&url);
        let daemon = Daemon::new(
            config.store.clone(),
            catalog,
            config.connector.clone(),
            config.clock.clone(),
            reporter.clone(),
        )
        .map_err(plain)?;
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let sessions = Arc::new(session::Sessions::default());
        let router = dashboard::router(Arc::new(dashboard::Dashboard {
            daemon: daemon.clone(),
            token: config.token.clone(),
            reads_need_sign_in: !config.listen.ip().is_loopback(),
            sessions: sessions.clone(),
            tls: tls.is_some(),
        }))
        .merge(api::router(Arc::new(api::Api {
            daemon: daemon.clone(),
            token: config.token.clone(),
            token_for_reads: !config.listen.ip().is_loopback(),
            stop: stop_rx.clone(),
            sessions,
        })));
        let mut tasks = vec![tokio::spawn(http::serve(
            listener,
            router,
            tls,
            stop_rx.clone(),
        ))];
        reporter.say(&format!(
            "dpplan serve: {} plan(s) from {} file(s); API on {url}",
            daemon.catalog().plans.len(),
            files.len()
        ));
        // Devices' last backups for /metrics: read in the background (seconds on a big
        // history), so the API answers at once.
        let scanning = daemon.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = scanning.metrics.scan(scanning.store.as_ref()) {
                scanning.reporter.say(&format!(
                    "metrics: cannot read the devices' last backups: {e}"
                ));
            }
        });
        match daemon.resume_unfinished().await {
            Ok(runs) if !runs.is_empty() => reporter.say(&format!(
                "resumed unfinished run(s): {}",
                runs.iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Ok(_) => {}
            Err(e) => reporter.say(&format!("cannot list unfinished runs: {e}")),
        }
        tasks.push(tokio::spawn(scheduler::run(
            daemon.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(deliver(daemon.clone(), stop_rx)));
        Ok(Server {
            daemon,
            addr,
            url,
            paths: config.paths,
            warnings: config.warnings,
            stop,
            tasks,
        })
    }

    /// Where the API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The daemon.
    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Re-reads the plans (SIGHUP): a file with errors keeps its plans' previous version and
    /// its problems are logged and shown in `/api/plans`.
    pub fn reload(&self) {
        let reporter = self.daemon.reporter.clone();
        let files = match catalog::files(&self.paths) {
            Ok(f) => f,
            Err(e) => {
                reporter.say(&format!("reload refused: {e}; the plans stay as they were"));
                return;
            }
        };
        let previous = self.daemon.catalog();
        let (mut catalog, rejected) = catalog::load(&files, Some(&previous), &self.warnings);
        for (file, why) in rejected {
            let text = match why {
                Rejected::Errors(checked) => reporter.diagnostics(&checked),
                Rejected::Other(why) => why,
            };
            reporter.say(&format!(
                "reload: {} has errors; its plans keep their previous version:\n{}",
                file.display(),
                text.trim_end()
            ));
            catalog.problems.insert(file, text);
        }
        reporter.say(&format!(
            "reloaded: {} plan(s) from {} file(s)",
            catalog.plans.len(),
            files.len()
        ));
        self.daemon.set_catalog(catalog);
    }

    /// The graceful stop: no new run starts, running runs stop starting steps and release
    /// what they hold (ending INTERRUPTED, resumed at the next start), then the API closes.
    pub async fn stop(self) {
        self.daemon.shutdown().await;
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
