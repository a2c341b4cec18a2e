//! Helpers shared by the integration tests.

use dpplan::appliance::{ConnectionConfig, SomaClient};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The path of a file in tests/fixtures/soma.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/soma")
        .join(name)
}

/// Connection settings for a plain-HTTP endpoint on loopback, with short limits.
pub fn http_config(device: &str, addr: SocketAddr, user: &str, password: &str) -> ConnectionConfig {
    let mut config =
        ConnectionConfig::new(device, addr.ip().to_string(), addr.port(), user, password);
    config.tls = false;
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(10);
    config.read_timeout = Duration::from_secs(10);
    config
}

/// A server on 127.0.0.1:0 that answers every request with HTTP 200 and `body`, one request
/// per connection (`Connection: close`).
pub async fn canned(body: Vec<u8>) -> SocketAddr {
    canned_keep_alive(body, 1).await.0
}

/// A server on 127.0.0.1:0 that answers every request with HTTP 200 and `body`, keeps each
/// connection for `per_connection` requests and then closes it unannounced, as appliances
/// close idle connections. Also returns its count of accepted connections.
pub async fn canned_keep_alive(
    body: Vec<u8>,
    per_connection: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, accepted, _) = canned_with_status("200 OK", body, per_connection).await;
    (addr, accepted)
}

/// The request bodies a canned server received, in order.
pub type Received = Arc<Mutex<Vec<Vec<u8>>>>;

/// [`canned`], also keeping every request body it receives.
pub async fn canned_recording(body: Vec<u8>) -> (SocketAddr, Received) {
    let (addr, _, received) = canned_with_status("200 OK", body, 1).await;
    (addr, received)
}

/// A server on 127.0.0.1:0 that answers every request with `status` (`"500 Internal Server
/// Error"`) and `body`, one request per connection.
pub async fn canned_status(status: &'static str, body: Vec<u8>) -> SocketAddr {
    canned_with_status(status, body, 1).await.0
}

async fn canned_with_status(
    status: &'static str,
    body: Vec<u8>,
    per_connection: usize,
) -> (SocketAddr, Arc<AtomicUsize>, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let received: Received = Arc::default();
    let bodies = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                for _ in 0..per_connection {
                    // Read the head, then the announced body.
                    let (head_end, length) = loop {
                        if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head =
                                String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    };
                    while request.len() < head_end + length {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    let got: Vec<u8> = request.drain(..head_end + length).skip(head_end).collect();
                    bodies.lock().unwrap().push(got);
                    let close = if per_connection == 1 {
                        "Connection: close\r\n"
                    } else {
                        ""
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{close}\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, accepted, received)
}

/// A client for a canned server answering with the fixture `name`.
pub async fn canned_client(name: &str) -> SomaClient {
    canned_client_recording(name).await.0
}

/// [`canned_client`], and the request bodies the server receives from it.
pub async fn canned_client_recording(name: &str) -> (SomaClient, Received) {
    let body = std::fs::read(fixture(name)).unwrap();
    let (addr, received) = canned_recording(body).await;
    let client = SomaClient::new(http_config("FIXTURE", addr, "admin", "admin")).unwrap();
    (client, received)
}

/// `GET http://{addr}{path}`: the body of a 200 answer (the simulator's `/sim/state`).
pub async fn http_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

/// `POST http://{addr}{path}` with `body` (Basic auth when `auth` is given): the status and
/// the body of the answer.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use base64::Engine as _;
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::post(path).header(hyper::header::HOST, addr.to_string());
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header(hyper::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let request = request
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}
