//! The one error type of this layer: an [`ApplianceError`] says where (the device and the
//! operation) and its [`ErrorKind`] says what went wrong, with the retry decision.
//!
//! A leaf of the module: it imports no sibling. The response parsers and the payload decoder
//! know no device or operation and return a bare [`ErrorKind`]; the client attributes it
//! with [`ErrorKind::at`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// The underlying error a kind came from (the connection's, the file system's), kept for
/// [`Error::source`]. Shared so that errors stay cheap to clone.
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

/// A failure talking to an appliance: which device, which operation (e.g. `get-status
/// DomainStatus`, `do-action SecureBackup`), and what went wrong. Displays as
/// `DEVICE: OP: MESSAGE`; [`Error::source`] is the underlying error, when there is one.
#[derive(Debug, Clone)]
pub struct ApplianceError {
    /// The device's inventory name.
    pub device: String,
    /// The operation that failed.
    pub op: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl ApplianceError {
    /// An error of `kind` in operation `op` on `device`.
    pub fn new(device: impl Into<String>, op: impl Into<String>, kind: ErrorKind) -> Self {
        ApplianceError {
            device: device.into(),
            op: op.into(),
            kind,
        }
    }

    /// Whether repeating the operation may succeed ([`ErrorKind::is_transient`]).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The device the error concerns.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The operation that failed.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The text: the appliance's own words where it gave any ([`ErrorKind::text`]).
    pub fn text(&self) -> &str {
        self.kind.text()
    }
}

impl fmt::Display for ApplianceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.device, self.op, self.kind)
    }
}

impl Error for ApplianceError {
    // The kind's message is part of this one's; its cause is the next link.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.kind.source()
    }
}

/// What went wrong talking to an appliance, before or after it is attributed to a device and
/// an operation. Each kind carries a text: the appliance's own words where it gave any, the
/// root cause with the appliance's address for connection failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection could not be established (refused, unreachable, name not resolved).
    #[error("cannot connect: {text}")]
    Connect {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The connection was reset or closed before the response was complete.
    #[error("connection lost: {text}")]
    ConnectionLost {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Connecting, the request or a read took longer than its limit.
    #[error("timed out: {text}")]
    Timeout {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// TLS failed: certificate not trusted, wrong host name, handshake refused.
    #[error("TLS: {text}")]
    Tls {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// An HTTP status other than 200.
    #[error("HTTP {status}: {text}")]
    Http { status: u16, text: String },
    /// The appliance rejected the credentials (text as sent).
    #[error("{0}")]
    Auth(String),
    /// A SOAP Fault (`faultcode`, `faultstring`).
    #[error("SOAP fault {code}: {text}")]
    Fault { code: String, text: String },
    /// `dp:result` held an error text (or an error log) instead of `OK`.
    #[error("{0}")]
    Result(String),
    /// A `dp:file` payload that is not valid base64.
    #[error("invalid base64 payload: {0}")]
    InvalidBase64(String),
    /// The response ended before the document did.
    #[error("truncated response: {text}")]
    Truncated {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A response that is not the SOMA document expected.
    #[error("unexpected response: {0}")]
    Malformed(String),
    /// A response without payload larger than its cap, or a payload larger than its limit.
    #[error("{0}")]
    TooLarge(String),
    /// Writing the local file failed.
    #[error("{text}")]
    Io {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The connection settings cannot be used (unreadable CA file, bad address).
    #[error("invalid connection settings: {text}")]
    Config {
        text: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl ErrorKind {
    /// Attributes the failure to `device` and `op`.
    pub fn at(self, device: impl Into<String>, op: impl Into<String>) -> ApplianceError {
        ApplianceError::new(device, op, self)
    }

    /// Whether repeating the operation may succeed: refused or reset connections, timeouts
    /// and HTTP 5xx are transient; everything the appliance said on purpose is not.
    pub fn is_transient(&self) -> bool {
        match self {
            ErrorKind::Connect { .. } | ErrorKind::ConnectionLost { .. } => true,
            ErrorKind::Timeout { .. } => true,
            ErrorKind::Http { status, .. } => *status >= 500,
            ErrorKind::Tls { .. }
            | ErrorKind::Auth(_)
            | ErrorKind::Fault { .. }
            | ErrorKind::Result(_)
            | ErrorKind::InvalidBase64(_)
            | ErrorKind::Truncated { .. }
            | ErrorKind::Malformed(_)
            | ErrorKind::TooLarge(_)
            | ErrorKind::Io { .. }
            | ErrorKind::Config { .. } => false,
        }
    }

    /// The text: the appliance's own words where it gave any (a fault's string, not its code;
    /// an HTTP error's body or reason, not its status).
    pub fn text(&self) -> &str {
        match self {
            ErrorKind::Connect { text, .. }
            | ErrorKind::ConnectionLost { text, .. }
            | ErrorKind::Timeout { text, .. }
            | ErrorKind::Tls { text, .. }
            | ErrorKind::Http { text, .. }
            | ErrorKind::Fault { text, .. }
            | ErrorKind::Truncated { text, .. }
            | ErrorKind::Io { text, .. }
            | ErrorKind::Config { text, .. } => text,
            ErrorKind::Auth(text)
            | ErrorKind::Result(text)
            | ErrorKind::InvalidBase64(text)
            | ErrorKind::Malformed(text)
            | ErrorKind::TooLarge(text) => text,
        }
    }

    /// [`ErrorKind::Timeout`] with no underlying error (a limit of our own ran out).
    pub fn timeout(text: impl Into<String>) -> Self {
        ErrorKind::Timeout {
            text: text.into(),
            cause: None,
        }
    }

    /// [`ErrorKind::Truncated`] found in the document itself.
    pub fn truncated(text: impl Into<String>) -> Self {
        ErrorKind::Truncated {
            text: text.into(),
            cause: None,
        }
    }

    /// [`ErrorKind::ConnectionLost`] with no underlying error.
    pub fn connection_lost(text: impl Into<String>) -> Self {
        ErrorKind::ConnectionLost {
            text: text.into(),
            cause: None,
        }
    }

    /// [`ErrorKind::Io`] from a local file's error: `text` names the file and says what
    /// happened; `cause` is kept as the source.
    pub fn io(text: impl Into<String>, cause: std::io::Error) -> Self {
        ErrorKind::Io {
            text: text.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// [`ErrorKind::Io`] with no underlying I/O error (a worker that failed).
    pub fn io_text(text: impl Into<String>) -> Self {
        ErrorKind::Io {
            text: text.into(),
            cause: None,
        }
    }

    /// [`ErrorKind::Config`] with no underlying error.
    pub fn config(text: impl Into<String>) -> Self {
        ErrorKind::Config {
            text: text.into(),
            cause: None,
        }
    }
}
