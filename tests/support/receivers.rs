//! Receivers of notifications for the tests, each on 127.0.0.1 on a port of its own (port 0
//! unless a test names one), each on a thread of its own (so tests that run the binary and
//! tests on a tokio runtime use them alike), each keeping what it received: an HTTP server
//! (webhooks), a UDP socket and a TCP listener (syslog, the TCP one reading RFC 6587 octet
//! counting), and an SMTP sink that speaks enough SMTP for lettre: EHLO, STARTTLS (with a
//! certificate made by rcgen, signed by a CA of its own), AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
//! Dropping a receiver closes its port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// What a receiver got, in arrival order.
#[derive(Clone)]
pub struct Inbox<T>(Arc<Mutex<Vec<T>>>);

impl<T: Clone> Inbox<T> {
    fn new() -> Inbox<T> {
        Inbox(Arc::new(Mutex::new(Vec::new())))
    }

    fn push(&self, item: T) {
        self.0.lock().unwrap().push(item);
    }

    /// Everything received so far.
    pub fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until at least `n` items have come (at most 10 s), then returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<T> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.all();
            if all.len() >= n || Instant::now() >= end {
                return all;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A server task on a thread of its own, stopped (its port closed) when dropped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Runs `serve` on a new thread's runtime until the receiver is dropped.
    fn start<F>(serve: F) -> Running
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    () = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Running {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago): where a receiver
/// that is down "is", and where it starts later with `start_on`.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

fn std_listener(port: u16) -> std::net::TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    socket.bind(&addr.into()).unwrap();
    socket.listen(128).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.into()
}

// ---------------------------------------------------------------------------------------
// HTTP

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP/1.1 server (hyper) answering every request with one status.
pub struct HttpReceiver {
    pub addr: SocketAddr,
    pub requests: Inbox<HttpRequest>,
    _running: Running,
}

impl HttpReceiver {
    /// On a port of its own, answering 200.
    pub fn start() -> HttpReceiver {
        HttpReceiver::start_on(0, 200)
    }

    /// On `port` (0: any), answering `status` (and keeping the requests all the same).
    pub fn start_on(port: u16, status: u16) -> HttpReceiver {
        let listener = std_listener(port);
        let addr = listener.local_addr().unwrap();
        let requests = Inbox::new();
        let inbox = requests.clone();
        let running = Running::start(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let inbox = inbox.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let inbox = inbox.clone();
                        async move { answer(req, inbox, status).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpReceiver {
            addr,
            requests,
            _running: running,
        }
    }

    /// A URL on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    inbox: Inbox<HttpRequest>,
    status: u16,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
    use http_body_util::BodyExt as _;
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req.into_body().collect().await?.to_bytes().to_vec();
    inbox.push(HttpRequest {
        method,
        path,
        content_type,
        body,
    });
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// Syslog

/// A syslog receiver: UDP (each datagram a message) or TCP (octet-counted frames).
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    /// The messages, without framing.
    pub messages: Inbox<Vec<u8>>,
    /// TCP: frames that did not parse as `LEN SP MSG` (what was read, as text).
    pub bad_frames: Inbox<String>,
    _running: Running,
}

impl SyslogReceiver {
    /// A UDP socket on a port of its own.
    pub fn udp() -> SyslogReceiver {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let addr = socket.local_addr().unwrap();
        let messages = Inbox::new();
        let inbox = messages.clone();
        let running = Running::start(async move {
            let socket = UdpSocket::from_std(socket).unwrap();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                inbox.push(buf[..n].to_vec());
            }
        });
        SyslogReceiver {
            addr,
            messages,
            bad_frames: Inbox::new(),
            _running: running,
        }
    }

    /// A TCP listener on `port` (0: any).
    pub fn tcp_on(port: u16) -> SyslogReceiver {
        let listener = std_listener(port);
        let addr = listener.local_addr().unwrap();
        let messages = Inbox::new();
        let bad_frames = Inbox::new();
        let (inbox, bad) = (messages.clone(), bad_frames.clone());
        let running = Running::start(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let (inbox, bad) = (inbox.clone(), bad.clone());
                tokio::spawn(async move { read_frames(stream, inbox, bad).await });
            }
        });
        SyslogReceiver {
            addr,
            messages,
            bad_frames,
            _running: running,
        }
    }
}

/// Reads `LEN SP MSG` frames until the peer closes.
async fn read_frames(stream: TcpStream, inbox: Inbox<Vec<u8>>, bad: Inbox<String>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        match r.read_until(b' ', &mut len).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let digits = String::from_utf8_lossy(&len[..len.len() - 1]).to_string();
        let Some(n) = digits
            .parse::<usize>()
            .ok()
            .filter(|_| len.ends_with(b" ") && !digits.starts_with('0'))
        else {
            bad.push(String::from_utf8_lossy(&len).to_string());
            return;
        };
        let mut msg = vec![0u8; n];
        if r.read_exact(&mut msg).await.is_err() {
            bad.push(format!("{digits} and fewer bytes"));
            return;
        }
        inbox.push(msg);
    }
}

// ---------------------------------------------------------------------------------------
// SMTP

/// One e-mail the sink took.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Whether the session was under TLS (after STARTTLS) when it came.
    pub tls: bool,
    /// `(user, password)` of the AUTH PLAIN that succeeded, if any.
    pub auth: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// The message, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (the first).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        head.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The body (after the header).
    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// What the sink asks of its clients.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Offers STARTTLS (and AUTH only after it).
    pub starttls: bool,
    /// Mail needs AUTH PLAIN with this user and password first.
    pub auth: Option<(String, String)>,
}

