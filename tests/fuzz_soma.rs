//! Fuzzing the SOMA answer parser and the streaming payload reader (proptest, bounded cases
//! so CI finishes in seconds): real device answers mutated at random, and hostile shapes at
//! sizes real answers never reach (deep nesting, floods of siblings and attributes, a payload
//! past its cap). Guards: no input panics or overflows the stack; every readable answer is
//! read through every reader; a tree is refused past its bounds rather than built.

use dpplan::appliance::parse::{self, MAX_DEPTH, MAX_ITEMS};
use dpplan::appliance::payload::decode_document;
use proptest::prelude::*;

fn fixtures() -> Vec<Vec<u8>> {
    let dir = crate::support::root().join("tests/fixtures/soma");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml" || e == "soap"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    out.sort();
    assert!(out.len() >= 10);
    // The do-import answer's shape (no device capture of it is among the fixtures).
    out.push(IMPORT_ANSWER.as_bytes().to_vec());
    out
}

const IMPORT_ANSWER: &str = r#"<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>
<dp:response xmlns:dp="http://www.datapower.com/schemas/management"><dp:import>
<import-results domain="DOMAIN1">
 <export-details><domain>DOMAIN1</domain><device-name>QA1</device-name></export-details>
 <imported-files><file name="local:///a.xsl" src="local/a.xsl" status="modified" overwrite="on"/></imported-files>
 <imported-objects><object class="XMLFirewallService" name="fw1" status="new" overwrite="on"/></imported-objects>
 <file-copy-log><file-result name="local:///a.xsl" result="ERROR"><reason>denied</reason></file-result></file-copy-log>
 <exec-script-results><cfg-result class="XMLFirewallService" name="fw1" status="ERROR">port in use</cfg-result></exec-script-results>
</import-results></dp:import></dp:response></env:Body></env:Envelope>"#;

const EXPORT_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<datapower-configuration version="3">
  <export-details><domain>D1</domain><device-name>QA1</device-name><firmware-version>IDG.10.5.0.5</firmware-version></export-details>
  <configuration domain="D1">
    <XMLFirewallService name="D1-fw" xmlns:env="http://www.w3.org/2003/05/soap-envelope">
      <mAdminState>enabled</mAdminState><LocalPort>8080</LocalPort>
      <Handler class="HTTPSourceProtocolHandler">h&amp;1</Handler>
    </XMLFirewallService>
    <XMLManager name="default"/>
  </configuration>
  <files><file name="local:///dp-D1.xsl" src="local/dp-D1.xsl" location="local" hash="x"/></files>
</datapower-configuration>"#;

/// Every reader over one document: errors are fine, panics are not.
fn read_all(xml: &[u8]) {
    if let Ok(root) = parse::parse_tree(xml) {
        let _ = parse::response(&root);
        let _ = parse::domains(&root);
        let _ = parse::firmware(&root, "FirmwareVersion3");
        let _ = parse::free_temporary_mib(&root);
        let _ = parse::config_has(&root, "CryptoCertificate", "c");
        let _ = parse::directory_files(&root, "temporary:", "temporary:///");
        let _ = parse::status_rows(&root, "DomainStatus");
        if let Ok(response) = parse::response(&root) {
            if let Ok(report) = dpplan::appliance::import::import_report(response, false) {
                let _ = (report.failures(), report.counts());
            }
        }
    }
    let _ = parse::document(xml);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let _ = decode_document(xml, &dest, 7, false);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Cut(usize),
    Repeat(usize, usize, usize),
    Insert(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Cut),
        (any::<usize>(), 1usize..64, 1usize..2000).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

fn apply(mut doc: Vec<u8>, m: &Mutation) -> Vec<u8> {
    if doc.is_empty() {
        return doc;
    }
    match m {
        Mutation::Flip(i, b) => {
            let i = i % doc.len();
            doc[i] = *b;
        }
        Mutation::Cut(i) => doc.truncate(i % doc.len()),
        Mutation::Repeat(i, n, k) => {
            let i = i % doc.len();
            let end = (i + n).min(doc.len());
            let piece = doc[i..end].to_vec();
            let mut out = doc[..end].to_vec();
            for _ in 0..*k {
                out.extend_from_slice(&piece);
            }
            out.extend_from_slice(&doc[end..]);
            doc = out;
        }
        Mutation::Insert(i, b) => {
            let i = i % doc.len();
            doc.splice(i..i, b.iter().copied());
        }
    }
    doc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_device_answers_never_panic(which in any::<usize>(), ms in prop::collection::vec(mutation(), 1..5)) {
        let all = fixtures();
        let mut doc = all[which % all.len()].clone();
        for m in &ms {
            doc = apply(doc, m);
        }
        read_all(&doc);
    }

    #[test]
    fn random_bytes_never_panic(doc in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_all(&doc);
    }

    /// An export's `export.xml`, mutated, and random bytes as an export archive: read or
    /// refused, never a panic.
    #[test]
    fn mutated_exports_never_panic(ms in prop::collection::vec(mutation(), 1..5), junk in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut doc = EXPORT_XML.as_bytes().to_vec();
        for m in &ms {
            doc = apply(doc, m);
        }
        let _ = dpplan::backups::export::parse_export_xml(&doc);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.zip");
        std::fs::write(&path, &junk).unwrap();
        prop_assert!(dpplan::backups::export::read(&path).is_err());
    }
}

/// An export whose `export.xml` is larger than the cap is refused, not read into memory.
#[test]
fn an_oversized_export_xml_is_refused() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("export.xml", options).unwrap();
    // Deflated, 65 MiB of spaces is a small file: a bomb's shape.
    let block = vec![b' '; 1 << 20];
    zip.write_all(b"<datapower-configuration>").unwrap();
    for _ in 0..65 {
        zip.write_all(&block).unwrap();
    }
    zip.finish().unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let e = dpplan::backups::export::read(&path).unwrap_err();
    assert!(e.to_string().contains("larger than"), "{e}");
}

/// Shapes far larger than real answers: each is refused with an error, quickly, without
/// building the tree it describes.
#[test]
fn hostile_shapes_are_refused() {
    let deep = format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000));
    let siblings = format!("<r>{}</r>", "<a/>".repeat(MAX_ITEMS * 2));
    let attrs = format!(
        "<r {}/>",
        (0..MAX_ITEMS * 2)
            .map(|i| format!("a{i}='x'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (name, doc) in [
        ("deep", deep),
        ("siblings", siblings),
        ("attributes", attrs),
    ] {
        let started = std::time::Instant::now();
        assert!(parse::parse_tree(doc.as_bytes()).is_err(), "{name}");
        read_all(doc.as_bytes());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{name}"
        );
    }
    // Real answers nest about ten deep: they parse.
    let real = format!(
        "{}{}",
        "<a>".repeat(MAX_DEPTH - 1),
        "</a>".repeat(MAX_DEPTH - 1)
    );
    assert!(parse::parse_tree(real.as_bytes()).is_ok());
}
