//! The SOMA client's HTTP transport: reqwest (hyper and its connection pool underneath), with
//! rustls for HTTPS.
//!
//! The management interface is one URL that takes a POST of XML and answers with XML. The
//! client is set up for exactly that: HTTP/1.1 only; appliances are reached directly (no
//! proxy settings are read from the environment); redirects are not followed but reported as
//! an answer like any other status but 200 (credentials are never sent elsewhere); no retries
//! beyond what hyper's pool does on its own (a request that found its kept-alive connection
//! closed before it was sent goes out on a new one), retries being the plan's policy. TLS is
//! this module's rustls configuration: the certificates of `tls_ca` exactly, else the public
//! web's CAs, or any certificate with `insecure`.

use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::StatusCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;

/// How long an idle connection is kept for the next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per appliance. Requests asked together (a backup's files, a
/// step's independent reads) open more connections while they run; as they finish, those
/// beyond this are closed, so a fleet of thousands keeps one connection per appliance and
/// not one per request it ever asked at once (each costs memory on both sides).
const IDLE_PER_APPLIANCE: usize = 1;

const USER_AGENT_VALUE: &str = concat!("dpplan/", env!("CARGO_PKG_VERSION"));

/// Why an exchange failed, before any appliance-level meaning is given to it.
#[derive(Debug)]
pub enum TransportError {
    /// The TCP connection could not be made (refused, unreachable, name not resolved).
    Connect(reqwest::Error),
    /// The TLS handshake failed (an untrusted or invalid certificate, not TLS at all).
    Tls(reqwest::Error),
    /// A time limit passed: what did not come in time (`"no answer"`), and the limit.
    Timeout(&'static str, Duration),
    /// The connection failed while the request or the answer was on its way.
    Http(reqwest::Error),
}

/// Where and how to reach one appliance: a reqwest client of its own (its pool keeps the
/// appliance's idle connections).
pub struct Transport {
    client: reqwest::Client,
    url: reqwest::Url,
    address: String,
    connect_timeout: Duration,
    auth: HeaderValue,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// What [`Transport::new`] needs.
pub struct Settings<'a> {
    pub host: &'a str,
    pub port: u16,
    /// `Some` for HTTPS.
    pub tls: Option<Tls>,
    pub connect_timeout: Duration,
    pub path: &'a str,
    /// The `Authorization` header's value.
    pub auth: HeaderValue,
}

/// How HTTPS certificates are checked: the CA certificates of `tls_ca` (PEM), else the public
/// web's; or not at all with `insecure`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tls {
    /// The PEM text of `tls_ca`, when given.
    pub ca_pem: Option<Vec<u8>>,
    /// Any certificate is accepted.
    pub insecure: bool,
}

/// One reqwest client (one pool) per way of connecting, shared by every appliance reached
/// that way: a fleet of thousands keeps one pool, not thousands (reqwest pools per host).
fn shared_client(tls: Option<&Tls>, connect_timeout: Duration) -> Result<reqwest::Client, String> {
    type Key = (Option<Tls>, Duration);
    static CLIENTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Key, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let key = (tls.cloned(), connect_timeout);
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let client = build_client(tls, connect_timeout)?;
    if let Ok(mut m) = clients.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

impl Transport {
    /// Checks the address and builds the client; connects lazily, on the first request.
    pub fn new(s: Settings<'_>) -> Result<Transport, String> {
        let host = s.host.trim_start_matches('[').trim_end_matches(']');
        let address = authority(host, s.port);
        let scheme = if s.tls.is_some() { "https" } else { "http" };
        let url = reqwest::Url::parse(&format!("{scheme}://{address}{}", s.path))
            .map_err(|e| format!("host {:?} is not a valid address: {e}", s.host))?;
        let client = shared_client(s.tls.as_ref(), s.connect_timeout)?;
        Ok(Transport {
            client,
            url,
            address,
            connect_timeout: s.connect_timeout,
            auth: s.auth,
        })
    }

    /// `host:port`, as errors name the appliance's address.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// POSTs `body` and returns the answer's head; its body is read with [`Answer::chunk`].
    pub async fn post(&self, body: String) -> Result<Answer, TransportError> {
        self.post_body(reqwest::Body::from(body), None).await
    }

    /// POSTs a body that streams (an upload: its length is announced, so the appliance
    /// sees a plain `Content-Length` request, not chunked transfer).
    pub async fn post_body(
        &self,
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<Answer, TransportError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, "text/xml; charset=utf-8");
        if let Some(n) = length {
            request = request.header(hyper::header::CONTENT_LENGTH, n);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(Answer {
            status: response.status(),
            response,
        })
    }

    /// A reqwest error as the kind of failure it is.
    fn classify(&self, e: reqwest::Error) -> TransportError {
        if e.is_connect() && e.is_timeout() {
            return TransportError::Timeout("no connection", self.connect_timeout);
        }
        if is_tls(&e) {
            return TransportError::Tls(e);
        }
        if e.is_connect() {
            return TransportError::Connect(e);
        }
        TransportError::Http(e)
    }
}

/// A reqwest client for one way of connecting.
fn build_client(tls: Option<&Tls>, connect_timeout: Duration) -> Result<reqwest::Client, String> {
    // reqwest asks the process for a rustls provider even for plain HTTP: ring, as our own
    // TLS configuration uses (a second install is refused, and harmless).
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never())
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(IDLE_PER_APPLIANCE)
        .tcp_nodelay(true)
        .user_agent(USER_AGENT_VALUE);
    if let Some(tls) = tls {
        let mut config = tls_config(tls.ca_pem.as_deref(), tls.insecure)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        builder = builder.tls_backend_preconfigured(config);
    }
    builder.build().map_err(|e| root_cause(&e))
}

/// Whether a TLS error is somewhere in `e`'s chain of causes (the connector wraps rustls's
/// error in I/O errors, whose own `source` skips what they wrap).
fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                return is_tls(inner);
            }
        }
        source = s.source();
    }
    false
}

/// The innermost error's words: `Connection refused (os error 111)`.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    loop {
        // An I/O error that wraps another: its `source` skips the wrapped one.
        if let Some(inner) = last
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            last = inner;
            continue;
        }
        match last.source() {
            Some(s) => last = s,
            None => return last.to_string(),
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
pub struct Answer {
    pub status: StatusCode,
    response: reqwest::Response,
}

impl Answer {
    /// The next piece of the body; `None` at its end. `limit` bounds the wait for it.
    pub async fn chunk(
        &mut self,
        limit: Option<Duration>,
    ) -> Result<Option<Bytes>, TransportError> {
        let next = match limit {
            Some(limit) => tokio::time::timeout(limit, self.response.chunk())
                .await
                .map_err(|_| TransportError::Timeout("no data", limit))?,
            None => self.response.chunk().await,
        };
        next.map_err(TransportError::Http)
    }
}

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
