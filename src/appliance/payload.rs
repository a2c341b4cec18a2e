//! The streaming `dp:file` decoder: a response body goes in chunk by chunk; the base64 text
//! of `dp:file` comes out decoded into a file, with a running SHA-256. Memory stays bounded
//! whatever the payload size: the part before `dp:file` (capped), up to three base64
//! characters between chunks, one chunk of scratch, and the closing tags (capped).
//!
//! The head is parsed with quick-xml until the `file` element under `response` starts; from
//! there a scanner decodes everything up to the next `<`; the tail must close the document.
//! A response without `dp:file` is parsed whole, so its `dp:result` or SOAP Fault comes back
//! as the typed error. Synchronous on purpose: the client runs it on a blocking thread.

use super::error::ErrorKind;
use super::parse::document;
use super::types::Downloaded;
use quick_xml::events::Event;
use quick_xml::Reader;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Largest tail (after the base64 text) accepted.
const TAIL_CAP: usize = 64 * 1024;

/// Byte classes of the base64 scanner.
const B64: u8 = 0;
const SPACE: u8 = 1;
const NEWLINE: u8 = 2;
const INVALID: u8 = 3;

const CLASS: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=' {
            t[i] = B64;
        }
        i += 1;
    }
    t[b' ' as usize] = SPACE;
    t[b'\t' as usize] = SPACE;
    t[b'\n' as usize] = NEWLINE;
    t[b'\r' as usize] = NEWLINE;
    t
};

enum Phase {
    /// Before the content of `dp:file`: bytes are kept, parsed at growing sizes.
    Head { next_scan: usize },
    /// Inside the base64 text.
    Payload,
    /// After the base64 text: the closing tags.
    Tail,
}

/// The decoder's state for one response. Feed chunks with [`PayloadSink::push`], then call
/// [`PayloadSink::finish`]. The sink writes into a file the caller created; on error the
/// caller removes it (the sink never touches the path: after a cancelled download the path
/// may already belong to the next attempt).
pub struct PayloadSink {
    dest: PathBuf,
    head_cap: usize,
    phase: Phase,
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Whether the `file` element was empty (`<dp:file/>`): the tail has no `</file>`.
    self_closed: bool,
    out: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    /// Base64 characters not yet decoded (fewer than four after each push).
    pending: Vec<u8>,
    decoded: Vec<u8>,
    /// A space followed a base64 character on the current line.
    inline_space: bool,
    /// The current line holds base64 characters.
    line_has_b64: bool,
    /// Padding was decoded: only whitespace may follow.
    padded: bool,
    /// Offset of the payload text, for error messages.
    offset: u64,
    /// The most decoded bytes accepted.
    max_bytes: u64,
}

impl PayloadSink {
    /// A sink writing the payload into `file` (empty, just created at `dest`, which is named
    /// in error messages only); `head_cap` bounds the bytes kept before the payload (the whole
    /// document when it carries none).
    pub fn new(file: File, dest: &Path, head_cap: usize) -> Self {
        PayloadSink {
            dest: dest.to_path_buf(),
            head_cap,
            phase: Phase::Head { next_scan: 0 },
            head: Vec::new(),
            tail: Vec::new(),
            self_closed: false,
            out: BufWriter::with_capacity(256 * 1024, file),
            hasher: Sha256::new(),
            size: 0,
            pending: Vec::with_capacity(64 * 1024),
            decoded: Vec::with_capacity(48 * 1024),
            inline_space: false,
            line_has_b64: false,
            padded: false,
            offset: 0,
            max_bytes: u64::MAX,
        }
    }