/// An SMTP server that keeps what it is sent.
pub struct SmtpSink {
    pub addr: SocketAddr,
    /// The PEM of the CA that signed its certificate (for 127.0.0.1 and localhost).
    pub ca_pem: String,
    pub mails: Inbox<Mail>,
    /// Every command line received, in order (for checking what came before TLS).
    pub commands: Inbox<String>,
    _running: Running,
}

impl SmtpSink {
    pub fn start(options: SmtpOptions) -> SmtpSink {
        let (acceptor, ca_pem) = tls_acceptor();
        let listener = std_listener(0);
        let addr = listener.local_addr().unwrap();
        let mails = Inbox::new();
        let commands = Inbox::new();
        let (inbox, log) = (mails.clone(), commands.clone());
        let running = Running::start(async move {
            let listener = TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let session = Session {
                    options: options.clone(),
                    mails: inbox.clone(),
                    commands: log.clone(),
                    authed: None,
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move { session.run(stream, acceptor).await });
            }
        });
        SmtpSink {
            addr,
            ca_pem,
            mails,
            commands,
            _running: running,
        }
    }
}

struct Session {
    options: SmtpOptions,
    mails: Inbox<Mail>,
    commands: Inbox<String>,
    authed: Option<(String, String)>,
}

enum Next {
    StartTls,
    Done,
}

impl Session {
    async fn run(mut self, stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        let mut plain = BufReader::new(stream);
        if plain
            .get_mut()
            .write_all(b"220 sink.test ESMTP\r\n")
            .await
            .is_err()
        {
            return;
        }
        if let Next::StartTls = self.dialog(&mut plain, false).await {
            let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
                return;
            };
            let mut tls = BufReader::new(tls);
            self.dialog(&mut tls, true).await;
        }
    }

    async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        r: &mut BufReader<S>,
        tls: bool,
    ) -> Next {
        let (mut from, mut to) = (String::new(), Vec::new());
        loop {
            let Some(line) = read_line(r).await else {
                return Next::Done;
            };
            self.commands.push(line.clone());
            let upper = line.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                let mut ext = vec!["250-sink.test".to_string()];
                if self.options.starttls && !tls {
                    ext.push("250-STARTTLS".into());
                }
                if self.options.auth.is_some() && (tls || !self.options.starttls) {
                    ext.push("250-AUTH PLAIN".into());
                }
                ext.push("250 8BITMIME".into());
                ext.join("\r\n")
            } else if upper == "STARTTLS" && self.options.starttls && !tls {
                let _ = r
                    .get_mut()
                    .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                    .await;
                return Next::StartTls;
            } else if upper.starts_with("AUTH PLAIN") {
                let mut response = line[10..].trim().to_string();
                if response.is_empty() {
                    let _ = r.get_mut().write_all(b"334 \r\n").await;
                    response = read_line(r).await.unwrap_or_default();
                }
                match (plain_credentials(&response), &self.options.auth) {
                    (Some(given), Some(wanted)) if &given == wanted => {
                        self.authed = Some(given);
                        "235 2.7.0 Authentication successful".into()
                    }
                    _ => "535 5.7.8 Authentication credentials invalid".into(),
                }
            } else if upper.starts_with("MAIL FROM:") {
                if self.options.auth.is_some() && self.authed.is_none() {
                    "530 5.7.0 Authentication required".into()
                } else {
                    from = address(&line[10..]);
                    to.clear();
                    "250 2.1.0 OK".into()
                }
            } else if upper.starts_with("RCPT TO:") {
                to.push(address(&line[8..]));
                "250 2.1.5 OK".into()
            } else if upper == "DATA" {
                let _ = r
                    .get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await;
                let mut data = String::new();
                loop {
                    let Some(l) = read_line(r).await else {
                        return Next::Done;
                    };
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push_str("\r\n");
                }
                self.mails.push(Mail {
                    tls,
                    auth: self.authed.clone(),
                    from: from.clone(),
                    to: to.clone(),
                    data,
                });
                "250 2.0.0 OK queued".into()
            } else if upper == "RSET" || upper == "NOOP" {
                "250 2.0.0 OK".into()
            } else if upper == "QUIT" {
                let _ = r.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
                return Next::Done;
            } else {
                "502 5.5.2 Command not recognized".into()
            };
            if r.get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())
                .await
                .is_err()
            {
                return Next::Done;
            }
        }
    }
}

/// A line without its CRLF; `None` at the end of the stream.
async fn read_line<S: AsyncRead + Unpin>(r: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    match r.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_string()),
    }
}

/// `<a@b>` (and any parameters after it) to `a@b`.
fn address(s: &str) -> String {
    let s = s.trim();
    match (s.find('<'), s.find('>')) {
        (Some(a), Some(b)) if a < b => s[a + 1..b].to_string(),
        _ => s.split_whitespace().next().unwrap_or("").to_string(),
    }
}

/// AUTH PLAIN's response: base64 of `authzid NUL user NUL password`.
fn plain_credentials(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let mut parts = raw.split(|b| *b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let password = String::from_utf8(parts.next()?.to_vec()).ok()?;
    Some((user, password))
}

/// A CA and a certificate it signs for 127.0.0.1 and localhost: the sink's TLS, and the CA's
/// PEM for the clients to trust.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dpplan test SMTP CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca_cert.pem(),
    )
}
