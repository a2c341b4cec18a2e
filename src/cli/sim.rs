//! `dpplan sim`: run a simulated fleet until SIGINT/SIGTERM; and the hidden `dpplan fetch`,
//! one `get-file` through the real client (for measuring its memory and speed in a process
//! of its own, see docs/performance.md).

use super::codes::EXIT_OK;
use super::run::runtime;
use super::CliError;
use crate::appliance::{Appliance, ConnectionConfig, SomaClient};
use crate::sim::{self, Fleet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dpplan sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    /// The fleet file (TOML; see docs/simulator.md).
    #[arg(long)]
    fleet: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Serve HTTPS with a generated certificate; its CA is written to --ca-out.
    #[arg(long)]
    tls: bool,
    /// Write an inventory block for the started fleet to this file.
    #[arg(long)]
    inventory_out: Option<PathBuf>,
    /// Where to write the CA certificate with --tls (default: sim-ca.pem beside
    /// --inventory-out, else in the temporary directory).
    #[arg(long)]
    ca_out: Option<PathBuf>,
}

/// Arguments of the hidden `dpplan fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Appliance address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// XML management port.
    #[arg(long)]
    port: u16,
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, default_value = "admin")]
    password: String,
    /// Plain HTTP.
    #[arg(long)]
    no_tls: bool,
    /// Accept any certificate.
    #[arg(long)]
    insecure: bool,
    /// The appliance file, e.g. temporary:///dir/config.tgz.
    #[arg(long)]
    path: String,
    /// Local destination file.
    #[arg(long)]
    dest: PathBuf,
}

/// Runs `dpplan sim`.
pub fn run_sim(args: SimArgs) -> Result<u8, CliError> {
    let fleet = Fleet::load(&args.fleet).map_err(|e| CliError::failed(e.to_string()))?;
    let runtime = runtime()?;
    runtime.block_on(async move {
        let running = sim::serve(&fleet, args.host, args.tls)
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        let mut ca_file = None;
        if let Some(pem) = &running.ca_pem {
            let path = args
                .ca_out
                .clone()
                .unwrap_or_else(|| match &args.inventory_out {
                    Some(inv) => inv.with_file_name("sim-ca.pem"),
                    None => std::env::temp_dir()
                        .join(format!("dpplan-sim-{}-ca.pem", std::process::id())),
                });
            if let Err(e) = std::fs::write(&path, pem) {
                running.shutdown().await;
                return Err(CliError::io("cannot write the CA to", path, e));
            }
            eprintln!("CA certificate: {}", path.display());
            ca_file = Some(path);
        }
        if let Some(path) = &args.inventory_out {
            // Its comment names the fleet's password: readable by its owner only.
            let written = crate::appliance::payload::create_private(path).and_then(|mut f| {
                use std::io::Write;
                f.write_all(running.inventory(ca_file.as_deref()).as_bytes())
            });
            if let Err(e) = written {
                running.shutdown().await;
                return Err(CliError::io("cannot write the inventory to", path, e));
            }
        }
        for device in &running.devices {
            let down = if device.down { " down" } else { "" };
            println!("{} {}{down}", device.name, device.url());
        }
        wait_for_signal().await;
        eprintln!("stopping the simulated fleet");
        running.shutdown().await;
        Ok(EXIT_OK)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs the hidden `dpplan fetch`.
pub fn run_fetch(args: FetchArgs) -> Result<u8, CliError> {
    let mut config = ConnectionConfig::new("fetch", args.host, args.port, args.user, args.password);
    config.tls = !args.no_tls;
    config.insecure = args.insecure;
    config.read_timeout = Duration::from_secs(300);
    let runtime = runtime()?;
    runtime.block_on(async move {
        let client = SomaClient::new(config).map_err(|e| CliError::failed(e.to_string()))?;
        let started = std::time::Instant::now();
        let got = client
            .download(&args.path, &args.dest)
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{} bytes sha256 {} in {seconds:.3} s ({:.1} MiB/s)",
            got.size,
            got.sha256,
            got.size as f64 / seconds / 1048576.0
        );
        Ok(EXIT_OK)
    })
}
