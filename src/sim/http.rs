//! The simulator's HTTP(S) side: one hyper HTTP/1.1 server per device listener. Checks Basic
//! auth, parses the SOMA request, lets the [`Device`] answer, and applies transport faults:
//! delay, HTTP 500, connection reset (RST), a body cut half way, corrupt base64. Payloads are
//! generated and base64-encoded chunk by chunk while they are sent, never held whole.

use super::device::{ChangeRequest, Device};
use super::reply::{parse_request, Answer, Reply, Source};
use super::upload::{Spliced, Splicer};
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Raw bytes per generated chunk: a multiple of 3, so chunk encodings concatenate into the
/// encoding of the whole.
const RAW_CHUNK: usize = 3 * 64 * 1024;

/// Largest request accepted, not counting the file a set-file or do-import carries (streamed
/// into an upload, whatever its size).
const REQUEST_CAP: usize = 4 << 20;

enum Part {
    Bytes(Bytes),
    Base64 {
        source: Source,
        offset: u64,
        corrupt: bool,
    },
}

/// A response body: literal parts and base64 generated on the fly; optionally cut after
/// `limit` bytes (the connection is then dropped short of the announced length).
pub struct SimBody {
    parts: VecDeque<Part>,
    total: u64,
    limit: Option<u64>,
    sent: u64,
    /// Once the limit is reached: a pause, so hyper flushes what was sent before the error
    /// drops the connection.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Scratch for generated content, reused between chunks.
    raw: Vec<u8>,
}

impl SimBody {
    fn bytes(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        let total = b.len() as u64;
        SimBody {
            parts: VecDeque::from([Part::Bytes(b)]),
            total,
            limit: None,
            sent: 0,
            stall: None,
            raw: Vec::new(),
        }
    }

    fn payload(prefix: String, source: Source, suffix: String, corrupt: bool) -> Self {
        let encoded = source.size().div_ceil(3).saturating_mul(4);
        let total = encoded.saturating_add((prefix.len() + suffix.len()) as u64);
        let parts = VecDeque::from([
            Part::Bytes(Bytes::from(prefix)),
            Part::Base64 {
                source,
                offset: 0,
                corrupt,
            },
            Part::Bytes(Bytes::from(suffix)),
        ]);
        SimBody {
            parts,
            total,
            limit: None,
            sent: 0,
            stall: None,
            raw: Vec::new(),
        }
    }

    fn cut_half_way(mut self) -> Self {
        self.limit = Some(self.total / 2);
        self
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            match self.parts.front_mut()? {
                Part::Bytes(b) => {
                    let b = std::mem::take(b);
                    self.parts.pop_front();
                    if !b.is_empty() {
                        return Some(b);
                    }
                }
                Part::Base64 {
                    source,
                    offset,
                    corrupt,
                } => {
                    let size = source.size();
                    if *offset >= size {
                        self.parts.pop_front();
                        continue;
                    }
                    let n = (size - *offset).min(RAW_CHUNK as u64) as usize;
                    let start = *offset;
                    let mut encoded = vec![0u8; n.div_ceil(3) * 4];
                    let raw = match source {
                        Source::Content { key, .. } => {
                            self.raw.resize(n, 0);
                            super::content::fill(*key, start, &mut self.raw[..n]);
                            &self.raw[..n]
                        }
                        Source::Bytes(b) => &b[start as usize..start as usize + n],
                        Source::Stored(stored) => {
                            self.raw.resize(n, 0);
                            let mut done = 0;
                            while done < n {
                                match stored.read_at(start + done as u64, &mut self.raw[done..n]) {
                                    Ok(0) | Err(_) => break,
                                    Ok(k) => done += k,
                                }
                            }
                            // A stored file that cannot be read back ends the body early:
                            // the client sees a truncated answer.
                            if done < n {
                                self.parts.clear();
                                return None;
                            }
                            &self.raw[..n]
                        }
                    };
                    let written = base64::engine::general_purpose::STANDARD
                        .encode_slice(raw, &mut encoded)
                        .unwrap_or(0);
                    encoded.truncate(written);
                    if *corrupt && start == 0 {
                        // Same length, so the announced Content-Length still holds.
                        let middle = encoded.len() / 2;
                        encoded[middle] = b'*';
                    }
                    *offset += n as u64;
                    return Some(Bytes::from(encoded));
                }
            }
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(limit) = this.limit {
            if this.sent >= limit {
                let stall = this.stall.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(Duration::from_millis(100)))
                });
                if stall.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                return Poll::Ready(Some(Err(std::io::Error::other("body cut by a fault"))));
            }
        }
        let Some(mut chunk) = this.next_chunk() else {
            return Poll::Ready(None);
        };
        if let Some(limit) = this.limit {
            let room = (limit - this.sent) as usize;
            if chunk.len() > room {
                chunk.truncate(room);
            }
        }
        this.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

