//! The simulator's HTTP(S) side: one hyper HTTP/1.1 server per device listener. Checks Basic
//! auth, parses the SOMA request, lets the [`Device`] answer, and applies transport faults:
//! delay, HTTP 500, connection reset (RST), a body cut half way, corrupt base64. Payloads are
//! generated and base64-encoded chunk by chunk while they are sent, never held whole.

use super::device::Device;
use super::reply::{parse_request, Answer, Reply, Source};
use base64::Engine as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::VecDeque;
use std::future::Future;
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

/// Largest request body accepted.
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
            let body = http_body_util::Limited::new(request.into_body(), REQUEST_CAP)
                .collect()
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?
                .to_bytes();
            let answer = device.handle(parse_request(&body), authorised);
            tokio::time::sleep_until(arrived + device.latency()).await;
            send(answer, &socket, device.faults_with_http500()).await
        }
        _ => Ok(simple(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
    }
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

async fn connection(
    tcp: TcpStream,
    device: Arc<Device>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    // A second handle on the socket, so a fault can arm SO_LINGER 0 (a reset) on it.
    let std_tcp = tcp.into_std()?;
    let socket = Arc::new(std_tcp.try_clone()?);
    let tcp = TcpStream::from_std(std_tcp)?;
    let service = hyper::service::service_fn(move |request| {
        respond(request, Arc::clone(&device), Arc::clone(&socket))
    });
    let builder = hyper::server::conn::http1::Builder::new();
    let served = match tls {
        Some(acceptor) => {
            let stream = acceptor.accept(tcp).await?;
            builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
        }
        None => {
            builder
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await
        }
    };
    served.map_err(std::io::Error::other)
}

/// Accepts connections for one device until `shutdown` changes; then drops them all.
pub async fn serve_device(
    listener: TcpListener,
    device: Arc<Device>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((tcp, _)) = accepted {
                    connections.spawn(connection(tcp, Arc::clone(&device), tls.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    connections.shutdown().await;
}
