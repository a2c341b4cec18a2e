//! The simulator's own reading of a SOMA request: a small element tree built straight from
//! quick-xml events. It shares nothing with the client's response parser
//! (`appliance::parse`), so a bug there cannot hide itself by making the simulator read
//! requests the same wrong way.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// The most nested elements or elements in all a request may have (a SOMA request has a
/// handful).
const MAX_DEPTH: usize = 64;
const MAX_ELEMENTS: usize = 10_000;

/// An element of a request: local names, unescaped attribute values and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name (prefix dropped).
    pub name: String,
    /// Attributes by local name, namespace declarations left out.
    pub attrs: Vec<(String, String)>,
    /// Text content (trimmed by the readers that want it).
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Attribute `name`.
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
}

fn local(name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    match name.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => name.into_owned(),
    }
}

fn element(e: &BytesStart<'_>) -> Result<Element, String> {
    let mut out = Element {
        name: local(e.name().as_ref()),
        ..Element::default()
    };
    for a in e.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        out.attrs.push((local(key), value.into_owned()));
    }
    Ok(out)
}

/// Reads a request document into its root element; `Err` says what is wrong with it.
pub fn read(body: &[u8]) -> Result<Element, String> {
    read_limited(body, MAX_ELEMENTS)
}

/// [`read`] for documents that may hold up to `max_elements` elements (an imported
/// export's `export.xml`).
pub fn read_limited(body: &[u8], max_elements: usize) -> Result<Element, String> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut count = 0;
    loop {
        if stack.len() > MAX_DEPTH || count > max_elements {
            return Err("the document nests too deep or holds too many elements".into());
        }
        match reader.read_event().map_err(|e| format!("not XML: {e}"))? {
            Event::Start(e) => {
                count += 1;
                stack.push(element(&e)?);
            }
            Event::Empty(e) => {
                count += 1;
                let el = element(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("an end tag without a start")?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err("more than one root element".into()),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.decode().map_err(|e| format!("bad text: {e}"))?;
                    top.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let c = match r
                        .resolve_char_ref()
                        .map_err(|e| format!("bad reference: {e}"))?
                    {
                        Some(c) => c,
                        None => match &*r.into_inner() {
                            b"lt" => '<',
                            b"gt" => '>',
                            b"amp" => '&',
                            b"apos" => '\'',
                            b"quot" => '"',
                            other => {
                                return Err(format!(
                                    "unknown entity &{};",
                                    String::from_utf8_lossy(other)
                                ))
                            }
                        },
                    };
                    top.text.push(c);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t.into_inner()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("the request ends inside an element".into());
    }
    root.ok_or_else(|| "no element in the request".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_client_sends_the_way_the_client_means_it() {
        let xml = br#"<?xml version="1.0"?>
<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/">
  <env:Body>
    <dp:request xmlns:dp="http://www.datapower.com/schemas/management" domain="a&amp;b">
      <dp:do-action><SecureBackup><cert>c&#x31;</cert><destination>temporary:///x &lt;y&gt;</destination></SecureBackup></dp:do-action>
    </dp:request>
  </env:Body>
</env:Envelope>"#;
        let root = read(xml).unwrap();
        assert_eq!(root.name, "Envelope");
        let request = root.child("Body").unwrap().child("request").unwrap();
        assert_eq!(request.attr("domain"), Some("a&b"));
        assert_eq!(
            request.attrs.len(),
            1,
            "namespace declarations are not attributes"
        );
        let backup = request
            .child("do-action")
            .unwrap()
            .child("SecureBackup")
            .unwrap();
        assert_eq!(backup.child_text("cert"), "c1");
        assert_eq!(backup.child_text("destination"), "temporary:///x <y>");
    }

    /// Two independent readings of every request the client sends (the golden request
    /// files) agree: names, attributes, text and structure.
    #[test]
    fn the_client_parser_and_this_one_agree_on_every_golden_request() {
        fn same(a: &Element, b: &crate::appliance::parse::Node, at: &str) {
            let at = format!("{at}/{}", a.name);
            assert_eq!(a.name, b.name, "{at}");
            assert_eq!(a.attrs, b.attrs, "{at}");
            assert_eq!(a.text.trim(), b.text.trim(), "{at}");
            assert_eq!(a.children.len(), b.children.len(), "{at}");
            for (x, y) in a.children.iter().zip(&b.children) {
                same(x, y, &at);
            }
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/requests");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let body = std::fs::read(f.unwrap().path()).unwrap();
            let ours = read(&body).unwrap();
            let theirs = crate::appliance::parse::parse_tree(&body).unwrap();
            same(&ours, &theirs, "");
            n += 1;
        }
        assert!(n >= 10, "only {n} golden requests");
    }

    #[test]
    fn refuses_what_is_not_one_whole_document() {
        assert!(read(b"").is_err());
        assert!(read(b"<a><b></a>").is_err());
        assert!(read(b"<a/><b/>").is_err());
        assert!(read(b"<a>&bogus;</a>").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(read(deep.as_bytes()).is_err());
    }
}
