//! `dpplan diff`: two domain exports compared (objects and files added, removed, changed),
//! as a value.

use super::table;
use crate::backups::export::ExportContent;
use serde::Serialize;
use std::collections::BTreeSet;

/// A property that differs between the two exports of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyChange {
    /// The property.
    pub property: String,
    /// Its values in A (several for a list; none when absent).
    pub a: Vec<String>,
    /// Its values in B.
    pub b: Vec<String>,
}

/// An object present in both, with different properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectChange {
    /// Its class.
    pub class: String,
    /// Its name.
    pub name: String,
    /// What differs.
    pub properties: Vec<PropertyChange>,
}

/// An object, by class and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Its class.
    pub class: String,
    /// Its name.
    pub name: String,
}

/// What differs between export A and export B.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportDiff {
    /// Objects in B only.
    pub objects_added: Vec<ObjectRef>,
    /// Objects in A only.
    pub objects_removed: Vec<ObjectRef>,
    /// Objects in both, changed.
    pub objects_changed: Vec<ObjectChange>,
    /// Files in B only.
    pub files_added: Vec<String>,
    /// Files in A only.
    pub files_removed: Vec<String>,
    /// Files in both, with other bytes.
    pub files_changed: Vec<String>,
}

fn values(props: &[(String, String)], name: &str) -> Vec<String> {
    props
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

impl ExportDiff {
    /// The differences from `a` to `b`.
    pub fn between(a: &ExportContent, b: &ExportContent) -> ExportDiff {
        let mut d = ExportDiff::default();
        let r = |(class, name): &(String, String)| ObjectRef {
            class: class.clone(),
            name: name.clone(),
        };
        for (key, pa) in &a.objects {
            match b.objects.get(key) {
                None => d.objects_removed.push(r(key)),
                Some(pb) => {
                    let names: BTreeSet<&String> =
                        pa.iter().chain(pb.iter()).map(|(k, _)| k).collect();
                    let properties: Vec<PropertyChange> = names
                        .into_iter()
                        .filter_map(|n| {
                            let (va, vb) = (values(pa, n), values(pb, n));
                            (va != vb).then(|| PropertyChange {
                                property: n.clone(),
                                a: va,
                                b: vb,
                            })
                        })
                        .collect();
                    if !properties.is_empty() {
                        d.objects_changed.push(ObjectChange {
                            class: key.0.clone(),
                            name: key.1.clone(),
                            properties,
                        });
                    }
                }
            }
        }
        for key in b.objects.keys().filter(|k| !a.objects.contains_key(*k)) {
            d.objects_added.push(r(key));
        }
        for (name, ha) in &a.files {
            match b.files.get(name) {
                None => d.files_removed.push(name.clone()),
                Some(hb) if hb != ha => d.files_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for name in b.files.keys().filter(|k| !a.files.contains_key(*k)) {
            d.files_added.push(name.clone());
        }
        d
    }

    /// No difference.
    pub fn is_empty(&self) -> bool {
        self.objects_added.is_empty()
            && self.objects_removed.is_empty()
            && self.objects_changed.is_empty()
            && self.files_added.is_empty()
            && self.files_removed.is_empty()
            && self.files_changed.is_empty()
    }

    /// The text of `dpplan diff A B`: `-` for A's side, `+` for B's, as diff(1) does.
    pub fn render(&self, a: &str, b: &str) -> String {
        let p = |s: &str| table::printable(s, false);
        let mut out = format!("--- {}\n+++ {}\n", p(a), p(b));
        if self.is_empty() {
            out.push_str("no differences\n");
            return out;
        }
        for o in &self.objects_removed {
            out.push_str(&format!("- object {} {}\n", p(&o.class), p(&o.name)));
        }
        for o in &self.objects_added {
            out.push_str(&format!("+ object {} {}\n", p(&o.class), p(&o.name)));
        }
        for o in &self.objects_changed {
            out.push_str(&format!("~ object {} {}\n", p(&o.class), p(&o.name)));
            for c in &o.properties {
                for v in &c.a {
                    out.push_str(&format!("    - {}: {}\n", p(&c.property), p(v)));
                }
                for v in &c.b {
                    out.push_str(&format!("    + {}: {}\n", p(&c.property), p(v)));
                }
            }
        }
        for f in &self.files_removed {
            out.push_str(&format!("- file {}\n", p(f)));
        }
        for f in &self.files_added {
            out.push_str(&format!("+ file {}\n", p(f)));
        }
        for f in &self.files_changed {
            out.push_str(&format!("~ file {}\n", p(f)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (class, name, properties)
    type Obj<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn content(objects: &[Obj<'_>], files: &[(&str, &str)]) -> ExportContent {
        ExportContent {
            objects: objects
                .iter()
                .map(|(c, n, p)| {
                    (
                        (c.to_string(), n.to_string()),
                        p.iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    )
                })
                .collect(),
            files: files
                .iter()
                .map(|(n, h)| (n.to_string(), h.to_string()))
                .collect(),
            ..ExportContent::default()
        }
    }

    #[test]
    fn finds_added_removed_and_changed_objects_and_files() {
        let a = content(
            &[
                ("XMLFirewallService", "fw", &[("LocalPort", "8080")]),
                ("XMLManager", "old", &[]),
            ],
            &[("local:///a.xsl", "1"), ("local:///gone.xsl", "2")],
        );
        let b = content(
            &[
                ("XMLFirewallService", "fw", &[("LocalPort", "9090")]),
                ("MultiProtocolGateway", "new", &[]),
            ],
            &[("local:///a.xsl", "3"), ("local:///b.xsl", "4")],
        );
        let d = ExportDiff::between(&a, &b);
        assert_eq!(d.objects_added[0].name, "new");
        assert_eq!(d.objects_removed[0].name, "old");
        assert_eq!(d.objects_changed[0].properties[0].a, ["8080"]);
        assert_eq!(d.objects_changed[0].properties[0].b, ["9090"]);
        assert_eq!(d.files_changed, ["local:///a.xsl"]);
        assert_eq!(d.files_added, ["local:///b.xsl"]);
        assert_eq!(d.files_removed, ["local:///gone.xsl"]);
        assert!(!d.is_empty());
        assert!(ExportDiff::between(&a, &a).is_empty());
        let text = d.render("A", "B");
        assert!(
            text.contains("    - LocalPort: 8080\n    + LocalPort: 9090\n"),
            "{text}"
        );
    }
}
