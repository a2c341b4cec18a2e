//! Request bodies that carry a file: `<dp:set-file>BASE64</dp:set-file>` and
//! `<dp:input-file>BASE64</dp:input-file>` (do-import). The body is read as it arrives; the
//! base64 text of the first such element is decoded on the way into an [`Upload`] (memory up
//! to [`SPOOL_MEMORY`], an anonymous temporary file beyond) and spliced out of the XML, so the
//! rest of the request stays small and the simulator's memory stays bounded whatever the
//! file's size. A leaf: the request reader sees the XML with an empty text in its place.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use sha1::{Digest, Sha1};
use std::io::Write;
use std::sync::Arc;

/// Decoded bytes kept in memory before the upload moves to a temporary file.
pub const SPOOL_MEMORY: usize = 8 << 20;

/// Base64 characters decoded per step.
const DECODE_BLOCK: usize = 256 * 1024;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Where an uploaded file's bytes are.
#[derive(Debug, Clone)]
pub enum Stored {
    Memory(Bytes),
    /// An anonymous temporary file (removed when the last handle goes).
    File {
        file: Arc<std::fs::File>,
        size: u64,
    },
}

impl Stored {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Stored::Memory(b) => b.len() as u64,
            Stored::File { size, .. } => *size,
        }
    }

    /// Reads up to `buf.len()` bytes at `offset`; returns how many.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stored::Memory(b) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
                let n = buf.len().min(b.len() - start);
                buf[..n].copy_from_slice(&b[start..start + n]);
                Ok(n)
            }
            Stored::File { file, size } => {
                let want = (buf.len() as u64).min(size.saturating_sub(offset)) as usize;
                read_file_at(file, offset, &mut buf[..want])
            }
        }
    }

    /// The whole content, when it is at most `limit` bytes.
    pub fn bytes(&self, limit: u64) -> Result<Bytes, String> {
        if self.size() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        match self {
            Stored::Memory(b) => Ok(b.clone()),
            Stored::File { size, .. } => {
                let mut out = vec![0u8; *size as usize];
                let mut done = 0;
                while done < out.len() {
                    let n = self
                        .read_at(done as u64, &mut out[done..])
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Err("the stored file is shorter than its size".into());
                    }
                    done += n;
                }
                Ok(Bytes::from(out))
            }
        }
    }
}

#[cfg(unix)]
fn read_file_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_file_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// A decoded upload: its bytes, and their hex SHA-1 (computed on the way in).
#[derive(Debug, Clone)]
pub struct Upload {
    pub stored: Stored,
    pub sha1: String,
}

/// Decoded bytes on their way into memory or a temporary file.
struct Spool {
    memory: Vec<u8>,
    file: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    sha1: Sha1,
}

impl Spool {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sha1.update(bytes);
        if self.file.is_none() && self.memory.len() + bytes.len() > SPOOL_MEMORY {
            let mut file = std::io::BufWriter::with_capacity(256 * 1024, tempfile::tempfile()?);
            file.write_all(&self.memory)?;
            self.file = Some((file, self.memory.len() as u64));
            self.memory = Vec::new();
        }
        match &mut self.file {
            Some((file, size)) => {
                file.write_all(bytes)?;
                *size += bytes.len() as u64;
            }
            None => self.memory.extend_from_slice(bytes),
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<Upload> {
        let sha1 = hex::encode(self.sha1.finalize());
        let stored = match self.file {
            Some((file, size)) => {
                let file = file.into_inner().map_err(|e| e.into_error())?;
                Stored::File {
                    file: Arc::new(file),
                    size,
                }
            }
            None => Stored::Memory(Bytes::from(self.memory)),
        };
        Ok(Upload { stored, sha1 })
    }
}

/// Base64 text decoded as it streams: whitespace skipped, anything else that is not base64
/// (an entity reference included) makes the upload invalid.
struct Decoder {
    pending: Vec<u8>,
    out: Vec<u8>,
    padded: bool,
    error: Option<String>,
    spool: Spool,
}

impl Decoder {
    fn push(&mut self, text: &[u8]) {
        // Runs between whitespace are copied whole (memchr is fast even in a debug build);
        // the base64 decoder rejects any other character.
        let mut start = 0;
        for end in memchr::memchr3_iter(b'\n', b'\r', b' ', text).chain([text.len()]) {
            let run = &text[start..end];
            start = end + 1;
            let mut tab = 0;
            for stop in memchr::memchr_iter(b'\t', run).chain([run.len()]) {
                self.push_run(&run[tab..stop]);
                tab = stop + 1;
            }
        }
    }

