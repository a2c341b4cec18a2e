//! SOMA response parsing for responses that carry no payload (their size is capped by the
//! client): quick-xml events into a small tree matched by local name, then one reader per
//! kind of answer. Tolerates the quirks of real devices: unqualified children, stray
//! namespace declarations, padded `OK`, both error shapes (text and error log).

use super::error::ErrorKind;
use super::types::{DomainStatus, Firmware, QuiesceState, RemoteFile};
use quick_xml::events::Event;
use quick_xml::Reader;

/// An element: local name, attributes by local name (namespace declarations left out), its
/// own text (without the indentation before its first text or child), its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Local name (prefix dropped).
    pub name: String,
    /// Attributes: local name and unescaped value.
    pub attrs: Vec<(String, String)>,
    /// The element's text content (direct text and references), unescaped.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Node>,
}

impl Node {
    /// The first child with local name `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with local name `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The attribute with local name `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text of child `name`, or `""`.
    pub fn child_text(&self, name: &str) -> &str {
        self.child(name).map(|c| c.text.trim()).unwrap_or("")
    }

    /// The first descendant (depth first, self excluded) with local name `name`.
    pub fn find(&self, name: &str) -> Option<&Node> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(found) = c.find(name) {
                return Some(found);
            }
        }
        None
    }

    fn collect_named<'a>(&'a self, name: &str, out: &mut Vec<&'a Node>) {
        for c in &self.children {
            if c.name == name {
                out.push(c);
            }
            c.collect_named(name, out);
        }
    }
}

fn local(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(name) => name.to_string(),
        Err(_) => String::from_utf8_lossy(name).into_owned(),
    }
}

/// How deep elements may nest. SOMA answers nest about ten deep; a hostile one nested
/// thousands deep would overflow the stack of every recursive walk (and of the tree's drop).
pub const MAX_DEPTH: usize = 128;

/// How many elements and attributes one document may hold: each costs about a hundred bytes
/// of tree for a few bytes of input, so this bounds an answer's tree (to some 30 MiB) whatever
/// its shape. The largest real answers (a filestore listing of thousands of files) hold tens
/// of thousands.
pub const MAX_ITEMS: usize = 250_000;

/// Parses a whole document into its root element. A document that ends inside an element is
/// [`ErrorKind::Truncated`]; other syntax errors, and documents nested deeper than
/// [`MAX_DEPTH`] or holding more than [`MAX_ITEMS`] elements and attributes, are
/// [`ErrorKind::Malformed`].
pub fn parse_tree(xml: &[u8]) -> Result<Node, ErrorKind> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut items = 0usize;
    let result = loop {
        if let Some(e) = tree_limit(stack.len(), items) {
            break Err(e);
        }
        let event = reader.read_event().map_err(|e| {
            if is_eof(&e) {
                ErrorKind::truncated(format!("document ends early: {e}"))
            } else {
                let position = reader.error_position();
                ErrorKind::Malformed(format!("XML error at byte {position}: {e}"))
            }
        })?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(ErrorKind::Malformed(
                    "content after the root element".into(),
                ));
            }
            Event::Start(e) => {
                let node = start_node(&e)?;
                items += 1 + node.attrs.len();
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = start_node(&e)?;
                items += 1 + node.attrs.len();
                close(node, &mut stack, &mut root);
            }
            Event::End(_) => {
                let node = stack
                    .pop()
                    .ok_or_else(|| ErrorKind::Malformed("unbalanced end tag".into()))?;
                close(node, &mut stack, &mut root);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    // Indentation before an element's first text or child is dropped: every
                    // reader trims, and containers then keep no text at all.
                    if top.text.is_empty() && t.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let text = t
                        .xml10_content()
                        .map_err(|e| ErrorKind::Malformed(format!("text: {e}")))?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t.into_inner()));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolve_ref(&r)?);
                }
            }
            Event::Eof => break Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    };
    if let Err(e) = result {
        drop_flat(stack, root);
        return Err(e);
    }
    if !stack.is_empty() {
        return Err(ErrorKind::truncated(format!(
            "document ends inside <{}>",
            stack.last().map(|n| n.name.as_str()).unwrap_or("")
        )));
    }
    root.ok_or_else(|| {
        if xml.iter().all(u8::is_ascii_whitespace) {
            ErrorKind::truncated("empty response body")
        } else {
            ErrorKind::Malformed("no XML element in the response".into())
        }
    })
}

/// The error for a tree past [`MAX_DEPTH`] or [`MAX_ITEMS`].
fn tree_limit(depth: usize, items: usize) -> Option<ErrorKind> {
    if depth > MAX_DEPTH {
        return Some(ErrorKind::Malformed(format!(
            "elements nested deeper than {MAX_DEPTH}"
        )));
    }
    if items > MAX_ITEMS {
        return Some(ErrorKind::Malformed(format!(
            "more than {MAX_ITEMS} elements and attributes"
        )));
    }
    None
}

