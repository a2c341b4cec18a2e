//! What a domain export holds: its `export.xml` read into objects (class, name, properties)
//! and files (name and SHA-256 of the bytes the ZIP carries), for `diff` and the catalogue.
//!
//! The ZIP is read entry by entry: `export.xml` up to [`MAX_EXPORT_XML`] bytes, each file
//! hashed while it streams, so a hostile archive costs bounded memory.

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The largest `export.xml` read (a domain's configuration is kilobytes to a few megabytes).
pub const MAX_EXPORT_XML: u64 = 64 << 20;

/// An object's identity: (class, name).
pub type ObjectKey = (String, String);

/// One domain's configuration as an export carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportContent {
    /// `export-details/domain`, else the `configuration` element's `domain`.
    pub domain: String,
    /// `export-details/device-name`.
    pub device: String,
    /// `export-details/firmware-version`.
    pub firmware: String,
    /// Objects by (class, name): their properties in order, `name -> value`; a property given
    /// several times (a list) appears once per value.
    pub objects: BTreeMap<ObjectKey, Vec<(String, String)>>,
    /// Files by name (`local:///x.xsl`): SHA-256 (hex) of their bytes, or `missing` when the
    /// archive lacks the entry `export.xml` names.
    pub files: BTreeMap<String, String>,
}

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Not a ZIP, or a damaged one.
    #[error("not a readable ZIP archive: {0}")]
    Zip(String),
    /// No `export.xml`, or one that is not a DataPower configuration.
    #[error("{0}")]
    Format(String),
}

/// Reads the export ZIP at `path`.
pub fn read(path: &Path) -> Result<ExportContent, ExportError> {
    let file = std::fs::File::open(path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| ExportError::Zip(e.to_string()))?;
    let xml = {
        let entry = zip
            .by_name("export.xml")
            .map_err(|_| ExportError::Format("the archive has no export.xml".into()))?;
        let mut text = Vec::new();
        entry.take(MAX_EXPORT_XML + 1).read_to_end(&mut text)?;
        if text.len() as u64 > MAX_EXPORT_XML {
            return Err(ExportError::Format(format!(
                "export.xml is larger than {} MiB",
                MAX_EXPORT_XML >> 20
            )));
        }
        text
    };
    let (mut content, sources) = parse_export_xml(&xml)?;
    for (name, src) in sources {
        let digest = match zip.by_name(&src) {
            Ok(entry) => super::layout::hash_reader(entry)?.1,
            Err(_) => "missing".to_string(),
        };
        content.files.insert(name, digest);
    }
    Ok(content)
}

/// Whether the archive at `path` is an all-domains export holding `domain` (as `DOMAIN.zip`).
pub fn all_domains_holds(path: &Path, domain: &str) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    zip::ZipArchive::new(std::io::BufReader::new(file))
        .map(|z| z.index_for_name(&format!("{domain}.zip")).is_some())
        .unwrap_or(false)
}

/// The export of `domain` to import from the archive at `path`: the archive itself when it
/// is a domain's export (it has `export.xml`), else its `DOMAIN.zip` (an all-domains export)
/// copied into `scratch` (a file the caller removes).
pub fn domain_export(
    path: &Path,
    domain: &str,
    scratch: &Path,
) -> Result<std::path::PathBuf, ExportError> {
    let file = std::fs::File::open(path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| ExportError::Zip(e.to_string()))?;
    if zip.index_for_name("export.xml").is_some() {
        return Ok(path.to_path_buf());
    }
    let mut inner = zip.by_name(&format!("{domain}.zip")).map_err(|_| {
        ExportError::Format(format!(
            "neither a domain export (no export.xml) nor an all-domains export holding {domain}.zip"
        ))
    })?;
    let mut out = std::fs::File::create(scratch)?;
    std::io::copy(&mut inner, &mut out)?;
    out.sync_all()?;
    Ok(scratch.to_path_buf())
}