    fn push_run(&mut self, run: &[u8]) {
        if run.is_empty() || self.error.is_some() {
            return;
        }
        if self.padded && run.iter().any(|&c| c != b'=') {
            // Padding ends the data.
            self.error = Some("the file is not valid base64".into());
            return;
        }
        self.padded |= run.ends_with(b"=");
        self.pending.extend_from_slice(run);
        if self.pending.len() >= DECODE_BLOCK {
            self.decode(false);
        }
    }

    /// Decodes the pending characters: whole groups of four, or everything at the end.
    fn decode(&mut self, last: bool) {
        let n = if last {
            self.pending.len()
        } else {
            self.pending.len() / 4 * 4
        };
        if n == 0 || self.error.is_some() {
            return;
        }
        self.out.resize(n / 4 * 3 + 3, 0);
        match LENIENT.decode_slice(&self.pending[..n], &mut self.out) {
            Ok(written) => {
                if let Err(e) = self.spool.write(&self.out[..written]) {
                    self.error = Some(format!("cannot store the file: {e}"));
                }
            }
            Err(_) => self.error = Some("the file is not valid base64".into()),
        }
        self.pending.drain(..n);
    }

    fn finish(mut self) -> Result<Upload, String> {
        self.decode(true);
        if let Some(e) = self.error {
            return Err(e);
        }
        self.spool
            .finish()
            .map_err(|e| format!("cannot store the file: {e}"))
    }
}

enum Phase {
    /// Looking for the opening tag of a file element.
    Head,
    /// Inside its text.
    Text(Box<Decoder>),
    /// After it (or after a request without one).
    Tail(Box<Decoder>),
}

/// Splits a request body as it arrives into its XML (with the file element's text removed,
/// at most `cap` bytes) and the decoded file.
pub struct Splicer {
    xml: Vec<u8>,
    cap: usize,
    scan_from: usize,
    phase: Phase,
}

/// The XML of a request and, when it carried a file element, the decoded file (or why it
/// could not be decoded).
pub type Spliced = (Vec<u8>, Option<Result<Upload, String>>);

impl Splicer {
    pub fn new(cap: usize) -> Splicer {
        Splicer {
            xml: Vec::new(),
            cap,
            scan_from: 0,
            phase: Phase::Head,
        }
    }

    /// Takes the next piece of the body. `Err`: the XML around the file is over `cap`.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<(), String> {
        loop {
            match &mut self.phase {
                Phase::Head => {
                    self.xml.extend_from_slice(chunk);
                    match self.find_file_tag() {
                        Some(end) => {
                            let rest = self.xml.split_off(end);
                            self.phase = Phase::Text(Box::new(Decoder {
                                pending: Vec::new(),
                                out: Vec::new(),
                                padded: false,
                                error: None,
                                spool: Spool {
                                    memory: Vec::new(),
                                    file: None,
                                    sha1: Sha1::new(),
                                },
                            }));
                            if rest.is_empty() {
                                break;
                            }
                            // The text (and maybe more) arrived with the tag: go round.
                            return self.push(&rest);
                        }
                        None => break,
                    }
                }
                Phase::Text(decoder) => match memchr::memchr(b'<', chunk) {
                    Some(at) => {
                        decoder.push(&chunk[..at]);
                        chunk = &chunk[at..];
                        let Phase::Text(decoder) = std::mem::replace(&mut self.phase, Phase::Head)
                        else {
                            break;
                        };
                        self.phase = Phase::Tail(decoder);
                    }
                    None => {
                        decoder.push(chunk);
                        break;
                    }
                },
                Phase::Tail(_) => {
                    self.xml.extend_from_slice(chunk);
                    break;
                }
            }
        }
        if self.xml.len() > self.cap {
            return Err(format!("the request is larger than {} bytes", self.cap));
        }
        Ok(())
    }

