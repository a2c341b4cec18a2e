//! What an import did, or would do (a dry run), per object and per file: the
//! `<dp:import><import-results>` answer of `do-import`, read into an [`ImportReport`].

use super::parse::Node;
use serde::{Deserialize, Serialize};

/// One object of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedObject {
    /// Its class (`XMLFirewallService`).
    pub class: String,
    /// Its name.
    pub name: String,
    /// `new`, `modified` or `exists` (unchanged).
    pub status: String,
    /// The appliance's `cfg-result` status (`SUCCESS`, `ERROR`), when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The `cfg-result` message, when not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One file of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedFile {
    /// Its name (`local:///x.xsl`).
    pub name: String,
    /// `new`, `modified` or `same` (unchanged).
    pub status: String,
    /// The `file-result` (`OK`, `ignored`, `ERROR`), when the appliance gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Its reason, when not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An import's outcome, object by object and file by file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The domain imported into.
    pub domain: String,
    /// A dry run: nothing was changed.
    pub dry_run: bool,
    /// The objects.
    pub objects: Vec<ImportedObject>,
    /// The files.
    pub files: Vec<ImportedFile>,
}

/// Counts of an import report, for tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportCounts {
    /// Objects and files that are new.
    pub new: usize,
    /// Objects and files that change.
    pub modified: usize,
    /// Objects and files that stay as they are.
    pub unchanged: usize,
    /// Objects and files the appliance refused.
    pub errors: usize,
}

impl ImportObjectStatus for ImportedObject {
    fn failed(&self) -> bool {
        self.result
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case("SUCCESS"))
    }
    fn status(&self) -> &str {
        &self.status
    }
}

impl ImportObjectStatus for ImportedFile {
    fn failed(&self) -> bool {
        self.result
            .as_deref()
            .is_some_and(|r| !r.eq_ignore_ascii_case("OK") && !r.eq_ignore_ascii_case("ignored"))
    }
    fn status(&self) -> &str {
        &self.status
    }
}

/// What the counts need of an object or a file.
pub trait ImportObjectStatus {
    /// The appliance refused it.
    fn failed(&self) -> bool;
    /// `new`, `modified`, `exists`/`same`.
    fn status(&self) -> &str;
}

impl ImportReport {
    /// Why the import failed, one line per refused object or file; empty when it succeeded.
    pub fn failures(&self) -> Vec<String> {
        let objects = self.objects.iter().filter(|o| o.failed()).map(|o| {
            format!(
                "{} {}: {}{}",
                o.class,
                o.name,
                o.result.as_deref().unwrap_or("ERROR"),
                o.message
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        });
        let files = self.files.iter().filter(|f| f.failed()).map(|f| {
            format!(
                "file {}: {}{}",
                f.name,
                f.result.as_deref().unwrap_or("ERROR"),
                f.reason
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            )
        });
        objects.chain(files).collect()
    }

    /// New, modified, unchanged and refused objects and files.
    pub fn counts(&self) -> ImportCounts {
        let mut c = ImportCounts::default();
        let all = self
            .objects
            .iter()
            .map(|o| o as &dyn ImportObjectStatus)
            .chain(self.files.iter().map(|f| f as &dyn ImportObjectStatus));
        for x in all {
            if x.failed() {
                c.errors += 1;
            }
            match x.status() {
                "new" => c.new += 1,
                "modified" => c.modified += 1,
                _ => c.unchanged += 1,
            }
        }
        c
    }
}

/// Reads `import-results` out of a `do-import` answer (`response` is its `dp:response`).
pub fn import_report(response: &Node, dry_run: bool) -> Result<ImportReport, String> {
    let results = response
        .find("import-results")
        .ok_or("the answer has no import-results")?;
    let mut report = ImportReport {
        domain: results.attr("domain").unwrap_or_default().to_string(),
        dry_run,
        ..ImportReport::default()
    };
    if let Some(objects) = results.child("imported-objects") {
        for o in objects.children_named("object") {
            report.objects.push(ImportedObject {
                class: o.attr("class").unwrap_or_default().to_string(),
                name: o.attr("name").unwrap_or_default().to_string(),
                status: o.attr("status").unwrap_or_default().to_string(),
                result: None,
                message: None,
            });
        }
    }
    if let Some(files) = results.child("imported-files") {
        for f in files.children_named("file") {
            report.files.push(ImportedFile {
                name: f.attr("name").unwrap_or_default().to_string(),
                status: f.attr("status").unwrap_or_default().to_string(),
                result: None,
                reason: None,
            });
        }
    }
    if let Some(results) = results.child("exec-script-results") {
        for r in results.children_named("cfg-result") {
            let class = r.attr("class").unwrap_or_default();
            let name = r.attr("name").unwrap_or_default();
            let status = r.attr("status").unwrap_or_default().to_string();
            let message = Some(r.text.trim().to_string()).filter(|m| !m.is_empty());
            match report
                .objects
                .iter_mut()
                .find(|o| o.class == class && o.name == name)
            {
                Some(o) => {
                    o.result = Some(status);
                    o.message = message;
                }
                None => report.objects.push(ImportedObject {
                    class: class.to_string(),
                    name: name.to_string(),
                    status: String::new(),
                    result: Some(status),
                    message,
                }),
            }
        }
    }
    if let Some(log) = results.child("file-copy-log") {
        for r in log.children_named("file-result") {
            let name = r.attr("name").unwrap_or_default();
            let result = r.attr("result").unwrap_or_default().to_string();
            let reason = r
                .child("reason")
                .map(|n| n.text.trim().to_string())
                .filter(|m| !m.is_empty());
            match report.files.iter_mut().find(|f| f.name == name) {
                Some(f) => {
                    f.result = Some(result);
                    f.reason = reason;
                }
                None => report.files.push(ImportedFile {
                    name: name.to_string(),
                    status: String::new(),
                    result: Some(result),
                    reason,
                }),
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_objects_files_and_their_results() {
        let xml = br#"<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>
<dp:response xmlns:dp="http://www.datapower.com/schemas/management"><dp:import>
<import-results domain="D1">
 <imported-files><file name="local:///a.xsl" src="local/a.xsl" status="modified" overwrite="on"/></imported-files>
 <imported-objects>
  <object class="XMLFirewallService" name="fw1" status="modified" overwrite="on"/>
  <object class="XMLManager" name="default" status="exists" overwrite="on"/>
 </imported-objects>
 <file-copy-log><file-result name="local:///a.xsl" result="OK"/></file-copy-log>
 <exec-script-results>
  <cfg-result class="XMLFirewallService" name="fw1" status="ERROR">port in use</cfg-result>
  <cfg-result class="XMLManager" name="default" status="SUCCESS"/>
 </exec-script-results>
</import-results></dp:import></dp:response></env:Body></env:Envelope>"#;
        let root = crate::appliance::parse::document(xml).unwrap();
        let report = import_report(&root, true).unwrap();
        assert_eq!(report.domain, "D1");
        assert_eq!(report.objects.len(), 2);
        assert_eq!(
            report.failures(),
            ["XMLFirewallService fw1: ERROR (port in use)"]
        );
        let c = report.counts();
        assert_eq!((c.new, c.modified, c.unchanged, c.errors), (0, 2, 1, 1));
    }
}
