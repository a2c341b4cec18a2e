//! Sending one message: a webhook's POST (reqwest), a syslog message (UDP datagram, or TCP
//! with octet counting), an e-mail (lettre, STARTTLS through rustls on ring).
//!
//! TLS (HTTPS webhooks, STARTTLS) trusts the public web's CAs (webpki-roots) and, when
//! `SSL_CERT_FILE` names a PEM file, the certificates in it too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls;

use super::message::{host_name, Channel, Notification};
use super::text::{email_subject, email_text, syslog_line};
use crate::appliance::http::root_cause;
use crate::check::{Email, Syslog};

/// The largest syslog datagram sent: what RFC 5426 asks every receiver to take.
const UDP_MAX: usize = 2048;

/// The largest syslog message sent over TCP.
const TCP_MAX: usize = 64 * 1024;

/// Certificates trusted beside the public web's CAs.
#[derive(Debug, Clone, Default)]
pub(super) enum Trust {
    /// None.
    #[default]
    Public,
    /// These (PEM), too.
    Extra(Vec<u8>),
    /// `SSL_CERT_FILE` could not be read: every TLS attempt fails with this.
    Broken(String),
}

impl Trust {
    /// From `SSL_CERT_FILE`, when it is set.
    pub fn from_env() -> Trust {
        match std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
            None => Trust::Public,
            Some(path) => match std::fs::read(&path) {
                Ok(pem) => Trust::Extra(pem),
                Err(e) => Trust::Broken(format!(
                    "cannot read SSL_CERT_FILE {}: {e}",
                    std::path::Path::new(&path).display()
                )),
            },
        }
    }

    fn extra(&self) -> Result<Option<&[u8]>, String> {
        match self {
            Trust::Public => Ok(None),
            Trust::Extra(pem) => Ok(Some(pem)),
            Trust::Broken(e) => Err(e.clone()),
        }
    }

    /// The rustls configuration of HTTPS webhooks.
    fn rustls(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(pem) = self.extra()? {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("SSL_CERT_FILE: not PEM certificates: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("SSL_CERT_FILE: unusable certificate: {e}"))?;
            }
        }
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

/// What sends messages: the webhook client (built on first use) and the TLS trust.
#[derive(Debug, Default)]
pub(super) struct Senders {
    pub trust: Trust,
    http: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl Senders {
    pub fn new(trust: Trust) -> Senders {
        Senders {
            trust,
            http: std::sync::OnceLock::new(),
        }
    }

    /// Sends `n` through `channel`, in at most `limit`.
    pub async fn send(
        &self,
        channel: &Channel,
        n: &Notification,
        limit: Duration,
    ) -> Result<(), String> {
        let sending = async {
            match channel {
                Channel::Webhook { url } => self.webhook(url, n, limit).await,
                Channel::Syslog(s) => syslog(s, n, limit).await,
                Channel::Email(e) => self.email(e, n, limit).await,
            }
        };
        match tokio::time::timeout(limit, sending).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}", seconds(limit))),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                // reqwest asks the process for a rustls provider even for plain HTTP: ring, as
                // the configuration below (a second install is refused, and harmless).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut config = self.trust.rustls()?;
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                reqwest::Client::builder()
                    .http1_only()
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .retry(reqwest::retry::never())
                    .user_agent(concat!("dpplan/", env!("CARGO_PKG_VERSION")))
                    .tls_backend_preconfigured(config)
                    .build()
                    .map_err(|e| root_cause(&e))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// POSTs the notification as JSON; any answer but 2xx is a failure (redirects are not
    /// followed).
    async fn webhook(&self, url: &str, n: &Notification, limit: Duration) -> Result<(), String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
        let answer = self
            .client()?
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(limit)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {}", seconds(limit))
                } else {
                    root_cause(&e)
                }
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else if status.is_redirection() {
            Err(format!("HTTP {status} (redirects are not followed)"))
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// Sends the e-mail: STARTTLS (required) unless `tls = false`, login when a user is
    /// given, the password read from its source now.
    async fn email(&self, e: &Email, n: &Notification, limit: Duration) -> Result<(), String> {
        let from: Mailbox = e
            .from
            .parse()
            .map_err(|err| format!("sender {:?}: {err}", e.from))?;
        let mut message = lettre::Message::builder()
            .from(from)
            .subject(email_subject(n))
            .header(ContentType::TEXT_PLAIN);
        for to in &e.to {
            let to: Mailbox = to
                .parse()
                .map_err(|err| format!("recipient {to:?}: {err}"))?;
            message = message.to(to);
        }
        let message = message
            .body(email_text(n))
            .map_err(|err| format!("the message: {err}"))?;
        let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.host)
            .port(e.port)
            .timeout(Some(limit))
            .hello_name(ClientId::Domain(host_name()));
        transport = if e.starttls {
            let mut tls = TlsParameters::builder(e.host.clone());
            if let Some(pem) = self.trust.extra()? {
                let certs =
                    Certificate::from_pem(pem).map_err(|err| format!("SSL_CERT_FILE: {err}"))?;
                tls = tls.add_root_certificate(certs);
            }
            let tls = tls.build_rustls().map_err(|err| err.to_string())?;
            transport.tls(Tls::Required(tls))
        } else {
            transport.tls(Tls::None)
        };
        if let Some(user) = &e.user {
            let password = match &e.password {
                Some(secret) => crate::secrets::read_secret(secret)
                    .map_err(|err| format!("the SMTP password: {err}"))?,
                None => String::new(),
            };
            transport = transport.credentials(Credentials::new(user.clone(), password));
        }
        transport
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| once_each(&err.to_string()))
    }
}

/// Sends the syslog message: one datagram over UDP (sent is delivered: UDP says no more),
/// or over TCP framed by octet counting (`LEN SP MSG`, RFC 6587 3.4.1).
async fn syslog(s: &Syslog, n: &Notification, limit: Duration) -> Result<(), String> {
    let addr = resolve(&s.host, s.port).await?;
    if s.udp {
        let local: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|e| e.to_string())?;
        socket
            .send_to(&syslog_line(n, UDP_MAX), addr)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let line = syslog_line(n, TCP_MAX);
    let mut framed = format!("{} ", line.len()).into_bytes();
    framed.extend_from_slice(&line);
    let sending = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(&framed).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(limit, sending).await {
        Ok(r) => r.map_err(|e| format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within {}", seconds(limit))),
    }
}

/// The first address of `host:port`.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))
}

/// An error text without a part said twice in a row: lettre's errors repeat their kind in
/// their source's words (`Connection error: Connection error: invalid peer certificate`).
fn once_each(text: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in text.split(": ") {
        if parts.last() != Some(&p) {
            parts.push(p);
        }
    }
    parts.join(": ")
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
