//! SOMA request rate (informational, docs/performance.md): `get-status DomainStatus` from
//! the client to an in-process simulated device over HTTP on loopback, 20,000 requests at
//! concurrency 1, 16 and 64 over one shared client (connection pool). Both sides share the
//! machine's cores. `cargo bench --bench requests`.
use dpplan::appliance::{Appliance, ConnectionConfig, SomaClient};
use dpplan::sim::{self, Fleet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fleet = sim::serve(
            &Fleet::parse("[[device]]\nname = \"R\"\ndomains = [\"default\", \"A\", \"B\"]\n")?,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            false,
        )
        .await?;
        let d = fleet.device("R").ok_or("no device")?.clone();
        let mut config = ConnectionConfig::new("R", "127.0.0.1", d.addr.port(), "admin", "admin");
        config.tls = false;
        let client = Arc::new(SomaClient::new(config)?);
        for concurrency in [1usize, 16, 64] {
            let n = 20_000usize;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let c = Arc::clone(&client);
                tasks.push(tokio::spawn(async move {
                    for _ in 0..n / concurrency {
                        c.domains().await.map_err(|e| e.to_string())?;
                    }
                    Ok::<(), String>(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let s = started.elapsed().as_secs_f64();
            println!(
                "concurrency {concurrency}: {n} requests in {s:.3} s = {:.0} requests/s",
                n as f64 / s
            );
        }
        fleet.shutdown().await;
        Ok(())
    })
}