fn simple(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<SimBody> {
    let body = SimBody::bytes(body);
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

fn credentials(request: &Request<hyper::body::Incoming>) -> Option<(String, String)> {
    let header = request
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Reads a request body: the XML around a file element into memory (at most
/// [`REQUEST_CAP`]), the file's base64 decoded as it arrives (see [`Splicer`]).
async fn read_body(body: hyper::body::Incoming) -> Result<Spliced, std::io::Error> {
    let mut body = body;
    let mut splicer = Splicer::new(REQUEST_CAP);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            splicer.push(&data).map_err(std::io::Error::other)?;
        }
    }
    Ok(splicer.finish())
}

/// Serves one request. `Err` drops the connection (after arming a reset when asked).
async fn respond(
    request: Request<hyper::body::Incoming>,
    device: Arc<Device>,
    socket: Arc<std::net::TcpStream>,
) -> Result<Response<SimBody>, std::io::Error> {
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/sim/state") => {
            let json = serde_json::to_vec(&device.state()).map_err(std::io::Error::other)?;
            Ok(simple(StatusCode::OK, "application/json", json))
        }
        (&Method::POST, "/service/mgmt/current") => {
            // The device's latency counts from the request's arrival: its own work is part
            // of it, as on an appliance.
            let arrived = tokio::time::Instant::now();
            let _answering = device.begin_request();
            let authorised = credentials(&request).is_some_and(|(u, p)| device.authorised(&u, &p));
            let (xml, upload) = read_body(request.into_body()).await?;
            let parsed = parse_request(&xml).map(|mut r| {
                r.upload = upload;
                r
            });
            let answer = device.handle(parsed, authorised);
            tokio::time::sleep_until(arrived + device.latency()).await;
            if let Some(downtime) = answer.restart {
                // The port closes before the answer goes: a client that read `OK` finds
                // the device down.
                device.outage().begin(std::time::Instant::now() + downtime);
                device.outage().wait_closed(Duration::from_secs(2)).await;
            }
            send(answer, &socket, device.faults_with_http500()).await
        }
        (&Method::POST, _) if path.starts_with("/sim/devices/") => {
            change(request, &device, &path).await
        }
        _ => Ok(simple(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    }
}

/// `POST /sim/devices/{D}/domains/{X}/change`, JSON body optional.
async fn change(
    request: Request<hyper::body::Incoming>,
    device: &Device,
    path: &str,
) -> Result<Response<SimBody>, std::io::Error> {
    let parts: Vec<String> = path.split('/').map(percent_decode).collect();
    let [_, sim, devices, name, domains, domain, verb] = &parts[..] else {
        return Ok(simple(StatusCode::NOT_FOUND, "text/plain", "not found\n"));
    };
    let fixed = [sim, devices, domains, verb].map(String::as_str);
    if fixed != ["sim", "devices", "domains", "change"] {
        return Ok(simple(StatusCode::NOT_FOUND, "text/plain", "not found\n"));
    }
    let body = http_body_util::Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_bytes();
    let wanted = if body.iter().all(u8::is_ascii_whitespace) {
        ChangeRequest::default()
    } else {
        match serde_json::from_slice::<ChangeRequest>(&body) {
            Ok(wanted) => wanted,
            Err(e) => {
                let text = format!("invalid change: {e}\n");
                return Ok(simple(StatusCode::BAD_REQUEST, "text/plain", text));
            }
        }
    };
    let changed = (name == &device.spec().name)
        .then(|| device.change(domain, wanted))
        .flatten();
    match changed {
        Some(changed) => {
            let json = serde_json::to_vec(&changed).map_err(std::io::Error::other)?;
            Ok(simple(StatusCode::OK, "application/json", json))
        }
        None => {
            let text = format!("no domain {domain} on device {name}\n");
            Ok(simple(StatusCode::NOT_FOUND, "text/plain", text))
        }
    }
}

/// `%XX` escapes of a path segment decoded (invalid ones kept as they are).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn send(
    answer: Answer,
    socket: &std::net::TcpStream,
    fault_http500: bool,
) -> Result<Response<SimBody>, std::io::Error> {
    if answer.delay > Duration::ZERO {
        tokio::time::sleep(answer.delay).await;
    }
    let body = match answer.reply {
        Reply::Reset => {
            // Linger 0: closing the socket sends RST instead of FIN.
            socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO))?;
            return Err(std::io::Error::other("connection reset by fault"));
        }
        Reply::Http500 => {
            return Ok(simple(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "Internal Server Error\n",
            ))
        }
        Reply::Xml(text) if fault_http500 && text.contains("<env:Fault>") => {
            return Ok(simple(StatusCode::INTERNAL_SERVER_ERROR, "text/xml", text));
        }
        Reply::Xml(text) => SimBody::bytes(text),
        Reply::Payload {
            prefix,
            source,
            suffix,
        } => SimBody::payload(prefix, source, suffix, answer.corrupt),
    };
    let body = if answer.truncate {
        body.cut_half_way()
    } else {
        body
    };
    let total = body.total;
    let mut response = simple(StatusCode::OK, "text/xml", Bytes::new());
    *response.body_mut() = body;
    response.headers_mut().insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(total),
    );
    Ok(response)
}

