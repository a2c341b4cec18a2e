//! `do-import` of a domain export ZIP into a domain's running configuration: the archive's
//! `export.xml` (read with the simulator's own reader) and files compared with the domain,
//! object by object and file by file, applied unless it is a dry run, and the
//! `<dp:import><import-results>` answer devices give. Objects the archive does not name are
//! left alone (no reset). See docs/simulator.md "do-import".

use super::domain::{Config, Object};
use super::reply::{document, error_text, soap_fault, Reply, SomaRequest, STRAY_NS};
use super::request::{read_limited, Element};
use super::upload::Stored;
use bytes::Bytes;
use quick_xml::escape::escape;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};

/// The largest `export.xml` and file entry read from an archive.
const ENTRY_LIMIT: u64 = 64 << 20;
/// The most elements an `export.xml` may hold.
const EXPORT_ELEMENTS: usize = 500_000;

/// What an import is asked to do beyond the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportFault<'a> {
    /// `import-error`: the archive's last object fails with this message (and is not applied).
    pub fail_last: Option<&'a str>,
}

/// Reads a [`Stored`] upload as a seekable stream (the ZIP reader's input).
struct StoredReader<'a> {
    stored: &'a Stored,
    pos: u64,
}

impl Read for StoredReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stored.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for StoredReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let size = self.stored.size() as i128;
        let pos = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => size + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if pos < 0 {
            return Err(std::io::Error::other("seek before the start"));
        }
        self.pos = pos as u64;
        Ok(self.pos)
    }
}

/// An export as read from its archive.
struct Export {
    /// `export-details` children, in order.
    details: Vec<(String, String)>,
    /// In the archive's order.
    objects: Vec<Object>,
    /// `(name, src, bytes)`; bytes `None` when the archive lacks the entry.
    files: Vec<(String, String, Option<Bytes>)>,
}

fn read_entry<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, name: &str) -> Option<Bytes> {
    let entry = zip.by_name(name).ok()?;
    let mut out = Vec::new();
    entry.take(ENTRY_LIMIT).read_to_end(&mut out).ok()?;
    Some(Bytes::from(out))
}

