//! The shape of the source tree: no file imports a name defined in the module file that
//! declares it (or in one further up). A module's `mod.rs` (or `name.rs` with a `name/`
//! folder) declares its children and re-exports them; the types the children share live in a
//! leaf file beside them. A child that reached back for `use super::X` with `X` defined in
//! `mod.rs`, while `mod.rs` imports from that child, made a cycle between the two files.
//!
//! The scan reads the text (comments and string literals blanked out): `use` trees and paths
//! in code that start with `super::` or `crate::`, resolved against the module tree. Code
//! under `#[cfg(test)]` is left out: a test module sees its parent by design.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One module file: its module path (`["engine", "task"]`) and the names its top level defines.
#[derive(Debug)]
struct ModFile {
    path: PathBuf,
    module: Vec<String>,
    defines: BTreeSet<String>,
    test_only: bool,
}

#[test]
fn no_file_imports_the_module_file_that_declares_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "files that import names defined in a parent module file (move the names into a leaf \
         file of the module and import that):\n{}",
        found.join("\n")
    );
}

/// The scan finds each way of reaching back; a sibling, a re-export and a test module's
/// `use super::*` are not cycles.
#[test]
fn the_layout_scan_finds_each_way_of_reaching_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let path = src.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\n");
    write(
        "a/mod.rs",
        "//! use super::Ignored;\npub mod one;\npub mod two;\nmod deep;\n\
         pub use one::Shared;\n\
         pub struct Parent;\npub(crate) enum Kind { A }\nfn helper() {}\n\
         #[cfg(test)]\nmod tests;\n",
    );
    write(
        "a/one.rs",
        "use super::{two::Leaf, Parent};\nuse super::Shared;\npub struct Shared;\n\
         fn f() -> super::Kind { let _ = \"super::helper\"; todo!() }\n\
         mod inner { use super::Shared; fn g() { super::super::helper() } }\n",
    );
    write(
        "a/two.rs",
        "use crate::a::{Kind, one::Shared};\npub struct Leaf;\n\
         #[cfg(test)]\nmod tests { use super::super::*; }\n",
    );
    write("a/tests.rs", "use super::*;\n");
    write("a/deep/mod.rs", "mod x;\n");
    write("a/deep/x.rs", "use crate::a::*;\n");
    write("b.rs", "mod c;\nmod d;\npub struct B;\npub fn d() {}\n");
    write(
        "b/c.rs",
        "use super::B;\nuse super::d::Dee;\nfn f() { super::d::g() }\n",
    );
    write("b/d.rs", "pub struct Dee;\npub fn g() {}\n");
    let found = violations(src);
    let expected = [
        "a/deep/x.rs: `crate::a::*` (a/mod.rs)",
        "a/one.rs: `super::Kind` (a/mod.rs)",
        "a/one.rs: `super::Parent` (a/mod.rs)",
        "a/one.rs: `super::super::helper` (a/mod.rs)",
        "a/two.rs: `crate::a::Kind` (a/mod.rs)",
        "b/c.rs: `super::B` (b.rs)",
    ];
    assert_eq!(found, expected);
}

/// Every reach back from a file to a name defined in a module file above it, sorted.
fn violations(src: &Path) -> Vec<String> {
    let files = module_files(src);
    let by_module: BTreeMap<&[String], &ModFile> =
        files.iter().map(|f| (f.module.as_slice(), f)).collect();
    let mut found = BTreeSet::new();
    for file in files.iter().filter(|f| !f.test_only) {
        let text = blank(&std::fs::read_to_string(&file.path).unwrap());
        for (path, inline) in paths(&text) {
            let Some((target, rest)) = resolve(&file.module, &inline, &path) else {
                continue;
            };
            // Only a strict ancestor: the file itself, siblings and children are fine.
            if target.len() >= file.module.len() || !file.module.starts_with(&target) {
                continue;
            }
            let Some(parent) = by_module.get(target.as_slice()) else {
                continue;
            };
            let reaches_back = match rest.first().map(String::as_str) {
                Some("*") => !parent.defines.is_empty(),
                // A child module of the parent (a sibling) may share a name with one of its
                // functions (`cli::run` the module and `cli::run()`): the path goes down.
                Some(_) if rest.len() > 1 && is_module(&by_module, &target, &rest[0]) => false,
                Some(name) => parent.defines.contains(name),
                None => false,
            };
            if reaches_back {
                found.insert(format!(
                    "{}: `{}` ({})",
                    rel(src, &file.path),
                    path.join("::"),
                    rel(src, &parent.path)
                ));
            }
        }
    }
    found.into_iter().collect()
}

