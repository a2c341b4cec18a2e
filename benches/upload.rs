//! Upload benchmark (docs/performance.md, "Uploads"): one file sent with `set-file` to the
//! simulator over HTTP, (a) through the SOMA client (the file read and base64-encoded while
//! the request streams, its length announced) and (b) as a plain streaming upload of the same
//! request body, already encoded, from a file. Both send the same bytes to the same server,
//! which decodes them into a spool file; the figure is the ratio of their throughputs.
//! Rounds alternate so both see the same machine state. The process's peak resident memory
//! (client and simulator together) is printed at the end.
//!
//! `cargo bench --bench upload` (2 GiB); `DPPLAN_BENCH_SIZE=256MiB` for a quick run;
//! `DPPLAN_BENCH_ROUNDS=5` by default; files go to `DPPLAN_BENCH_DIR` or the temporary
//! directory.

use base64::Engine as _;
use dpplan::appliance::{soma, Appliance};
use dpplan::sim::{self, content};
use std::io::Write;
use std::time::Instant;

#[path = "transfer.rs"]
mod transfer;
use transfer::{bench_device, median, Error, Settings};

const CHUNK: usize = 3 * 256 * 1024;

fn main() -> Result<(), Error> {
    let Settings {
        size_text,
        size,
        rounds,
        dir,
    } = Settings::from_env()?;
    let name = "temporary:///bench/big.bin";
    // The file, and the plain upload's body: the same request, encoded ahead of time.
    let source = dir.path().join("big.bin");
    let body_file = dir.path().join("body.xml");
    {
        let frame = soma::set_file(name);
        let mut src = std::io::BufWriter::new(std::fs::File::create(&source)?);
        let mut body = std::io::BufWriter::new(std::fs::File::create(&body_file)?);
        body.write_all(frame.head.as_bytes())?;
        let key = content::key("BENCH", "big.bin");
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0u64;
        while at < size {
            let n = CHUNK.min((size - at) as usize);
            content::fill(key, at, &mut buf[..n]);
            src.write_all(&buf[..n])?;
            body.write_all(
                base64::engine::general_purpose::STANDARD
                    .encode(&buf[..n])
                    .as_bytes(),
            )?;
            at += n as u64;
        }
        body.write_all(frame.tail.as_bytes())?;
        src.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        body.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    let body_bytes = std::fs::metadata(&body_file)?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (fleet, device, client) = bench_device("").await?;
        let mut client_secs = Vec::new();
        let mut plain_secs = Vec::new();
        println!("upload benchmark: {size_text} file ({size} bytes), request body {body_bytes} bytes, {rounds} rounds, in {}", dir.path().display());
        for round in 1..=rounds {
            let started = Instant::now();
            plain_upload(device.addr, &body_file, body_bytes).await?;
            let p = started.elapsed().as_secs_f64();
            check(&device, name, size)?;

            let started = Instant::now();
            client.upload(&source, name).await?;
            let c = started.elapsed().as_secs_f64();
            check(&device, name, size)?;
            println!(
                "round {round}: plain {p:.3} s ({:.0} MiB/s of body), client {c:.3} s ({:.0} MiB/s of body, {:.0} MiB/s of file), ratio {:.2}",
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
            "median: plain {p:.3} s, client {c:.3} s; client/plain throughput ratio {:.2} (target >= 0.60)",
            p / c
        );
        println!("peak resident memory of this process (client and simulator): {} KiB", peak_kib());
        fleet.shutdown().await;
        Ok::<(), Error>(())
    })
}

/// The simulator holds the file, of the right size.
fn check(device: &sim::RunningDevice, name: &str, size: u64) -> Result<(), Error> {
    let state = device.state().ok_or("device down")?;
    let listed = state.temporary_files.iter().any(|f| f == name);
    if !listed {
        return Err(format!(
            "{name} not stored: {:?} (expected {size} bytes)",
            state.temporary_files
        )
        .into());
    }
    Ok(())
}

/// VmHWM of this process.
fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The same `set-file` request on a new connection (hyper, no pool or layers), its body
/// streamed from the encoded file as it is.
async fn plain_upload(
    addr: std::net::SocketAddr,
    body_file: &std::path::Path,
    length: u64,
) -> Result<(), Error> {
    use http_body_util::BodyExt;
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(connection);
    let auth = base64::engine::general_purpose::STANDARD.encode("admin:admin");
    let file = tokio::fs::File::open(body_file).await?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(buf))),
                    f,
                ))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let request = hyper::Request::post(soma::PATH)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Basic {auth}"))
        .header(hyper::header::CONTENT_TYPE, "text/xml")
        .header(hyper::header::CONTENT_LENGTH, length)
        .body(http_body_util::StreamBody::new(stream))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    if status != 200 || !String::from_utf8_lossy(&answer).contains("OK") {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&answer)).into());
    }
    Ok(())
}
