//! The SOMA client's HTTP/1.1 transport: hyper's connection API over tokio TCP, with rustls
//! for HTTPS, and a pool of idle keep-alive connections per appliance.
//!
//! The management interface is one URL that takes a POST of XML and answers with XML: no
//! redirects, proxies, cookies or content negotiation. A general client (reqwest) wraps each
//! such request in layers for those (URL re-parsing, redirect and retry policies, request
//! clones) that cost more CPU than the request itself at thousands of requests per second
//! (docs/performance.md, "Engine"); this module keeps only what the interface uses.
//!
//! Appliances are reached directly: no proxy settings are read from the environment. A
//! redirect is an answer like any other status but 200, reported as an error (credentials
//! are never sent elsewhere). Nothing is repeated here, retries being the plan's policy; the
//! one exception is a request that was never sent because its kept-alive connection had
//! closed while idle.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How long an idle connection is kept for the next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const USER_AGENT_VALUE: &str = concat!("dpplan/", env!("CARGO_PKG_VERSION"));

/// Why an exchange failed, before any appliance-level meaning is given to it.
#[derive(Debug)]
pub enum TransportError {
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    Connect(std::io::Error),
    /// The TLS handshake failed (an untrusted or invalid certificate, not TLS at all).
    Tls(std::io::Error),
    /// A time limit passed: what did not come in time (`"no answer"`), and the limit.
    Timeout(&'static str, Duration),
    /// The connection failed while the request or the answer was on its way.
    Http(hyper::Error),
}

/// A connection's sending half, idle since `since`.
struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Where and how to reach one appliance, and its idle connections.
pub struct Transport {
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
    /// The path, sent as the request target.
    uri: Uri,
    host_header: HeaderValue,
    auth: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Transport::new`] needs.
pub struct Settings<'a> {
    pub host: &'a str,
    pub port: u16,
    /// `Some` for HTTPS.
    pub tls: Option<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub path: &'a str,
    /// The `Authorization` header's value.
    pub auth: HeaderValue,
}

impl Transport {
    /// Checks the address; connects lazily, on the first request.
    pub fn new(s: Settings<'_>) -> Result<Transport, String> {
        let host = s.host.trim_start_matches('[').trim_end_matches(']');
        let host_header = HeaderValue::from_str(&authority(host, s.port))
            .map_err(|_| format!("host {:?} is not a valid address", s.host))?;
        let uri: Uri = s
            .path
            .parse()
            .map_err(|e| format!("path {:?}: {e}", s.path))?;
        let tls = match s.tls {
            None => None,
            Some(mut config) => {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("host {host:?} is not a TLS server name: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Transport {
            host: host.to_string(),
            port: s.port,
            tls,
            connect_timeout: s.connect_timeout,
            uri,
            host_header,
            auth: s.auth,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// `host:port`, as errors name the appliance's address.
    pub fn address(&self) -> String {
        self.host_header.to_str().unwrap_or("").to_string()
    }

    /// POSTs `body` and returns the answer's head; its body is read with [`Answer::chunk`].
    /// A request that found its kept-alive connection closed before it was sent goes out once
    /// more on a new connection.
    pub async fn post(&self, body: String) -> Result<Answer<'_>, TransportError> {
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(AUTHORIZATION, self.auth.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(mut sender) = self.checkout() {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.answer(sender, response)),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection had closed while idle.
                    Some(unsent) => request = unsent,
                    None => return Err(TransportError::Http(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(TransportError::Http)?;
        Ok(self.answer(sender, response))
    }

    fn answer(&self, sender: SendRequest<Full<Bytes>>, response: Response<Incoming>) -> Answer<'_> {
        let (head, body) = response.into_parts();
        Answer {
            status: head.status,
            body,
            sender: Some(sender),
            transport: self,
        }
    }

    /// The most recently used idle connection that is still open; stale ones are dropped.
    fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().ok()?;
        let now = Instant::now();
        idle.retain(|i| now.duration_since(i.since) < IDLE_TIMEOUT && !i.sender.is_closed());
        while let Some(i) = idle.pop() {
            if i.sender.is_ready() {
                return Some(i.sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// A new connection (TCP, TLS when configured, HTTP/1.1), its I/O driven by a task of
    /// its own until it closes.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let limit = self.connect_timeout;
        let timed_out = |_| TransportError::Timeout("no connection", limit);
        let tcp = tokio::time::timeout(limit, TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(timed_out)?
            .map_err(TransportError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let builder = hyper::client::conn::http1::Builder::new();
        match &self.tls {
            None => {
                let (sender, connection) = builder
                    .handshake(TokioIo::new(tcp))
                    .await
                    .map_err(TransportError::Http)?;
                tokio::spawn(connection);
                Ok(sender)
            }
            Some((connector, name)) => {
                let stream = tokio::time::timeout(limit, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(timed_out)?
                    .map_err(TransportError::Tls)?;
                let (sender, connection) = builder
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(TransportError::Http)?;
                tokio::spawn(connection);
                Ok(sender)
            }
        }
    }
}

/// `host:port`, an IPv6 address in brackets: `[::1]:5550`.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An answer whose body is still to be read. Read to its end, its connection goes back to
/// the pool; dropped before, the connection is closed.
pub struct Answer<'a> {
    pub status: StatusCode,
    body: Incoming,
    sender: Option<SendRequest<Full<Bytes>>>,
    transport: &'a Transport,
}

impl Answer<'_> {
    /// The next piece of the body; `None` at its end. `limit` bounds the wait for it.
    pub async fn chunk(
        &mut self,
        limit: Option<Duration>,
    ) -> Result<Option<Bytes>, TransportError> {
        loop {
            let frame = match limit {
                Some(limit) => tokio::time::timeout(limit, self.body.frame())
                    .await
                    .map_err(|_| TransportError::Timeout("no data", limit))?,
                None => self.body.frame().await,
            };
            match frame {
                None => {
                    if let Some(sender) = self.sender.take() {
                        self.transport.checkin(sender);
                    }
                    return Ok(None);
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
                Some(Err(e)) => {
                    self.sender = None;
                    return Err(TransportError::Http(e));
                }
            }
        }
    }
}

/// The TLS settings of a client: the certificates in `ca_pem` when given, else the public
/// web's CAs (Mozilla's list); `insecure` accepts any certificate (still encrypted).
pub fn tls_config(ca_pem: Option<&[u8]>, insecure: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no certificate in it".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// The verifier of `insecure = true`: any certificate is accepted; the handshake's own
/// signatures are still checked, so the connection is encrypted with the key presented.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
