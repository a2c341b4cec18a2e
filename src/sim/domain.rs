//! A simulated domain's configuration: objects (class, name, ordered properties) and files
//! (`local:///...` names and their bytes); the default content every domain starts with
//! (deterministic from the device and domain names), the canonical digest `/sim/state` shows,
//! and the `<configuration>`/`<files>` part of an export's `export.xml`. A leaf: it knows
//! nothing of the device, the requests or the transport.

use bytes::Bytes;
use quick_xml::escape::escape;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The stray namespace devices put on each object of an export (as on status rows).
const STRAY_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// An object's identity: its class and name.
pub type ObjectKey = (String, String);

/// A domain's configuration. Objects are kept sorted by class, then name (the order exports
/// list them in); properties keep their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `(class, name)` -> properties `(name, value)` in order.
    pub objects: BTreeMap<ObjectKey, Vec<(String, String)>>,
    /// `local:///dp-D.xsl` -> bytes.
    pub files: BTreeMap<String, Bytes>,
}

/// One object as an export lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub class: String,
    pub name: String,
    pub properties: Vec<(String, String)>,
}

impl Config {
    /// Adds or replaces an object.
    pub fn put(&mut self, object: Object) {
        self.objects
            .insert((object.class, object.name), object.properties);
    }

    /// Sets `property` of the object `class`/`name` (created when absent; the property is
    /// appended when the object lacks it).
    pub fn set_property(&mut self, class: &str, name: &str, property: &str, value: &str) {
        let properties = self
            .objects
            .entry((class.to_string(), name.to_string()))
            .or_default();
        match properties.iter_mut().find(|(k, _)| k == property) {
            Some(entry) => entry.1 = value.to_string(),
            None => properties.push((property.to_string(), value.to_string())),
        }
    }

    /// The hex SHA-256 of the canonical serialisation (docs/simulator.md "Configuration
    /// digest"): objects by class then name, each with its properties in order, then files by
    /// name with the SHA-256 of their bytes. Every string is length-prefixed, so no value can
    /// imitate the separators.
    pub fn digest(&self) -> String {
        fn field(out: &mut String, text: &str) {
            let _ = write!(out, " {}:{text}", text.len());
        }
        let mut canonical = String::new();
        for ((class, name), properties) in &self.objects {
            canonical.push_str("object");
            field(&mut canonical, class);
            field(&mut canonical, name);
            canonical.push('\n');
            for (k, v) in properties {
                canonical.push_str("  property");
                field(&mut canonical, k);
                field(&mut canonical, v);
                canonical.push('\n');
            }
        }
        for (name, bytes) in &self.files {
            canonical.push_str("file");
            field(&mut canonical, name);
            let _ = writeln!(canonical, " {}", hex::encode(Sha256::digest(bytes)));
        }
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The `<configuration>` and `<files>` elements of `export.xml`, indented for their place
    /// under `<datapower-configuration>`.
    pub fn export_elements(&self, domain: &str) -> String {
        use base64::Engine as _;
        let mut out = format!("  <configuration domain=\"{}\">\n", escape(domain));
        for ((class, name), properties) in &self.objects {
            let _ = writeln!(
                out,
                "    <{class} name=\"{}\" xmlns:env=\"{}\">",
                escape(name),
                STRAY_NS
            );
            for (k, v) in properties {
                if v.is_empty() {
                    let _ = writeln!(out, "      <{k}/>");
                } else {
                    let _ = writeln!(out, "      <{k}>{}</{k}>", escape(v));
                }
            }
            let _ = writeln!(out, "    </{class}>");
        }
        out.push_str("  </configuration>\n  <files>\n");
        for (name, bytes) in &self.files {
            let (location, src) = file_src(name);
            let hash = base64::engine::general_purpose::STANDARD
                .encode(<sha1::Sha1 as sha1::Digest>::digest(bytes));
            let _ = writeln!(
                out,
                "    <file name=\"{}\" src=\"{}\" location=\"{}\" hash=\"{hash}\"/>",
                escape(name),
                escape(&src),
                escape(&location)
            );
        }
        out.push_str("  </files>\n");
        out
    }
}

/// A domain's configurations: the running one, the persisted (saved) one, and its
/// checkpoints (name and the running configuration when it was saved), oldest first.
#[derive(Debug, Clone, Default)]
pub struct Configs {
    pub running: Config,
    pub saved: Config,
    pub checkpoints: Vec<(String, Config)>,
}

impl Configs {
    /// A domain as it starts: its default configuration saved, and running with one more
    /// object when `unsaved`.
    pub fn initial(device: &str, domain: &str, unsaved: bool) -> Configs {
        let saved = default_config(device, domain);
        let running = if unsaved {
            with_unsaved_change(saved.clone(), domain)
        } else {
            saved.clone()
        };
        Configs {
            running,
            saved,
            checkpoints: Vec::new(),
        }
    }