/// Serves one connection until it ends, or until `drain` changes (the device restarts):
/// then the request in progress is answered and the connection closed.
async fn connection(
    tcp: TcpStream,
    device: Arc<Device>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    drain: watch::Receiver<u64>,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    // A second handle on the socket, so a fault can arm SO_LINGER 0 (a reset) on it.
    let std_tcp = tcp.into_std()?;
    let socket = Arc::new(std_tcp.try_clone()?);
    let tcp = TcpStream::from_std(std_tcp)?;
    let service = hyper::service::service_fn(move |request| {
        respond(request, Arc::clone(&device), Arc::clone(&socket))
    });
    match tls {
        Some(acceptor) => {
            let stream = acceptor.accept(tcp).await?;
            serve_io(hyper_util::rt::TokioIo::new(stream), service, drain).await
        }
        None => serve_io(hyper_util::rt::TokioIo::new(tcp), service, drain).await,
    }
}

async fn serve_io<I, S>(io: I, service: S, mut drain: watch::Receiver<u64>) -> std::io::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = SimBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let served = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        tokio::select! {
            result = served.as_mut() => return result.map_err(std::io::Error::other),
            changed = drain.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A socket bound to `addr` without listening: connections are refused, and no other
/// listener can take the port meanwhile.
fn hold(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Accepts connections for one device until `shutdown` changes; then drops them all. When
/// the device restarts (a secure restore), stops listening (the port held, connections
/// refused, open connections closed after their request in progress) until the restart's
/// end, then listens again on the same address.
pub async fn serve_device(
    listener: TcpListener,
    device: Arc<Device>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    let mut listener = Some(listener);
    let mut held = None;
    let mut back_at: Option<tokio::time::Instant> = None;
    let mut restarts = device.outage().subscribe();
    let (drain, mut drained) = watch::channel(0u64);
    let mut connections = JoinSet::new();
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        let back = async {
            match back_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = accept => {
                if let Ok((tcp, _)) = accepted {
                    connections.spawn(connection(tcp, Arc::clone(&device), tls.clone(), drained.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            changed = restarts.changed() => {
                let until = match changed {
                    Ok(()) => *restarts.borrow_and_update(),
                    Err(_) => None,
                };
                if let (Some(until), Some(addr)) = (until, addr) {
                    drain.send_modify(|n| *n += 1);
                    // Connections accepted from now on are not drained.
                    drained.borrow_and_update();
                    listener = None;
                    held = hold(addr).ok();
                    back_at = Some(tokio::time::Instant::from_std(until));
                    device.outage().set_listening(false);
                }
            }
            () = back => {
                match addr.map(TcpListener::bind) {
                    Some(bind) => match bind.await {
                        Ok(l) => {
                            listener = Some(l);
                            held = None;
                            back_at = None;
                            device.outage().set_listening(true);
                        }
                        // The port is busy for a moment: try again shortly.
                        Err(_) => back_at = Some(tokio::time::Instant::now() + Duration::from_millis(50)),
                    },
                    None => back_at = None,
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(held);
    connections.shutdown().await;
}
