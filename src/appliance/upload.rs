//! The restore operations of [`SomaClient`]: requests that carry a local file as inline
//! base64 (`do-import`, `set-file`), streamed: the file is read and encoded a block at a time
//! into the request body, whose length is announced, so memory stays bounded whatever the
//! file's size; and the checkpoint and `SecureRestore` actions.

use super::client::SomaClient;
use super::import::{import_report, ImportReport};
use super::parse;
use super::soma::{self, Framed, ImportOptions};
use super::{ApplianceError, ErrorKind};
use base64::Engine as _;
use bytes::Bytes;
use std::path::Path;
use tokio::io::AsyncReadExt;

/// Bytes of the file encoded at a time (a multiple of 3: no padding inside the stream).
const BLOCK: usize = 3 * 256 * 1024;

/// The length of the base64 text of `n` bytes.
fn encoded_len(n: u64) -> u64 {
    n.div_ceil(3) * 4
}

/// The body of a request with `file`'s base64 between `frame`'s parts, and its length.
async fn framed_body(frame: Framed, file: &Path) -> std::io::Result<(reqwest::Body, u64)> {
    let f = tokio::fs::File::open(file).await?;
    let size = f.metadata().await?.len();
    let length = frame.head.len() as u64 + encoded_len(size) + frame.tail.len() as u64;
    enum State {
        Head(Framed, tokio::fs::File),
        Payload(String, tokio::fs::File, Vec<u8>),
        Done,
    }
    let stream = futures_util::stream::unfold(State::Head(frame, f), |state| async move {
        match state {
            State::Head(frame, f) => Some((
                Ok(Bytes::from(frame.head)),
                State::Payload(frame.tail, f, vec![0u8; BLOCK]),
            )),
            State::Payload(tail, mut f, mut buf) => {
                // Fill a whole block (reads may return less), so only the last one pads.
                let mut filled = 0;
                while filled < buf.len() {
                    match f.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => return Some((Err(e), State::Done)),
                    }
                }
                if filled == 0 {
                    return Some((Ok(Bytes::from(tail)), State::Done));
                }
                let text = base64::engine::general_purpose::STANDARD.encode(&buf[..filled]);
                Some((Ok(Bytes::from(text)), State::Payload(tail, f, buf)))
            }
            State::Done => None,
        }
    });
    Ok((reqwest::Body::wrap_stream(stream), length))
}

impl SomaClient {
    /// Sends `frame` with `file` inside, and parses the answer like any other.
    async fn send_file(
        &self,
        op: &str,
        frame: Framed,
        file: &Path,
    ) -> Result<parse::Node, ApplianceError> {
        let (body, length) = framed_body(frame, file).await.map_err(|e| {
            let text = format!("{}: {e}", file.display());
            self.at(
                op,
                ErrorKind::Io {
                    text,
                    cause: Some(std::sync::Arc::new(e)),
                },
            )
        })?;
        let limit = self.config().download_timeout;
        let buf = self
            .within(op, limit, self.read_whole_body(op, body, Some(length)))
            .await?;
        parse::document(&buf).map_err(|e| self.at(op, e))
    }

    /// `do-import` of export ZIP `zip` into `domain`.
    pub(super) async fn import_zip(
        &self,
        domain: &str,
        zip: &Path,
        options: &ImportOptions,
    ) -> Result<ImportReport, ApplianceError> {
        let op = if options.dry_run {
            "do-import (dry run)"
        } else {
            "do-import"
        };
        let root = self
            .send_file(op, soma::do_import(domain, options), zip)
            .await?;
        let response = parse::response(&root).map_err(|e| self.at(op, e))?;
        import_report(response, options.dry_run)
            .map_err(|text| self.at(op, ErrorKind::Malformed(text)))
    }

    /// `set-file` of local `file` as appliance file `name`.
    pub(super) async fn upload_file(&self, file: &Path, name: &str) -> Result<(), ApplianceError> {
        self.send_file("set-file", soma::set_file(name), file)
            .await
            .map(|_| ())
    }

    /// A checkpoint action on checkpoint `name` of `domain`.
    pub(super) async fn checkpoint_action(
        &self,
        domain: &str,
        action: &str,
        name: &str,
    ) -> Result<(), ApplianceError> {
        let op = format!("do-action {action}");
        self.call(&op, soma::checkpoint(domain, action, name))
            .await
            .map(|_| ())
    }

    /// `SecureRestore` from appliance directory `source`.
    pub(super) async fn secure_restore_from(
        &self,
        cred: &str,
        source: &str,
        validate: bool,
    ) -> Result<(), ApplianceError> {
        let op = if validate {
            "do-action SecureRestore (validate)"
        } else {
            "do-action SecureRestore"
        };
        self.call(op, soma::secure_restore(cred, source, validate))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_body_is_the_frame_around_the_files_base64() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        // Over two blocks, not a multiple of 3: the stream pads only at the end.
        let bytes: Vec<u8> = (0..(2 * BLOCK + 5)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&file, &bytes).unwrap();
        let frame = soma::set_file("temporary:///d/f.bin");
        let (body, length) = framed_body(frame.clone(), &file).await.unwrap();
        let all = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        assert_eq!(all.len() as u64, length);
        let text = String::from_utf8(all).unwrap();
        let expected = format!(
            "{}{}{}",
            frame.head,
            base64::engine::general_purpose::STANDARD.encode(&bytes),
            frame.tail
        );
        assert_eq!(text, expected);
        assert!(frame
            .head
            .ends_with("<dp:set-file name=\"temporary:///d/f.bin\">"));
        assert!(frame.tail.starts_with("</dp:set-file>"));
    }
}
