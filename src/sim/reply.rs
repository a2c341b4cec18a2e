//! SOMA messages as the simulator sees them: the parsed request, the answer's shape before
//! transport faults, and the response documents formatted as devices format them (prefixes,
//! timestamp, stray namespace declarations, padded `OK`, both error shapes).

use super::request::Element as Node;
use super::upload::{Stored, Upload};
use crate::appliance::soma::{DP_NS, ENV_NS};
use quick_xml::escape::escape;
use std::time::Duration;

/// The stray namespace real devices put on each top-level child of status and filestore.
pub(crate) const STRAY_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// A parsed SOMA request.
#[derive(Debug, Clone)]
pub struct SomaRequest {
    /// The `domain` attribute of `dp:request` (`default` when absent).
    pub domain: String,
    /// The operation's local name: `get-status`, `do-action`, `get-file`...
    pub op: String,
    /// For `do-action`: the action's name (`SecureBackup`...).
    pub action: Option<String>,
    /// The operation element (a `set-file` or `input-file` element's text spliced out).
    pub element: Node,
    /// The file a `set-file` or `do-import` carried, decoded while the body arrived (`Err`:
    /// why it could not be decoded). `None` when the request had none.
    pub upload: Option<Result<Upload, String>>,
}

impl SomaRequest {
    /// The name operations are counted and faults matched by: the action for `do-action`,
    /// the operation otherwise.
    pub fn key(&self) -> &str {
        self.action.as_deref().unwrap_or(&self.op)
    }

    pub(crate) fn is_payload(&self) -> bool {
        matches!(self.op.as_str(), "get-file" | "do-export" | "do-backup")
    }
}

/// Parses a request envelope; `Err` is what the SOAP Fault will say.
pub fn parse_request(body: &[u8]) -> Result<SomaRequest, String> {
    let root = super::request::read(body)?;
    let request = root
        .child("Body")
        .and_then(|b| b.child("request"))
        .ok_or("no dp:request in env:Body")?;
    let element = request.children.first().ok_or("empty dp:request")?.clone();
    let action = if element.name == "do-action" {
        Some(
            element
                .children
                .first()
                .ok_or("empty do-action")?
                .name
                .clone(),
        )
    } else {
        None
    };
    Ok(SomaRequest {
        domain: request.attr("domain").unwrap_or("default").to_string(),
        op: element.name.clone(),
        action,
        element,
        upload: None,
    })
}

/// Where payload bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The [`super::content`] function: generated while streaming.
    Content { key: u64, size: u64 },
    /// Bytes held in memory (manifests, exports).
    Bytes(bytes::Bytes),
    /// An uploaded file (set-file).
    Stored(Stored),
}

impl Source {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Source::Content { size, .. } => *size,
            Source::Bytes(b) => b.len() as u64,
            Source::Stored(s) => s.size(),
        }
    }

    /// The whole content, when it is at most `limit` bytes.
    pub fn bytes(&self, limit: u64) -> Result<bytes::Bytes, String> {
        match self {
            _ if self.size() > limit => Err(format!("larger than {limit} bytes")),
            Source::Content { key, size } => {
                let mut buf = vec![0u8; *size as usize];
                super::content::fill(*key, 0, &mut buf);
                Ok(bytes::Bytes::from(buf))
            }
            Source::Bytes(b) => Ok(b.clone()),
            Source::Stored(s) => s.bytes(limit),
        }
    }
}

/// The shape of the answer before transport faults.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete SOMA document (HTTP 200, text/xml).
    Xml(String),
    /// A `dp:file` answer, streamed: document before, base64 of the source, document after.
    Payload {
        prefix: String,
        source: Source,
        suffix: String,
    },
    /// HTTP 500.
    Http500,
    /// Reset the connection without answering.
    Reset,
}

/// What the HTTP layer must send.
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Reply,
    /// Wait this long first.
    pub delay: Duration,
    /// Stop the body half way.
    pub truncate: bool,
    /// Put characters that are not base64 into the payload.
    pub corrupt: bool,
    /// After this answer the device restarts: down (connections refused) this long.
    pub restart: Option<Duration>,
}