    /// The position just after the opening tag of the first `set-file` or `input-file`
    /// element with content, once the whole tag has arrived.
    fn find_file_tag(&mut self) -> Option<usize> {
        let xml = &self.xml;
        let mut i = self.scan_from;
        while let Some(at) = memchr::memchr(b'<', &xml[i..]).map(|p| p + i) {
            let name_end = xml[at + 1..]
                .iter()
                .position(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
                .map(|p| p + at + 1);
            let Some(name_end) = name_end else {
                self.scan_from = at;
                return None;
            };
            let name = &xml[at + 1..name_end];
            let local = name.rsplit(|c| *c == b':').next().unwrap_or(name);
            if local != b"set-file" && local != b"input-file" {
                i = at + 1;
                continue;
            }
            // The tag's end, outside quoted attribute values.
            let mut quote = None;
            let mut end = None;
            for (j, &c) in xml.iter().enumerate().skip(name_end) {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(c),
                    (None, b'>') => {
                        end = Some(j);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                self.scan_from = at;
                return None;
            };
            if xml[end - 1] == b'/' {
                i = end;
                continue;
            }
            return Some(end + 1);
        }
        self.scan_from = xml.len();
        None
    }

    /// The XML and the decoded file, if there was one.
    pub fn finish(self) -> Spliced {
        match self.phase {
            Phase::Head => (self.xml, None),
            Phase::Text(decoder) | Phase::Tail(decoder) => (self.xml, Some(decoder.finish())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(body: &[u8], piece: usize) -> Spliced {
        let mut s = Splicer::new(1 << 20);
        for chunk in body.chunks(piece) {
            s.push(chunk).unwrap();
        }
        s.finish()
    }

    #[test]
    fn the_file_streams_out_of_the_xml_in_any_pieces() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: String = encoded
            .as_bytes()
            .chunks(76)
            .map(|l| format!("{}\n", String::from_utf8_lossy(l)))
            .collect();
        let body = format!(
            "<env:Envelope><env:Body><dp:request domain=\"d\"><dp:set-file name=\"temporary:///a&gt;b/f.bin\">{wrapped}</dp:set-file></dp:request></env:Body></env:Envelope>"
        );
        for piece in [1, 7, 100, 4096, body.len()] {
            let (xml, upload) = splice(body.as_bytes(), piece);
            assert_eq!(
                String::from_utf8(xml).unwrap(),
                "<env:Envelope><env:Body><dp:request domain=\"d\"><dp:set-file name=\"temporary:///a&gt;b/f.bin\"></dp:set-file></dp:request></env:Body></env:Envelope>"
            );
            let upload = upload.unwrap().unwrap();
            assert_eq!(upload.stored.bytes(1 << 20).unwrap(), data);
            assert_eq!(upload.sha1, hex::encode(Sha1::digest(&data)));
        }
    }

    #[test]
    fn large_uploads_go_to_a_file_and_read_back() {
        let data: Vec<u8> = (0..(SPOOL_MEMORY + 12_345) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let body = format!(
            "<r><input-file>{}</input-file></r>",
            base64::engine::general_purpose::STANDARD.encode(&data)
        );
        let (_, upload) = splice(body.as_bytes(), 65_536);
        let upload = upload.unwrap().unwrap();
        assert!(matches!(upload.stored, Stored::File { .. }));
        assert_eq!(upload.stored.size(), data.len() as u64);
        let mut part = vec![0u8; 100];
        upload
            .stored
            .read_at(SPOOL_MEMORY as u64, &mut part)
            .unwrap();
        assert_eq!(part, data[SPOOL_MEMORY..SPOOL_MEMORY + 100]);
    }

    #[test]
    fn bad_text_is_reported_and_other_requests_pass_through() {
        let (_, upload) = splice(b"<r><set-file name='x'>QUJD*RA==</set-file></r>", 3);
        assert!(upload.unwrap().is_err());
        let (_, upload) = splice(b"<r><set-file name='x'>QQ==QQ==</set-file></r>", 3);
        assert!(upload.unwrap().is_err());
        let (xml, upload) = splice(b"<r><set-file name='x'/><get-file name='y'/></r>", 2);
        assert!(upload.is_none());
        assert_eq!(xml, b"<r><set-file name='x'/><get-file name='y'/></r>");
        let mut s = Splicer::new(10);
        assert!(s.push(b"<r>0123456789</r>").is_err());
    }
}
