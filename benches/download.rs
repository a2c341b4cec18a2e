//! Download benchmark (docs/performance.md, "Downloads"): one file fetched with `get-file`
//! from the simulator over HTTP, (a) through the SOMA client into a file (streamed, base64
//! decoded, SHA-256 hashed, fsynced) and (b) as a plain streaming download of the same
//! response body into a file (fsynced). Both move the same response bytes; the figure is the
//! ratio of their throughputs. Rounds alternate so both see the same machine state.
//!
//! `cargo bench --bench download` (2 GiB); `DPPLAN_BENCH_SIZE=256MiB` for a quick run;
//! `DPPLAN_BENCH_ROUNDS=5` by default; files go to `DPPLAN_BENCH_DIR` or the temporary
//! directory.

use dpplan::appliance::{soma, Appliance};
use dpplan::sim::content;
use std::io::Write;
use std::time::Instant;

#[path = "transfer.rs"]
mod transfer;
use transfer::{bench_device, median, Error, Settings};

fn main() -> Result<(), Error> {
    let Settings {
        size_text,
        size,
        rounds,
        dir,
    } = Settings::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (fleet, device, client) =
            bench_device(&format!("backup_file_size = \"{size_text}\"\n")).await?;
        client.secure_backup("backup-cert", "temporary:///bench/").await?;
        let path = "temporary:///bench/config.tgz";
        let expected = content::expected_sha256("BENCH", "config.tgz", size);

        let client_file = dir.path().join("client.tgz");
        let plain_file = dir.path().join("plain.xml");
        let mut client_secs = Vec::new();
        let mut plain_secs = Vec::new();
        let mut body_bytes = 0u64;
        println!("download benchmark: {size_text} file ({size} bytes), {rounds} rounds, in {}", dir.path().display());
        for round in 1..=rounds {
            let started = Instant::now();
            body_bytes = plain_download(device.addr, path, &plain_file).await?;
            let p = started.elapsed().as_secs_f64();
            std::fs::remove_file(&plain_file)?;

            let started = Instant::now();
            let got = client.download(path, &client_file).await?;
            let c = started.elapsed().as_secs_f64();
            if got.sha256 != expected || got.size != size {
                return Err(format!("round {round}: wrong content: {got:?}").into());
            }
            std::fs::remove_file(&client_file)?;
            println!(
                "round {round}: plain {p:.3} s ({:.0} MiB/s of body), client {c:.3} s ({:.0} MiB/s of body, {:.0} MiB/s decoded), ratio {:.2}",
                body_bytes as f64 / p / 1048576.0,
                body_bytes as f64 / c / 1048576.0,
                size as f64 / c / 1048576.0,
                p / c
            );
            plain_secs.push(p);
            client_secs.push(c);
        }
        let (p, c) = (median(&mut plain_secs), median(&mut client_secs));
        println!(
            "median: plain {p:.3} s, client {c:.3} s, response body {body_bytes} bytes; \
             client/plain throughput ratio {:.2} (target >= 0.60)",
            p / c
        );
        fleet.shutdown().await;
        Ok::<(), Error>(())
    })
}

/// The same `get-file` request on a new connection (hyper, no pool or layers), its response
/// body streamed into a file as it is, fsynced.
async fn plain_download(
    addr: std::net::SocketAddr,
    path: &str,
    dest: &std::path::Path,
) -> Result<u64, Error> {
    use base64::Engine as _;
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let auth = base64::engine::general_purpose::STANDARD.encode("admin:admin");
    let request = hyper::Request::post(dpplan::appliance::soma::PATH)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Basic {auth}"))
        .header(hyper::header::CONTENT_TYPE, "text/xml")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            soma::get_file(path),
        )))?;
    let response = sender.send_request(request).await?;
    if response.status() != 200 {
        return Err(format!("HTTP {}", response.status()).into());
    }
    let mut body = response.into_body();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(dest)?);
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame?.into_data() {
            out.write_all(&chunk)?;
            total += chunk.len() as u64;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(total)
}