/// Frees a partial tree without recursion (its depth is bounded, but never trust a tree
/// built from a rejected document).
fn drop_flat(stack: Vec<Node>, root: Option<Node>) {
    let mut pending: Vec<Node> = stack;
    pending.extend(root);
    while let Some(mut n) = pending.pop() {
        pending.append(&mut n.children);
    }
}

/// quick-xml reports input that ends inside markup as one of the `Unclosed*` syntax errors.
fn is_eof(e: &quick_xml::Error) -> bool {
    matches!(e, quick_xml::Error::Syntax(s) if !matches!(s, quick_xml::errors::SyntaxError::InvalidBangMarkup))
}

fn close(node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => *root = Some(node),
    }
}

fn start_node(e: &quick_xml::events::BytesStart<'_>) -> Result<Node, ErrorKind> {
    let mut node = Node {
        name: local(e.local_name().as_ref()),
        ..Node::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|e| ErrorKind::Malformed(format!("attribute: {e}")))?;
        // Namespace declarations: names are matched by local name, so they are not kept.
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| ErrorKind::Malformed(format!("attribute: {e}")))?;
        node.attrs
            .push((local(attr.key.local_name().as_ref()), value.into_owned()));
    }
    Ok(node)
}

/// Resolves a character or predefined entity reference.
pub(crate) fn resolve_ref(r: &quick_xml::events::BytesRef<'_>) -> Result<String, ErrorKind> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| ErrorKind::Malformed(format!("reference: {e}")))?
    {
        return Ok(c.to_string());
    }
    let name = r
        .decode()
        .map_err(|e| ErrorKind::Malformed(format!("reference: {e}")))?;
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_string)
        .ok_or_else(|| ErrorKind::Malformed(format!("unknown entity &{name};")))
}

/// Checks the envelope and returns `dp:response`. A SOAP Fault is [`ErrorKind::Fault`]
/// (or [`ErrorKind::Auth`] when it speaks of authentication); a `dp:result` that does not
/// trim to `OK` is [`ErrorKind::Result`] with the appliance's text (or the error-log
/// texts), or [`ErrorKind::Auth`] for `Authentication failure`.
pub fn response(root: &Node) -> Result<&Node, ErrorKind> {
    if root.name != "Envelope" {
        return Err(ErrorKind::Malformed(format!(
            "root element <{}>",
            root.name
        )));
    }
    let body = root
        .child("Body")
        .ok_or_else(|| ErrorKind::Malformed("no env:Body".into()))?;
    if let Some(fault) = body.child("Fault") {
        let code = fault.child_text("faultcode").to_string();
        let text = fault.child_text("faultstring").to_string();
        if text.to_ascii_lowercase().contains("authentication") {
            return Err(ErrorKind::Auth(text));
        }
        return Err(ErrorKind::Fault { code, text });
    }
    let response = body
        .child("response")
        .ok_or_else(|| ErrorKind::Malformed("no dp:response".into()))?;
    if let Some(result) = response.child("result") {
        check_result(result)?;
    }
    Ok(response)
}

fn check_result(result: &Node) -> Result<(), ErrorKind> {
    let mut events = Vec::new();
    result.collect_named("log-event", &mut events);
    let text = if events.is_empty() {
        result.text.trim().to_string()
    } else {
        events
            .iter()
            .map(|e| e.text.trim())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    if events.is_empty() && text == "OK" {
        return Ok(());
    }
    if text.eq_ignore_ascii_case("Authentication failure") {
        return Err(ErrorKind::Auth(text));
    }
    if text.is_empty() {
        return Err(ErrorKind::Result("empty dp:result".into()));
    }
    Err(ErrorKind::Result(text))
}

/// Parses a whole response without payload and checks its outcome: [`parse_tree`] then
/// [`response`], returning the tree (its `dp:response` is found again by the readers below).
pub fn document(xml: &[u8]) -> Result<Node, ErrorKind> {
    let root = parse_tree(xml)?;
    response(&root)?;
    Ok(root)
}

fn response_of(root: &Node) -> Result<&Node, ErrorKind> {
    response(root)
}

/// The rows of `dp:status` named `class` (an empty list when the status holds none).
pub fn status_rows<'a>(root: &'a Node, class: &str) -> Result<Vec<&'a Node>, ErrorKind> {
    let response = response_of(root)?;
    let status = response
        .child("status")
        .ok_or_else(|| ErrorKind::Malformed("no dp:status in the response".into()))?;
    Ok(status.children.iter().filter(|c| c.name == class).collect())
}

/// `DomainStatus` rows.
pub fn domains(root: &Node) -> Result<Vec<DomainStatus>, ErrorKind> {
    Ok(status_rows(root, "DomainStatus")?
        .into_iter()
        .map(|row| DomainStatus {
            name: row.child_text("Domain").to_string(),
            save_needed: row.child_text("SaveNeeded").eq_ignore_ascii_case("on"),
            quiesce_state: QuiesceState::parse(row.child_text("QuiesceState")),
            reports_quiesce: row.child("QuiesceState").is_some(),
        })
        .collect())
}

