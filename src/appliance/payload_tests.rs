//! Unit and property tests of the payload decoder (`payload.rs`).

#[cfg(test)]
mod tests {
    use super::super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    const HEAD: &str = "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\">\
        <env:Body><dp:response xmlns:dp=\"http://www.datapower.com/schemas/management\">\
        <dp:timestamp>2020-02-10T05:03:35-05:00</dp:timestamp>";
    const TAIL: &str = "</dp:response></env:Body></env:Envelope>";

    fn file_doc(content: &str) -> String {
        format!("{HEAD}<dp:file name=\"x\">{content}</dp:file>{TAIL}")
    }

    fn decode(doc: &str, chunk: usize) -> Result<Vec<u8>, ErrorKind> {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let got = decode_document(doc.as_bytes(), &dest, chunk, false);
        match got {
            Ok(d) => {
                let bytes = std::fs::read(&dest).unwrap();
                assert_eq!(d.size, bytes.len() as u64);
                assert_eq!(d.sha256, hex::encode(Sha256::digest(&bytes)));
                Ok(bytes)
            }
            Err(e) => {
                assert!(!dest.exists(), "a failed decode leaves no file");
                Err(e)
            }
        }
    }

    fn is_invalid(r: Result<Vec<u8>, ErrorKind>) -> bool {
        matches!(r, Err(ErrorKind::InvalidBase64(_)))
    }