impl Answer {
    /// The reply as it is: no delay, no cut, no corruption.
    pub fn plain(reply: Reply) -> Self {
        Answer {
            reply,
            delay: Duration::ZERO,
            truncate: false,
            corrupt: false,
            restart: None,
        }
    }
}

/// The device's local time, as its answers carry it. Formatted once per second: every
/// answer has one, and the local offset's lookup costs more than the rest of a status reply.
fn now_timestamp() -> String {
    static LAST: std::sync::Mutex<(u64, String)> = std::sync::Mutex::new((u64::MAX, String::new()));
    let second = chrono::Utc::now().timestamp() as u64;
    let Ok(mut last) = LAST.lock() else {
        return format_now();
    };
    if last.0 != second {
        *last = (second, format_now());
    }
    last.1.clone()
}

fn format_now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A SOMA response document around `inner` (already indented), as devices format it.
pub(crate) fn document(inner: &str) -> String {
    format!(
        "<env:Envelope xmlns:env=\"{ENV_NS}\">\n   <env:Body>\n      \
         <dp:response xmlns:dp=\"{DP_NS}\">\n         \
         <dp:timestamp>{}</dp:timestamp>\n{inner}\n      </dp:response>\n   </env:Body>\n\
         </env:Envelope>\n",
        now_timestamp()
    )
}

/// `OK`, padded as devices pad it.
pub(crate) fn ok() -> Reply {
    Reply::Xml(document(
        "         <dp:result>\n            OK\n         </dp:result>",
    ))
}

/// The plain error shape.
pub(crate) fn error_text(text: &str) -> Reply {
    Reply::Xml(document(&format!(
        "         <dp:result>{}</dp:result>",
        escape(text)
    )))
}

/// The error-log shape of newer firmware.
pub(crate) fn error_log(text: &str) -> Reply {
    Reply::Xml(document(&format!(
        "         <dp:result>\n            <error-log>\n               \
         <dp:log-event level=\"error\">{}</dp:log-event>\n            </error-log>\n         \
         </dp:result>",
        escape(text)
    )))
}

/// A SOAP Fault, as the appliance sends for requests the schema rejects.
pub fn soap_fault(detail: &str) -> Reply {
    let _ = detail; // devices do not say more than this
    Reply::Xml(format!(
        "<env:Envelope xmlns:env=\"{ENV_NS}\">\n   <env:Body>\n      <env:Fault>\n         \
         <faultcode>env:Client</faultcode>\n         \
         <faultstring>Internal Error (from client)</faultstring>\n      </env:Fault>\n   \
         </env:Body>\n</env:Envelope>\n"
    ))
}

/// `Authentication failure`, as devices answer wrong credentials.
pub fn auth_failure() -> Reply {
    error_text("Authentication failure")
}

pub(crate) fn status(rows: &[(&str, Vec<(&str, String)>)]) -> Reply {
    use std::fmt::Write as _;
    // Written in place (`write!` into one buffer): status answers are the simulator's most
    // frequent reply.
    let mut inner = String::with_capacity(512 * rows.len().max(1));
    inner.push_str("         <dp:status>\n");
    for (class, fields) in rows {
        let _ = writeln!(inner, "            <{class} xmlns:env=\"{STRAY_NS}\">");
        for (name, value) in fields {
            if value.is_empty() {
                let _ = writeln!(inner, "               <{name}/>");
            } else {
                let _ = writeln!(inner, "               <{name}>{}</{name}>", escape(value));
            }
        }
        let _ = writeln!(inner, "            </{class}>");
    }
    inner.push_str("         </dp:status>");
    Reply::Xml(document(&inner))
}

pub(crate) fn payload(name: Option<&str>, source: Source) -> Reply {
    const MARK: &str = "\u{1}PAYLOAD\u{1}";
    let open = match name {
        Some(name) => format!("<dp:file name=\"{}\">", escape(name)),
        None => "<dp:file>".to_string(),
    };
    let doc = document(&format!("         {open}{MARK}</dp:file>"));
    let (prefix, suffix) = doc.split_once(MARK).unwrap_or((&doc, ""));
    Reply::Payload {
        prefix: prefix.to_string(),
        source,
        suffix: suffix.to_string(),
    }
}