/// The first row of a `FirmwareVersion*` class; `None` when the status has no such row.
pub fn firmware(root: &Node, class: &str) -> Result<Option<Firmware>, ErrorKind> {
    Ok(status_rows(root, class)?.first().map(|row| Firmware {
        class: class.to_string(),
        serial: row.child_text("Serial").to_string(),
        version: row.child_text("Version").to_string(),
        build: row.child_text("Build").to_string(),
        build_date: row.child_text("BuildDate").to_string(),
        delivery_type: row.child_text("DeliveryType").to_string(),
        machine_type: row.child_text("MachineType").to_string(),
        model_type: row.child_text("ModelType").to_string(),
    }))
}

/// `FilesystemStatus/FreeTemporary` in MiB.
pub fn free_temporary_mib(root: &Node) -> Result<u64, ErrorKind> {
    let rows = status_rows(root, "FilesystemStatus")?;
    let row = rows
        .first()
        .ok_or_else(|| ErrorKind::Malformed("no FilesystemStatus row".into()))?;
    let text = row.child_text("FreeTemporary");
    text.parse::<u64>()
        .map_err(|_| ErrorKind::Malformed(format!("FreeTemporary is {text:?}, not a number")))
}

/// Whether `dp:config` holds an object of `class` named `name`.
pub fn config_has(root: &Node, class: &str, name: &str) -> Result<bool, ErrorKind> {
    let response = response_of(root)?;
    Ok(response.child("config").is_some_and(|config| {
        config
            .children_named(class)
            .any(|o| o.attr("name") == Some(name))
    }))
}

/// The files directly in directory `listed` (as `get-filestore` names it, e.g.
/// `temporary:/dpplan-1`); `url` is the directory as the caller named it, used to build
/// [`RemoteFile::path`]. Empty when the directory is not listed.
pub fn directory_files(root: &Node, listed: &str, url: &str) -> Result<Vec<RemoteFile>, ErrorKind> {
    let response = response_of(root)?;
    let filestore = response
        .child("filestore")
        .ok_or_else(|| ErrorKind::Malformed("no dp:filestore in the response".into()))?;
    let mut dirs = Vec::new();
    filestore.collect_named("location", &mut dirs);
    filestore.collect_named("directory", &mut dirs);
    let Some(dir) = dirs.into_iter().find(|d| d.attr("name") == Some(listed)) else {
        return Ok(Vec::new());
    };
    dir.children_named("file")
        .map(|f| {
            let name = f.attr("name").unwrap_or("").to_string();
            let size_text = f.child_text("size");
            let size = size_text
                .parse::<u64>()
                .map_err(|_| ErrorKind::Malformed(format!("size of {name} is {size_text:?}")))?;
            Ok(RemoteFile {
                path: super::soma::join(url, &name),
                name,
                size,
                modified: f.child_text("modified").to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_keeps_names_attributes_and_text_but_not_declarations_or_indentation() {
        let xml = br#"<env:Envelope xmlns:env="urn:e">
  <dp:x xmlns:dp="urn:d" xmlns="urn:default" name="a&amp;b">
    <t> a &amp; b </t>
    <e/>
    <sp> </sp>
  </dp:x>
</env:Envelope>"#;
        let root = parse_tree(xml).unwrap();
        assert_eq!(root.name, "Envelope");
        assert!(root.attrs.is_empty());
        assert_eq!(root.text, "");
        let x = root.child("x").unwrap();
        assert_eq!(x.attrs, vec![("name".to_string(), "a&b".to_string())]);
        assert_eq!(x.text, "", "only indentation around the children");
        // Spaces between text and references are text, kept as written.
        assert_eq!(x.child("t").unwrap().text, " a & b ");
        assert_eq!(x.child("e").unwrap().text, "");
        assert_eq!(x.child("sp").unwrap().text, "");
        let names: Vec<&str> = x.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["t", "e", "sp"]);
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    /// 40,000 nested elements (280 KB) overflowed the stack of a worker thread.
    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 40_000;
        let doc = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        let e = parse_tree(doc.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 128"), "{e}");
        // Unclosed too.
        let e = parse_tree("<a>".repeat(depth).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper"), "{e}");
        // Real depths pass.
        let ok = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse_tree(ok.as_bytes()).is_ok());
    }

    /// Entities a DTD declares are never expanded: a billion laughs, or a file named by an
    /// external entity, is an unknown entity.
    #[test]
    fn declared_entities_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>"#;
        let e = parse_tree(bomb.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("unknown entity &b;"), "{e}");
        let external = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert!(parse_tree(external.as_bytes()).is_err());
    }

    /// A 31 MiB answer of tiny siblings took 1.3 GB as a tree.
    #[test]
    fn element_count_is_bounded() {
        let doc = format!("<r>{}</r>", "<a/>".repeat(MAX_ITEMS + 10));
        let e = parse_tree(doc.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("more than 250000"), "{e}");
        let attrs = format!(
            "<r {}/>",
            (0..MAX_ITEMS + 10)
                .map(|i| format!("a{i}=''"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(parse_tree(attrs.as_bytes()).is_err());
    }
}
