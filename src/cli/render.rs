//! Diagnostics rendered for people (miette) and machines (JSON, SARIF 2.1.0).

use crate::diag::{Code, Diagnostic, Severity, SourceMap};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode};
use serde_json::{json, Value};
use std::fmt;

/// One diagnostic with its source, in the shape miette renders.
struct Report<'a> {
    diag: &'a Diagnostic,
    source: Option<&'a NamedSource<String>>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span?;
        self.source?;
        let label = (!self.diag.label.is_empty()).then(|| self.diag.label.clone());
        let mut labels = vec![LabeledSpan::new_primary_with_span(
            label,
            (span.start as usize, span.len()),
        )];
        for (s, text) in &self.diag.secondary {
            if s.file == span.file {
                labels.push(LabeledSpan::new_with_span(
                    Some(text.clone()),
                    (s.start as usize, s.len()),
                ));
            }
        }
        Some(Box::new(labels.into_iter()))
    }
}

/// Lines longer than this are not shown in snippets.
const LONG_LINE: usize = 1000;

/// Renders diagnostics for a terminal or a log.
pub struct Human {
    handler: GraphicalReportHandler,
    sources: Vec<NamedSource<String>>,
}

impl Human {
    /// A renderer over `sources`, with colour when asked for.
    pub fn new(sources: &SourceMap, color: bool) -> Human {
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme)
            .with_links(false)
            .with_width(100);
        let sources = sources
            .iter()
            .map(|(_, f)| NamedSource::new(f.name.clone(), f.text.to_string()))
            .collect();
        Human { handler, sources }
    }

    /// One diagnostic as text. A diagnostic on a very long line is shown without its
    /// snippet, with its `file:line:col`: a snippet would repeat the whole line.
    pub fn render(&self, d: &Diagnostic) -> String {
        let mut source = d.span.and_then(|s| self.sources.get(s.file.0 as usize));
        let mut at = None;
        if let (Some(span), Some(src)) = (d.span, source) {
            let text = src.inner().as_str();
            let start = (span.start as usize).min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            if line_end - line_start > LONG_LINE {
                let line = text[..start].matches('\n').count() + 1;
                let col = text[line_start..start].chars().count() + 1;
                at = Some(format!("  at {}:{line}:{col}\n", src.name()));
                source = None;
            }
        }
        let report = Report { diag: d, source };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &report).is_err() {
            out = format!("{}: {} [{}]\n", d.severity().as_str(), d.message, d.code);
        }
        if let Some(at) = at {
            out.push_str(&at);
        }
        out
    }
}

/// Where a diagnostic is, as JSON and SARIF want it: file, line, column, end line, end column.
fn position(
    sources: &SourceMap,
    d: &Diagnostic,
    root: &str,
) -> (String, Value, Value, Value, Value) {
    match d.span {
        Some(s) => {
            let f = sources.get(s.file);
            let (l, c) = f.line_col(s.start);
            let (el, ec) = f.line_col(s.end);
            (f.name.clone(), json!(l), json!(c), json!(el), json!(ec))
        }
        None => (
            root.to_string(),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ),
    }
}

/// One diagnostic as the JSON object `--format json` prints.
pub fn json_object(sources: &SourceMap, d: &Diagnostic, root: &str) -> Value {
    let (file, line, column, end_line, end_column) = position(sources, d, root);
    json!({
        "code": d.code.as_str(),
        "severity": d.severity().as_str(),
        "message": d.message,
        "file": file,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "help": d.help,
    })
}

/// A SARIF 2.1.0 log of `results` (JSON objects made by [`json_object`]).
pub fn sarif(results: &[Value]) -> Value {
    let mut used: Vec<&str> = results.iter().filter_map(|r| r["code"].as_str()).collect();
    used.sort_unstable();
    used.dedup();
    let rules: Vec<Value> = used
        .iter()
        .filter_map(|c| Code::parse(c))
        .map(|c| {
            json!({
                "id": c.as_str(),
                "name": c.title(),
                "shortDescription": { "text": c.title() },
                "defaultConfiguration": { "level": c.severity().as_str() },
            })
        })
        .collect();
    let res: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut region = serde_json::Map::new();
            for (k, s) in [
                ("line", "startLine"),
                ("column", "startColumn"),
                ("end_line", "endLine"),
                ("end_column", "endColumn"),
            ] {
                if !r[k].is_null() {
                    region.insert(s.to_string(), r[k].clone());
                }
            }
            let mut text = r["message"].as_str().unwrap_or_default().to_string();
            if let Some(h) = r["help"].as_str() {
                text.push_str("\nhelp: ");
                text.push_str(h);
            }
            json!({
                "ruleId": r["code"],
                "level": r["severity"],
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": r["file"] },
                        "region": region,
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "dpplan",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": res,
        }],
    })
}