    /// SaveNeeded: the running configuration differs from the saved one.
    pub fn save_needed(&self) -> bool {
        self.running != self.saved
    }
}

/// A file name's location and its path in an export ZIP: `local:///a/b.xsl` -> (`local`,
/// `local/a/b.xsl`).
pub fn file_src(name: &str) -> (String, String) {
    match name.split_once(':') {
        Some((location, rest)) => {
            let path = rest.trim_start_matches('/');
            (location.to_string(), format!("{location}/{path}"))
        }
        None => (String::new(), name.trim_start_matches('/').to_string()),
    }
}

/// A configuration file's name in the `local:///path` form, from any spelling
/// (`local:/path`, `local:///path`).
pub fn file_name(name: &str) -> String {
    match name.split_once(':') {
        Some((location, rest)) => format!("{location}:///{}", rest.trim_start_matches('/')),
        None => name.to_string(),
    }
}

fn object(class: &str, name: &str, properties: &[(&str, String)]) -> Object {
    Object {
        class: class.into(),
        name: name.into(),
        properties: properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// The first 8 bytes, little-endian, of SHA-256(device || 0x00 || domain).
fn port_seed(device: &str, domain: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(device.as_bytes())
        .chain_update([0u8])
        .chain_update(domain.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The configuration domain `domain` of device `device` starts with (its persisted one):
///
/// - `XMLManager default`;
/// - `HTTPSourceProtocolHandler D-http` listening on port P;
/// - `XMLFirewallService D-fw` on port P + 1;
/// - `MultiProtocolGateway D-mpgw` behind `D-http`;
/// - files `local:///dp-D.xsl` and `local:///routes/D.xml`;
///
/// where P = 10000 + 2 x (S mod 2000), S the first 8 bytes (little-endian) of
/// SHA-256(device || 0x00 || domain). A domain with
/// unsaved changes (`unsaved` in the fleet file) runs [`with_unsaved_change`] of it.
pub fn default_config(device: &str, domain: &str) -> Config {
    let port = 10_000 + 2 * (port_seed(device, domain) % 2000);
    let on = || "enabled".to_string();
    let mut config = Config::default();
    config.put(object(
        "XMLManager",
        "default",
        &[
            ("mAdminState", on()),
            ("UserSummary", "Default XML-Manager".into()),
            ("CacheSize", "256".into()),
            ("SHA1Caching", "on".into()),
        ],
    ));
    config.put(object(
        "HTTPSourceProtocolHandler",
        &format!("{domain}-http"),
        &[
            ("mAdminState", on()),
            ("LocalAddress", "0.0.0.0".into()),
            ("LocalPort", port.to_string()),
            ("HTTPVersion", "HTTP/1.1".into()),
        ],
    ));
    config.put(object(
        "XMLFirewallService",
        &format!("{domain}-fw"),
        &[
            ("mAdminState", on()),
            ("UserSummary", format!("{domain} firewall on {device}")),
            ("LocalAddress", "0.0.0.0".into()),
            ("LocalPort", (port + 1).to_string()),
            ("XMLManager", "default".into()),
            ("StylePolicy", "default".into()),
        ],
    ));
    config.put(object(
        "MultiProtocolGateway",
        &format!("{domain}-mpgw"),
        &[
            ("mAdminState", on()),
            ("FrontProtocol", format!("{domain}-http")),
            (
                "BackendUrl",
                format!(
                    "http://backend.{}.example/{domain}",
                    device.to_ascii_lowercase()
                ),
            ),
            ("XMLManager", "default".into()),
            ("RequestType", "soap".into()),
            ("ResponseType", "soap".into()),
        ],
    ));
    let xsl = format!(
        "<?xml version=\"1.0\"?>\n<!-- {domain} on {device} -->\n\
         <xsl:stylesheet version=\"1.0\" xmlns:xsl=\"http://www.w3.org/1999/XSL/Transform\">\n  \
         <xsl:template match=\"/\"><xsl:copy-of select=\".\"/></xsl:template>\n\
         </xsl:stylesheet>\n"
    );
    config
        .files
        .insert(format!("local:///dp-{domain}.xsl"), Bytes::from(xsl));
    let routes = format!(
        "<routes domain=\"{}\"><route path=\"/\" backend=\"backend.{}.example\"/></routes>\n",
        escape(domain),
        escape(device.to_ascii_lowercase())
    );
    config
        .files
        .insert(format!("local:///routes/{domain}.xml"), Bytes::from(routes));
    config
}

/// `config` with the one more object an unsaved change adds: `LogTarget D-debug-log`.
pub fn with_unsaved_change(mut config: Config, domain: &str) -> Config {
    config.put(object(
        "LogTarget",
        &format!("{domain}-debug-log"),
        &[
            ("mAdminState", "enabled".into()),
            ("Type", "file".into()),
            ("Priority", "debug".into()),
        ],
    ));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_canonical_and_sees_every_change() {
        let base = default_config("QA1", "DOMAIN1");
        assert_eq!(base.digest(), default_config("QA1", "DOMAIN1").digest());
        assert_eq!(base.digest().len(), 64);
        assert_ne!(base.digest(), default_config("QA2", "DOMAIN1").digest());

        // Insertion order of objects does not matter; property order and values do.
        let mut reordered = Config::default();
        for ((class, name), properties) in base.objects.iter().rev() {
            reordered.put(Object {
                class: class.clone(),
                name: name.clone(),
                properties: properties.clone(),
            });
        }
        reordered.files = base.files.clone();
        assert_eq!(reordered.digest(), base.digest());

        let mut changed = base.clone();
        changed.set_property("XMLFirewallService", "DOMAIN1-fw", "LocalPort", "1");
        assert_ne!(changed.digest(), base.digest());

        let mut swapped = base.clone();
        if let Some(p) = swapped
            .objects
            .get_mut(&("XMLManager".into(), "default".into()))
        {
            p.swap(0, 1);
        }
        assert_ne!(swapped.digest(), base.digest());

        let mut file = base.clone();
        file.files
            .insert("local:///dp-DOMAIN1.xsl".into(), Bytes::from_static(b"x"));
        assert_ne!(file.digest(), base.digest());

        // Length prefixes: moving text between a name and a value changes the digest.
        let mut a = Config::default();
        a.set_property("C", "n", "ab", "c");
        let mut b = Config::default();
        b.set_property("C", "n", "a", "bc");
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn names_map_to_zip_paths() {
        assert_eq!(
            file_src("local:///a/b.xsl"),
            ("local".into(), "local/a/b.xsl".into())
        );
        assert_eq!(file_name("local:/a/b.xsl"), "local:///a/b.xsl");
        assert_eq!(file_name("local:///a/b.xsl"), "local:///a/b.xsl");
    }

    #[test]
    fn an_unsaved_domain_runs_one_more_object() {
        let saved = default_config("QA1", "D");
        let running = with_unsaved_change(saved.clone(), "D");
        assert_eq!(running.objects.len(), saved.objects.len() + 1);
    }
}