    #[test]
    fn wrapped_and_indented_lines_decode() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        for (sep, lead, trail) in [
            ("\n", "", ""),
            ("\r\n", "\n   ", "\n  "),
            ("\n      ", "\n      ", "\n   "),
        ] {
            let doc = file_doc(&format!("{lead}{}{trail}", lines.join(sep)));
            for chunk in [1, 5, 77, 4096] {
                assert_eq!(decode(&doc, chunk).unwrap(), data);
            }
        }
    }

    #[test]
    fn padding_rules() {
        assert_eq!(decode(&file_doc("QQ=="), 1).unwrap(), b"A");
        assert_eq!(decode(&file_doc("QUI="), 2).unwrap(), b"AB");
        assert_eq!(decode(&file_doc("QQ"), 1).unwrap(), b"A", "unpadded tail");
        assert_eq!(decode(&file_doc("QUI"), 1).unwrap(), b"AB");
        assert!(
            is_invalid(decode(&file_doc("QUJDR"), 3)),
            "one character left over"
        );
        for chunk in [1, 2, 4, 100] {
            assert!(
                is_invalid(decode(&file_doc("QQ==QQ=="), chunk)),
                "data after padding"
            );
            assert!(is_invalid(decode(&file_doc("QQ==\nQQ=="), chunk)));
        }
        assert!(
            is_invalid(decode(&file_doc("QU I="), 1)),
            "space inside a line"
        );
        assert!(is_invalid(decode(&file_doc("QU*="), 1)));
        assert!(
            is_invalid(decode(&file_doc("QUI=&#13;"), 1)),
            "references are not base64"
        );
    }

    #[test]
    fn empty_payloads() {
        for doc in [
            file_doc(""),
            format!("{HEAD}<dp:file/>{TAIL}"),
            file_doc("\n  "),
        ] {
            assert_eq!(decode(&doc, 3).unwrap(), b"");
            let dir = tempfile::tempdir().unwrap();
            let e = decode_document(doc.as_bytes(), &dir.path().join("o"), 3, true).unwrap_err();
            assert!(matches!(e, ErrorKind::Result(_)), "{e:?}");
        }
    }

    #[test]
    fn answers_without_payload_are_their_errors() {
        let result = format!("{HEAD}<dp:result>Cannot read the specified file</dp:result>{TAIL}");
        assert!(matches!(
            decode(&result, 7),
            Err(ErrorKind::Result(text)) if text == "Cannot read the specified file"
        ));
        let fault = "<env:Envelope xmlns:env=\"http://schemas.xmlsoap.org/soap/envelope/\"><env:Body>\
            <env:Fault><faultcode>env:Client</faultcode><faultstring>Internal Error (from client)</faultstring>\
            </env:Fault></env:Body></env:Envelope>";
        assert!(matches!(
            decode(fault, 7),
            Err(ErrorKind::Fault { code, text })
                if code == "env:Client" && text == "Internal Error (from client)"
        ));
        let ok = format!("{HEAD}<dp:result>OK</dp:result>{TAIL}");
        assert!(matches!(decode(&ok, 7), Err(ErrorKind::Malformed(_))));
    }

    #[test]
    fn truncation_anywhere_is_truncated() {
        let doc = file_doc("QUJDREVGR0g=");
        for cut in [
            0,
            10,
            HEAD.len() + 5,
            HEAD.len() + 20,
            doc.len() - 30,
            doc.len() - 1,
        ] {
            let e = decode(&doc[..cut], 4).unwrap_err();
            assert!(
                matches!(e, ErrorKind::Truncated { .. }),
                "cut at {cut}: {e:?}"
            );
        }
        let extra = format!("{HEAD}<dp:file>QQ==</dp:file><dp:more/>{TAIL}");
        assert!(matches!(decode(&extra, 4), Err(ErrorKind::Malformed(_))));
    }

    #[test]
    fn head_is_capped() {
        let big = format!(
            "{HEAD}<dp:status>{}</dp:status>{TAIL}",
            "<x>y</x>".repeat(10_000)
        );
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("o");
        let mut sink = PayloadSink::new(File::create(&dest).unwrap(), &dest, 1000);
        let e = big
            .as_bytes()
            .chunks(512)
            .try_for_each(|c| sink.push(c))
            .unwrap_err();
        assert!(matches!(e, ErrorKind::TooLarge(_)), "{e:?}");
    }

    /// A file that runs past the size it was listed with (or an export past the plan's
    /// limit) stops there, not gigabytes later.
    #[test]
    fn payload_is_capped() {
        use base64::Engine as _;
        let data = vec![7u8; 10_000];
        let doc = file_doc(&base64::engine::general_purpose::STANDARD.encode(&data));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("o");
        let mut sink = PayloadSink::new(File::create(&dest).unwrap(), &dest, 1 << 20).at_most(4096);
        let e = doc
            .as_bytes()
            .chunks(512)
            .try_for_each(|c| sink.push(c))
            .unwrap_err();
        assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");
        assert!(std::fs::metadata(&dest).unwrap().len() <= 4096 + 48 * 1024);
        let mut sink =
            PayloadSink::new(File::create(&dest).unwrap(), &dest, 1 << 20).at_most(10_000);
        doc.as_bytes()
            .chunks(512)
            .try_for_each(|c| sink.push(c))
            .unwrap();
        assert_eq!(sink.finish(false).unwrap().size, 10_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_bytes_any_wrapping_any_chunking(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            wrap in 0usize..100,
            chunk in 1usize..700,
        ) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
            let text = if wrap == 0 {
                b64
            } else {
                b64.as_bytes().chunks(wrap).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\n")
            };
            prop_assert_eq!(decode(&file_doc(&text), chunk).unwrap(), data);
        }
    }
}

#[cfg(test)]
mod fuzz {
    use super::super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/soma")
            .join(name);
        std::fs::read(path).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Damaged responses (bytes overwritten, cut short) never panic the decoder or the
        /// parser: they come back as typed errors, and no file is left on failure.
        #[test]
        fn damaged_responses_are_errors_not_panics(
            which in 0usize..4,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
            chunk in 1usize..300,
        ) {
            let name = ["export.soap", "get_file_gatewayscript_example_context.xml",
                "domain_status_list.xml", "ExecConfig_error.xml"][which];
            let mut bytes = fixture(name);
            for (at, b) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *b;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("out");
            if decode_document(&bytes, &dest, chunk, false).is_err() {
                prop_assert!(!dest.exists());
            }
            let _ = crate::appliance::parse::document(&bytes);
        }
    }
}