fn read_export(stored: &Stored) -> Result<Export, String> {
    let reader = StoredReader { stored, pos: 0 };
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|_| "Import failed: the input file is not a ZIP archive.".to_string())?;
    let xml = read_entry(&mut zip, "export.xml")
        .ok_or_else(|| "Import failed: the archive has no export.xml.".to_string())?;
    let root = read_limited(&xml, EXPORT_ELEMENTS)
        .map_err(|e| format!("Import failed: export.xml is not valid: {e}."))?;
    if root.name != "datapower-configuration" {
        return Err("Import failed: export.xml is not a datapower-configuration.".into());
    }
    let details = root
        .child("export-details")
        .map(|d| {
            d.children
                .iter()
                .map(|c| (c.name.clone(), c.text.trim().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let objects = root
        .child("configuration")
        .map(|c| c.children.iter().map(object).collect())
        .unwrap_or_default();
    let mut files = Vec::new();
    for f in root
        .child("files")
        .map(|f| f.children_named("file").collect::<Vec<&Element>>())
        .unwrap_or_default()
    {
        let name = f.attr("name").unwrap_or("").to_string();
        let src = f.attr("src").unwrap_or("").to_string();
        let bytes = read_entry(&mut zip, &src);
        files.push((super::domain::file_name(&name), src, bytes));
    }
    Ok(Export {
        details,
        objects,
        files,
    })
}

fn object(e: &Element) -> Object {
    Object {
        class: e.name.clone(),
        name: e.attr("name").unwrap_or("").to_string(),
        properties: e
            .children
            .iter()
            .map(|p| (p.name.clone(), p.text.clone()))
            .collect(),
    }
}

fn flag(request: &Element, name: &str, default: bool) -> bool {
    match request.attr(name) {
        Some(v) => matches!(v.trim(), "true" | "1" | "on"),
        None => default,
    }
}

/// Answers `do-import` in `domain`, changing `running` unless it is a dry run.
pub fn do_import(
    running: &mut Config,
    domain: &str,
    request: &SomaRequest,
    fault: ImportFault<'_>,
) -> Reply {
    let e = &request.element;
    let source_type = e.attr("source-type").unwrap_or("ZIP");
    if source_type != "ZIP" {
        return error_text(&format!(
            "Import failed: source-type {source_type} is not supported (only ZIP)."
        ));
    }
    let upload = match &request.upload {
        Some(Ok(upload)) => upload,
        Some(Err(_)) => return error_text("Import failed: the input file is not valid base64."),
        None => return soap_fault("do-import needs dp:input-file"),
    };
    let export = match read_export(&upload.stored) {
        Ok(export) => export,
        Err(text) => return error_text(&text),
    };
    let dry_run = flag(e, "dry-run", false);
    let overwrite_files = flag(e, "overwrite-files", true);
    let overwrite_objects = flag(e, "overwrite-objects", true);
    let on_off = |b: bool| if b { "on" } else { "off" };

    let mut out = String::new();
    let pad = "               ";
    let _ = writeln!(
        out,
        "         <dp:import>\n            <import-results domain=\"{}\" xmlns:env=\"{STRAY_NS}\">\n{pad}<export-details>",
        escape(domain)
    );
    for (k, v) in &export.details {
        let _ = writeln!(out, "{pad}   <{k}>{}</{k}>", escape(v));
    }
    let _ = writeln!(
        out,
        "{pad}   <current-date>{}</current-date>\n{pad}</export-details>\n{pad}<imported-files>",
        chrono::Local::now().format("%Y-%m-%d")
    );
    // Files: compare, then copy (or not).
    let mut copy_log = String::new();
    for (name, src, bytes) in &export.files {
        let existing = running.files.get(name);
        let (status, result, reason) = match (bytes, existing) {
            (None, _) => ("new", "ERROR", Some("the file is missing from the archive")),
            (Some(_), None) => ("new", "OK", None),
            (Some(_), Some(_)) if !overwrite_files => (
                "same",
                "ignored",
                Some("the file exists and overwrite-files is off"),
            ),
            (Some(b), Some(old)) if b == old => ("same", "OK", None),
            (Some(_), Some(_)) => ("modified", "OK", None),
        };
        let _ = writeln!(
            out,
            "{pad}   <file name=\"{}\" src=\"{}\" status=\"{status}\" overwrite=\"{}\"/>",
            escape(name),
            escape(src),
            on_off(overwrite_files)
        );
        match reason {
            Some(reason) => {
                let _ = writeln!(
                    copy_log,
                    "{pad}   <file-result name=\"{}\" result=\"{result}\"><reason>{reason}</reason></file-result>",
                    escape(name)
                );
            }
            None => {
                let _ = writeln!(
                    copy_log,
                    "{pad}   <file-result name=\"{}\" result=\"{result}\"/>",
                    escape(name)
                );
            }
        }
        if let (false, "OK", Some(b)) = (dry_run, result, bytes) {
            running.files.insert(name.clone(), b.clone());
        }
    }
    let _ = writeln!(out, "{pad}</imported-files>\n{pad}<imported-objects>");
    // Objects: compare, then apply (all but a failing one).
    let mut exec_log = String::new();
    let last = export.objects.len().checked_sub(1);
    for (i, o) in export.objects.iter().enumerate() {
        let key = (o.class.clone(), o.name.clone());
        let status = match running.objects.get(&key) {
            None => "new",
            Some(_) if !overwrite_objects => "exists",
            Some(p) if *p == o.properties => "exists",
            Some(_) => "modified",
        };
        let _ = writeln!(
            out,
            "{pad}   <object class=\"{}\" name=\"{}\" status=\"{status}\" overwrite=\"{}\"/>",
            escape(&o.class),
            escape(&o.name),
            on_off(overwrite_objects)
        );
        let failure = fault.fail_last.filter(|_| !dry_run && Some(i) == last);
        match failure {
            Some(message) => {
                let _ = writeln!(
                    exec_log,
                    "{pad}   <cfg-result class=\"{}\" name=\"{}\" status=\"ERROR\">{}</cfg-result>",
                    escape(&o.class),
                    escape(&o.name),
                    escape(message)
                );
            }
            None => {
                let _ = writeln!(
                    exec_log,
                    "{pad}   <cfg-result class=\"{}\" name=\"{}\" status=\"SUCCESS\"/>",
                    escape(&o.class),
                    escape(&o.name)
                );
                let apply = status == "new" || (status == "modified" && overwrite_objects);
                if apply && !dry_run {
                    running.put(o.clone());
                }
            }
        }
    }
    let _ = write!(
        out,
        "{pad}</imported-objects>\n{pad}<file-copy-log>\n{copy_log}{pad}</file-copy-log>\n\
         {pad}<exec-script-results>\n{exec_log}{pad}</exec-script-results>\n            \
         </import-results>\n         </dp:import>"
    );
    Reply::Xml(document(&out))
}