/// Parses `export.xml`: the content without file digests, and each file's (name, ZIP entry).
pub fn parse_export_xml(xml: &[u8]) -> Result<(ExportContent, Vec<(String, String)>), ExportError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut c = ExportContent::default();
    let mut files = Vec::new();
    // The element path from the root, by local name.
    let mut path: Vec<String> = Vec::new();
    // The object being read, and the property being read (its name, text so far).
    let mut object: Option<(ObjectKey, Vec<(String, String)>)> = None;
    let mut property: Option<(String, String)> = None;
    let mut detail = String::new();
    let mut root_seen = false;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| ExportError::Format(format!("export.xml is not well-formed XML: {e}")))?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                let attr = |key: &str| -> Option<String> {
                    e.attributes().flatten().find_map(|a| {
                        (a.key.local_name().as_ref() == key.as_bytes())
                            .then(|| {
                                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                    .ok()
                                    .map(|v| v.into_owned())
                            })
                            .flatten()
                    })
                };
                if path.is_empty() {
                    if name != "datapower-configuration" {
                        return Err(ExportError::Format(format!(
                            "export.xml is not a DataPower configuration (its root is <{name}>)"
                        )));
                    }
                    root_seen = true;
                }
                let depth = path.len();
                let parent = path.last().map(String::as_str);
                match (depth, parent) {
                    (1, _) if name == "configuration" => {
                        if let Some(d) = attr("domain") {
                            if c.domain.is_empty() {
                                c.domain = d;
                            }
                        }
                    }
                    (2, Some("configuration")) => {
                        let key = (name.clone(), attr("name").unwrap_or_default());
                        if empty {
                            c.objects.entry(key).or_default();
                        } else {
                            object = Some((key, Vec::new()));
                        }
                    }
                    (2, Some("files")) if name == "file" => {
                        if let Some(n) = attr("name") {
                            let src = attr("src").unwrap_or_default();
                            files.push((n, src));
                        }
                    }
                    (3, _) if object.is_some() => {
                        // A property; its attributes are part of its value (`class="..."`).
                        let mut value = String::new();
                        for a in e.attributes().flatten() {
                            if let Ok(v) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                                let k = String::from_utf8_lossy(a.key.local_name().as_ref())
                                    .into_owned();
                                if !k.starts_with("xmlns") {
                                    value.push_str(&format!("{k}={v} "));
                                }
                            }
                        }
                        if empty {
                            if let Some((_, props)) = object.as_mut() {
                                props.push((name.clone(), value.trim_end().to_string()));
                            }
                        } else {
                            property = Some((name.clone(), value));
                        }
                    }
                    _ => {}
                }
                if !empty {
                    path.push(name);
                }
                detail.clear();
            }
            Event::Text(t) => {
                let text = t.decode().map(|s| s.into_owned()).unwrap_or_default();
                match property.as_mut() {
                    Some((_, v)) => v.push_str(&text),
                    None => detail.push_str(&text),
                }
            }
            Event::GeneralRef(r) => {
                let text = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => r
                        .decode()
                        .ok()
                        .and_then(|n| quick_xml::escape::resolve_predefined_entity(&n))
                        .unwrap_or_default()
                        .to_string(),
                };
                match property.as_mut() {
                    Some((_, v)) => v.push_str(&text),
                    None => detail.push_str(&text),
                }
            }
            Event::CData(t) => {
                let text = String::from_utf8_lossy(&t).into_owned();
                if let Some((_, v)) = property.as_mut() {
                    v.push_str(&text);
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else { break };
                let depth = path.len();
                if depth == 3 && property.is_some() {
                    if let (Some((k, v)), Some((_, props))) = (property.take(), object.as_mut()) {
                        props.push((k, v.trim().to_string()));
                    }
                } else if depth == 2 && path.last().map(String::as_str) == Some("configuration") {
                    if let Some((key, props)) = object.take() {
                        c.objects.insert(key, props);
                    }
                } else if depth == 2 && path.last().map(String::as_str) == Some("export-details") {
                    let value = std::mem::take(&mut detail);
                    match name.as_str() {
                        "domain" => c.domain = value,
                        "device-name" => c.device = value,
                        "firmware-version" => c.firmware = value,
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !root_seen {
        return Err(ExportError::Format(
            "export.xml holds no DataPower configuration".into(),
        ));
    }
    Ok((c, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_objects_properties_and_files() {
        let xml = br#"<?xml version="1.0"?>
<datapower-configuration version="3">
  <export-details><domain>D1</domain><device-name>QA1</device-name>
    <firmware-version>IDG.10.5.0.5</firmware-version></export-details>
  <configuration domain="D1">
    <XMLFirewallService name="fw1" xmlns:env="http://www.w3.org/2003/05/soap-envelope">
      <mAdminState>enabled</mAdminState>
      <LocalPort>8080</LocalPort>
      <Handler class="HTTPSourceProtocolHandler">h1</Handler>
      <Handler class="HTTPSourceProtocolHandler">h2</Handler>
    </XMLFirewallService>
    <XMLManager name="default"/>
  </configuration>
  <files><file name="local:///a.xsl" src="local/a.xsl" location="local"/></files>
</datapower-configuration>"#;
        let (c, files) = parse_export_xml(xml).unwrap();
        assert_eq!((c.domain.as_str(), c.device.as_str()), ("D1", "QA1"));
        assert_eq!(c.firmware, "IDG.10.5.0.5");
        let fw = &c.objects[&("XMLFirewallService".to_string(), "fw1".to_string())];
        assert_eq!(fw[0], ("mAdminState".to_string(), "enabled".to_string()));
        assert_eq!(fw[1], ("LocalPort".to_string(), "8080".to_string()));
        assert_eq!(fw[3].1, "class=HTTPSourceProtocolHandler h2");
        assert!(c
            .objects
            .contains_key(&("XMLManager".to_string(), "default".to_string())));
        assert_eq!(
            files,
            [("local:///a.xsl".to_string(), "local/a.xsl".to_string())]
        );
    }

    #[test]
    fn refuses_what_is_not_a_configuration() {
        assert!(parse_export_xml(b"<html/>").is_err());
        assert!(parse_export_xml(b"").is_err());
        assert!(parse_export_xml(b"<datapower-configuration><a></b>").is_err());
    }
}
