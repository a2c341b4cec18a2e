//! What the download and upload benchmarks share: their settings from the environment, the
//! simulated appliance and its client, and the median of their rounds. Included by each with
//! `#[path]` (not a benchmark of its own).

use dpplan::appliance::{ConnectionConfig, SomaClient};
use dpplan::sim::{self, fleet::parse_size, Fleet, RunningDevice, RunningFleet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

pub type Error = Box<dyn std::error::Error>;

/// `DPPLAN_BENCH_SIZE` (default 2 GiB), `DPPLAN_BENCH_ROUNDS` (default 5) and
/// `DPPLAN_BENCH_DIR` (default: the temporary directory).
pub struct Settings {
    pub size_text: String,
    pub size: u64,
    pub rounds: usize,
    pub dir: tempfile::TempDir,
}

impl Settings {
    pub fn from_env() -> Result<Settings, Error> {
        let size_text = std::env::var("DPPLAN_BENCH_SIZE").unwrap_or_else(|_| "2GiB".into());
        let size = parse_size(&size_text)?;
        let rounds = std::env::var("DPPLAN_BENCH_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5);
        let dir = match std::env::var_os("DPPLAN_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d)?,
            None => tempfile::tempdir()?,
        };
        Ok(Settings {
            size_text,
            size,
            rounds,
            dir,
        })
    }
}

/// The simulated device `BENCH` (its fleet entry's extra lines in `extra`) and a client of it
/// over plain HTTP with room for gigabytes.
pub async fn bench_device(extra: &str) -> Result<(RunningFleet, RunningDevice, SomaClient), Error> {
    let fleet_text =
        format!("[[device]]\nname = \"BENCH\"\nfree_temporary_mb = 100000000\n{extra}");
    let fleet = sim::serve(
        &Fleet::parse(&fleet_text)?,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        false,
    )
    .await?;
    let device = fleet.device("BENCH").ok_or("no device")?.clone();
    let mut config =
        ConnectionConfig::new("BENCH", "127.0.0.1", device.addr.port(), "admin", "admin");
    config.tls = false;
    config.read_timeout = Duration::from_secs(300);
    config.download_timeout = Duration::from_secs(3600);
    let client = SomaClient::new(config)?;
    Ok((fleet, device, client))
}

/// The median of the rounds' times.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