    /// Refuses payloads that decode to more than `max_bytes` (as soon as they pass it).
    pub fn at_most(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Consumes the next chunk of the response body.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ErrorKind> {
        match self.phase {
            Phase::Head { next_scan } => {
                self.head.extend_from_slice(chunk);
                if self.head.len() < next_scan.min(self.head_cap) || self.try_start()? {
                    return Ok(());
                }
                if self.head.len() > self.head_cap {
                    return Err(ErrorKind::TooLarge(format!(
                        "response exceeds {} bytes before any payload",
                        self.head_cap
                    )));
                }
                // Parse again only once the head has doubled: linear work overall.
                self.phase = Phase::Head {
                    next_scan: (self.head.len() * 2).max(4096),
                };
                Ok(())
            }
            Phase::Payload => self.push_payload(chunk),
            Phase::Tail => self.push_tail(chunk),
        }
    }

    /// Looks for the start of the payload in the head; when found, moves to the payload (or
    /// tail) phase with the bytes after it and returns true.
    fn try_start(&mut self) -> Result<bool, ErrorKind> {
        let Some((content_at, self_closed)) = scan_head(&self.head) else {
            return Ok(false);
        };
        let rest = self.head.split_off(content_at);
        self.head = Vec::new();
        self.self_closed = self_closed;
        if self_closed {
            self.phase = Phase::Tail;
            self.push_tail(&rest)?;
        } else {
            self.phase = Phase::Payload;
            self.push_payload(&rest)?;
        }
        Ok(true)
    }

    fn push_payload(&mut self, chunk: &[u8]) -> Result<(), ErrorKind> {
        let end = memchr::memchr(b'<', chunk);
        let text = &chunk[..end.unwrap_or(chunk.len())];
        self.scan_base64(text)?;
        self.decode_pending(false)?;
        if let Some(end) = end {
            self.decode_pending(true)?;
            self.phase = Phase::Tail;
            self.push_tail(&chunk[end..])?;
        }
        Ok(())
    }

    /// Moves the base64 characters of `text` into `pending`, checking the alphabet and that
    /// spaces only surround lines (a space inside a line means the text is not base64).
    fn scan_base64(&mut self, text: &[u8]) -> Result<(), ErrorKind> {
        // Fast path, the usual case (one long line): no whitespace, nothing pending on the
        // line's state; the decoder itself rejects bytes outside the alphabet.
        if !self.inline_space && !self.padded && !has_control_or_space(text) {
            self.pending.extend_from_slice(text);
            self.line_has_b64 |= !text.is_empty();
            self.offset += text.len() as u64;
            return Ok(());
        }
        for (i, &b) in text.iter().enumerate() {
            match CLASS[b as usize] {
                B64 => {
                    if self.inline_space || self.padded && b != b'=' {
                        return Err(self.bad_char(b, i));
                    }
                    self.pending.push(b);
                    self.line_has_b64 = true;
                    if b == b'=' {
                        // Padding ends the data; decode what is complete so a later '=' or
                        // character is caught by the decoder or the check above.
                        self.padded |= self.pending.len() % 4 == 0;
                    }
                }
                SPACE => self.inline_space = self.line_has_b64,
                NEWLINE => {
                    self.inline_space = false;
                    self.line_has_b64 = false;
                }
                _ => return Err(self.bad_char(b, i)),
            }
        }
        self.offset += text.len() as u64;
        Ok(())
    }

    fn bad_char(&self, b: u8, i: usize) -> ErrorKind {
        let what = if b.is_ascii_graphic() || b == b' ' {
            format!("{:?}", b as char)
        } else {
            format!("byte 0x{b:02x}")
        };
        let what = if self.inline_space {
            format!("{what} after a space inside a line")
        } else if self.padded {
            format!("{what} after the padding")
        } else {
            what
        };
        ErrorKind::InvalidBase64(format!("{what} at offset {}", self.offset + i as u64))
    }

    /// Decodes the complete quartets of `pending`; at the end (`last`), also a final group of
    /// two or three characters (unpadded base64).
    fn decode_pending(&mut self, last: bool) -> Result<(), ErrorKind> {
        let mut whole = self.pending.len() / 4 * 4;
        if last {
            match self.pending.len() % 4 {
                0 => {}
                1 => {
                    return Err(ErrorKind::InvalidBase64(format!(
                        "{} characters: not a whole number of groups",
                        self.size / 3 * 4 + self.pending.len() as u64
                    )))
                }
                r => {
                    self.pending.extend(std::iter::repeat_n(b'=', 4 - r));
                    whole = self.pending.len();
                }
            }
        }
        if whole == 0 {
            return Ok(());
        }
        let out_len = whole / 4 * 3;
        if self.decoded.len() < out_len {
            self.decoded.resize(out_len, 0);
        }
        // SIMD decoding: on large payloads this is a quarter of the client's work otherwise.
        let n = base64_simd::STANDARD
            .decode(
                &self.pending[..whole],
                base64_simd::Out::from_slice(&mut self.decoded[..out_len]),
            )
            .map_err(|e| ErrorKind::InvalidBase64(format!("{e} near offset {}", self.offset)))?
            .len();
        // Padding ends the data: anything after it is an error.
        self.padded |= self.pending[whole - 1] == b'=';
        self.pending.drain(..whole);
        if self.size + n as u64 > self.max_bytes {
            return Err(ErrorKind::TooLarge(format!(
                "the file is larger than {} bytes, the most accepted for it",
                self.max_bytes
            )));
        }
        let bytes = &self.decoded[..n];
        self.hasher.update(bytes);
        self.size += n as u64;
        self.out
            .write_all(bytes)
            .map_err(|e| io_error(&self.dest, e))?;
        Ok(())
    }

    fn push_tail(&mut self, chunk: &[u8]) -> Result<(), ErrorKind> {
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > TAIL_CAP {
            return Err(ErrorKind::Malformed(format!(
                "more than {TAIL_CAP} bytes after the payload"
            )));
        }
        Ok(())
    }

    /// Ends the body: checks the document is complete, flushes and fsyncs the file.
    /// `empty_is_error` makes an empty payload an error (exports: out of temporary: space).
    pub fn finish(mut self, empty_is_error: bool) -> Result<Downloaded, ErrorKind> {
        if matches!(self.phase, Phase::Head { .. }) {
            self.try_start()?;
        }
        match self.phase {
            Phase::Head { .. } => {
                // No dp:file: the whole document says why (or is cut short).
                document(&self.head)?;
                Err(ErrorKind::Malformed("no dp:file in the response".into()))
            }
            Phase::Payload => Err(ErrorKind::truncated(format!(
                "body ends inside dp:file after {} decoded bytes",
                self.size
            ))),
            Phase::Tail => {
                check_tail(&self.tail, self.self_closed)?;
                if self.size == 0 && empty_is_error {
                    return Err(ErrorKind::Result(
                        "empty dp:file: the appliance could not build the payload \
                         (out of temporary: space?)"
                            .into(),
                    ));
                }
                let file = self
                    .out
                    .into_inner()
                    .map_err(|e| io_error(&self.dest, e.into_error()))?;
                file.sync_all().map_err(|e| io_error(&self.dest, e))?;
                Ok(Downloaded {
                    size: self.size,
                    sha256: hex::encode(self.hasher.finalize()),
                })
            }
        }
    }
}

/// Whether `text` holds a byte at or below the space (whitespace or a control character).
/// Branch-free over blocks, so the compiler vectorises it.
fn has_control_or_space(text: &[u8]) -> bool {
    text.chunks(64)
        .any(|block| block.iter().fold(false, |found, &b| found | (b <= b' ')))
}

fn io_error(path: &Path, e: std::io::Error) -> ErrorKind {
    ErrorKind::io(format!("{}: {e}", path.display()), e)
}

/// Removes what a failed download left at `dest`, if anything.
pub fn remove_partial(dest: &Path) {
    let _ = std::fs::remove_file(dest);
}

/// Finds where the content of `response/file` starts in a document prefix: the offset after
/// its start tag, and whether the element is empty (`<dp:file/>`). `None`: not (yet) seen.
fn scan_head(head: &[u8]) -> Option<(usize, bool)> {
    let mut reader = Reader::from_reader(head);
    let mut stack: Vec<Vec<u8>> = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                let name = e.local_name().as_ref().to_vec();
                if name == b"file" && stack.last().is_some_and(|p| p == b"response") {
                    return Some((reader.buffer_position() as usize, false));
                }
                stack.push(name);
            }
            Ok(Event::Empty(e)) => {
                if e.local_name().as_ref() == b"file"
                    && stack.last().is_some_and(|p| p == b"response")
                {
                    return Some((reader.buffer_position() as usize, true));
                }
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Checks the bytes after the payload close `file`, `response`, `Body` and `Envelope`, in
/// that order (prefixes ignored), with only whitespace between them.
fn check_tail(tail: &[u8], self_closed: bool) -> Result<(), ErrorKind> {
    let expected: &[&[u8]] = if self_closed {
        &[b"response", b"Body", b"Envelope"]
    } else {
        &[b"file", b"response", b"Body", b"Envelope"]
    };
    let mut rest = tail;
    for name in expected {
        rest = rest.trim_ascii_start();
        if rest.is_empty() {
            let name = String::from_utf8_lossy(name);
            return Err(ErrorKind::truncated(format!("body ends before </{name}>")));
        }
        let Some(after) = rest.strip_prefix(b"</") else {
            return Err(tail_error(rest));
        };
        let Some(close) = after.iter().position(|&b| b == b'>') else {
            return Err(ErrorKind::truncated("body ends inside a closing tag"));
        };
        let qname = after[..close].trim_ascii_end();
        let local = qname.rsplit(|&b| b == b':').next().unwrap_or(qname);
        if local != *name {
            return Err(tail_error(rest));
        }
        rest = &after[close + 1..];
    }
    if !rest.trim_ascii().is_empty() {
        return Err(ErrorKind::Malformed("content after the envelope".into()));
    }
    Ok(())
}

fn tail_error(rest: &[u8]) -> ErrorKind {
    let shown = String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned();
    ErrorKind::Malformed(format!("unexpected content after the payload: {shown:?}"))
}

/// Creates a file for writing, readable by its owner only (backups hold keys and password
/// maps), whatever the umask. An existing file is truncated and made private.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let f = o.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Reads a whole response (held in memory) through the streaming decoder: the code path of
/// downloads, for tests and fixtures.
pub fn decode_document(
    xml: &[u8],
    dest: &Path,
    chunk: usize,
    empty_is_error: bool,
) -> Result<Downloaded, ErrorKind> {
    let file = create_private(dest).map_err(|e| io_error(dest, e))?;
    let mut sink = PayloadSink::new(file, dest, 32 * 1024 * 1024);
    let result = xml
        .chunks(chunk.max(1))
        .try_for_each(|c| sink.push(c))
        .and_then(|()| sink.finish(empty_is_error));
    if result.is_err() {
        remove_partial(dest);
    }
    result
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod payload_tests;