fn is_module(by_module: &BTreeMap<&[String], &ModFile>, parent: &[String], name: &str) -> bool {
    let mut path = parent.to_vec();
    path.push(name.to_string());
    by_module.contains_key(path.as_slice())
}

fn rel(src: &Path, path: &Path) -> String {
    path.strip_prefix(src)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The module files under `src`, walked from `lib.rs` through `mod name;` declarations
/// (`#[path]` honoured; children declared under `#[cfg(test)]` marked test-only).
fn module_files(src: &Path) -> Vec<ModFile> {
    let mut out = Vec::new();
    let mut queue = vec![(src.join("lib.rs"), Vec::<String>::new(), false)];
    while let Some((path, module, test_only)) = queue.pop() {
        let Ok(raw) = std::fs::read_to_string(&path) else {
            continue;
        };
        let text = blank(&raw);
        // A `mod.rs`, `lib.rs` or `main.rs` owns its folder; `name.rs` owns `name/`.
        let own_dir = match path.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => path.parent().unwrap().to_path_buf(),
            _ => path.with_extension(""),
        };
        for decl in declared_mods(&raw, &text) {
            let child = match &decl.path_attr {
                Some(p) => path.parent().unwrap().join(p),
                None if own_dir.join(format!("{}.rs", decl.name)).exists() => {
                    own_dir.join(format!("{}.rs", decl.name))
                }
                None => own_dir.join(&decl.name).join("mod.rs"),
            };
            let mut m = module.clone();
            m.push(decl.name);
            queue.push((child, m, test_only || decl.test_only));
        }
        out.push(ModFile {
            defines: top_level_names(&text),
            path,
            module,
            test_only,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

struct ModDecl {
    name: String,
    path_attr: Option<String>,
    test_only: bool,
}

/// `mod name;` declarations at the top level, with their `#[path]` and `#[cfg(test)]`.
/// `raw` is the file's text, `text` the same with comments and strings blanked (same offsets):
/// the path attribute's string is read from `raw`.
fn declared_mods(raw: &str, text: &str) -> Vec<ModDecl> {
    let mut out = Vec::new();
    let mut attrs: Vec<(usize, usize)> = Vec::new();
    for (start, stmt) in top_level_items(text) {
        let item = stmt.trim_start();
        let offset = start + stmt.len() - item.len();
        let (attr_spans, item_rest) = split_attributes(item, offset);
        attrs.extend(attr_spans);
        let words: Vec<&str> = item_rest.split_whitespace().collect();
        let is_mod = match words.as_slice() {
            ["mod", name, ..] | [_, "mod", name, ..] => {
                if name.trim_end_matches(';').chars().all(is_ident) && item_rest.ends_with(';') {
                    Some(name.trim_end_matches(';').to_string())
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(name) = is_mod {
            let attr_text: Vec<&str> = attrs.iter().map(|&(a, b)| &raw[a..b]).collect();
            let path_attr = attr_text.iter().find_map(|a| {
                let a = a.strip_prefix("#[")?.trim_start();
                let a = a.strip_prefix("path")?.trim_start().strip_prefix('=')?;
                Some(
                    a.trim()
                        .trim_end_matches(']')
                        .trim()
                        .trim_matches('"')
                        .to_string(),
                )
            });
            let test_only = attr_text
                .iter()
                .any(|a| a.replace(' ', "") == "#[cfg(test)]");
            out.push(ModDecl {
                name,
                path_attr,
                test_only,
            });
        }
        attrs.clear();
    }
    out
}

/// Leading `#[...]` attributes of an item: their spans (offset by `offset`) and the rest.
fn split_attributes(item: &str, offset: usize) -> (Vec<(usize, usize)>, &str) {
    let mut spans = Vec::new();
    let mut rest = item;
    let mut at = offset;
    while rest.starts_with("#[") {
        let mut depth = 0;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        spans.push((at, at + end));
        let trimmed = rest[end..].trim_start();
        at += rest.len() - trimmed.len();
        rest = trimmed;
    }
    (spans, rest)
}

/// The top-level items of a file: each as (offset, text), split at `;` and at the `}` that
/// closes a top-level block. Inner attributes (`#![...]`) come out as items of their own.
fn top_level_items(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let mut brackets = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 && brackets == 0 {
                    out.push((start, &text[start..=i]));
                    start = i + 1;
                }
            }
            '[' | '(' => brackets += 1,
            ']' | ')' => {
                brackets -= 1;
                if depth == 0 && brackets == 0 && text[start..].trim_start().starts_with("#!") {
                    out.push((start, &text[start..=i]));
                    start = i + 1;
                }
            }
            ';' if depth == 0 && brackets == 0 => {
                out.push((start, &text[start..=i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out
}

/// The names a file's top level defines: types, traits, functions, constants, statics,
/// macros. Not re-exports (`pub use`), not `mod` declarations.
fn top_level_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, item) in top_level_items(text) {
        let (_, rest) = split_attributes(item.trim_start(), start);
        let mut words = rest
            .split(|c: char| c.is_whitespace() || c == '<' || c == '(' || c == '{' || c == ':')
            .filter(|w| !w.is_empty())
            .peekable();
        while let Some(w) = words.peek() {
            if w.starts_with("pub")
                || matches!(
                    *w,
                    "crate)" | "super)" | "async" | "unsafe" | "extern" | "\"C\""
                )
            {
                words.next();
            } else {
                break;
            }
        }
        let kind = words.next().unwrap_or("");
        let kind = if kind == "const" && words.peek() == Some(&"fn") {
            words.next().unwrap_or("")
        } else {
            kind
        };
        let name = match kind {
            "struct" | "enum" | "union" | "trait" | "fn" | "type" | "const" | "static" => {
                words.next()
            }
            "macro_rules!" => words.next(),
            _ => None,
        };
        if let Some(name) = name {
            let name: String = name.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() && name != "_" {
                names.insert(name);
            }
        }
    }
    names
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path that starts with `super::` or `crate::`, from `use` trees (expanded) and from
/// code, with the inline modules it sits in. Code inside an inline `#[cfg(test)]` module
/// is skipped.
fn paths(text: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    // The inline modules open at this point: (name, brace depth inside it, test-only).
    let mut inline: Vec<(String, i32, bool)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            '{' => {
                depth += 1;
                if let Some((name, test)) = inline_mod_before(text, at) {
                    inline.push((name, depth, test));
                }
            }
            '}' => {
                if inline.last().is_some_and(|(_, d, _)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            _ => {}
        }
        let in_test = inline.iter().any(|(_, _, t)| *t);
        let word_start = i == 0 || !is_ident(chars[i - 1].1) && chars[i - 1].1 != ':';
        let rest = &text[at..];
        if !in_test && word_start && rest.starts_with("use ") {
            let end = rest.find(';').unwrap_or(rest.len());
            let names: Vec<String> = inline.iter().map(|(n, _, _)| n.clone()).collect();
            for path in expand_use(&rest[4..end]) {
                if matches!(path.first().map(String::as_str), Some("super" | "crate")) {
                    out.push((path, names.clone()));
                }
            }
            i += rest[..end].chars().count();
            continue;
        }
        if !in_test && word_start && (rest.starts_with("super::") || rest.starts_with("crate::")) {
            let path: String = rest
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            let segments: Vec<String> = path
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let names = inline.iter().map(|(n, _, _)| n.clone()).collect();
            out.push((segments, names));
            i += path.chars().count();
            continue;
        }
        i += 1;
    }
    out
}

/// When the `{` at `at` opens `mod name {`: the name, and whether `#[cfg(test)]` precedes it.
fn inline_mod_before(text: &str, at: usize) -> Option<(String, bool)> {
    let before = text[..at].trim_end();
    let name_start = before.rfind(|c: char| !is_ident(c)).map_or(0, |i| i + 1);
    let name = &before[name_start..];
    let head = before[..name_start].trim_end();
    if name.is_empty() || !head.ends_with("mod") {
        return None;
    }
    let head = head[..head.len() - 3].trim_end();
    let head = head.strip_suffix("pub").unwrap_or(head).trim_end();
    let test = head.replace(' ', "").ends_with("#[cfg(test)]");
    Some((name.to_string(), test))
}

/// A `use` tree (`super::{a::B, C as D, *}`) as its paths: `[super, a, B]`, `[super, C]`,
/// `[super, *]`.
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn walk(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        if tree.is_empty() {
            return;
        }
        if let Some(open) = tree.find('{') {
            let head: Vec<String> = tree[..open]
                .split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let close = tree.rfind('}').unwrap_or(tree.len());
            let mut base = prefix.to_vec();
            base.extend(head);
            for part in split_top(&tree[open + 1..close]) {
                walk(&base, part, out);
            }
            return;
        }
        let tree = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.to_vec();
        path.extend(
            tree.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        out.push(path);
    }
    let mut out = Vec::new();
    let tree = tree.trim();
    let tree = tree.strip_prefix("pub(crate) ").unwrap_or(tree);
    walk(&[], tree, &mut out);
    out
}

/// Splits a use list at the commas outside braces.
fn split_top(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

/// Where a path points: the module it names (absolute) and the segments after it.
/// `file` is the file's module path, `inline` the inline modules the path sits in.
fn resolve(
    file: &[String],
    inline: &[String],
    path: &[String],
) -> Option<(Vec<String>, Vec<String>)> {
    let mut here: Vec<String> = file.iter().chain(inline).cloned().collect();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            here.clear();
            rest = &rest[1..];
        }
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                here.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut module = here;
    let mut segments = rest.to_vec();
    // Walk down while the next segment names a strict ancestor of the file: the caller checks
    // the first segment after it against what that ancestor's file defines.
    while let Some(next) = segments.first() {
        let mut deeper = module.clone();
        deeper.push(next.clone());
        if file.starts_with(&deeper) && deeper.len() < file.len() {
            module = deeper;
            segments.remove(0);
        } else {
            break;
        }
    }
    Some((module, segments))
}

/// The text with comments, string and character literals blanked to spaces (offsets and
/// line breaks kept), so braces and paths in them do not count.
fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let push_blank = |out: &mut String, c: char| {
        if c == '\n' {
            out.push('\n');
        } else {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                push_blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    push_blank(&mut out, '/');
                    push_blank(&mut out, '*');
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    push_blank(&mut out, '*');
                    push_blank(&mut out, '/');
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    push_blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(chars[i - 1]))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            out.push('r');
            for _ in i + 1..=j {
                out.push(' ');
            }
            i = j + 1;
            while i < chars.len() && !chars[i..].starts_with(&close) {
                push_blank(&mut out, chars[i]);
                i += 1;
            }
            for _ in 0..close.len().min(chars.len() - i) {
                out.push(' ');
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    push_blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    push_blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                out.push(' ');
                i += 1;
            }
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{7f}'.
            out.push(' ');
            i += 1;
            let mut first = true;
            while i < chars.len() && (first || chars[i] != '\'') {
                first = chars[i] == '\\' && first;
                push_blank(&mut out, chars[i]);
                i += 1;
            }
            if i < chars.len() {
                out.push(' ');
                i += 1;
            }
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            // A one-character literal such as '{' (a lifetime has no closing quote).
            out.push(' ');
            if let Some(n) = next {
                push_blank(&mut out, n);
            }
            out.push(' ');
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
