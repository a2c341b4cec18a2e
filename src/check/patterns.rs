//! Name patterns: `*` matches any run of characters, `?` one character; case-sensitive,
//! whole-name. A pattern without wildcards is a plain name.

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    // Iterative wildcard matching with one backtrack point: linear for typical patterns,
    // never exponential.
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether the pattern has wildcards.
pub fn is_literal(pattern: &str) -> bool {
    !pattern.contains(['*', '?'])
}

/// The literal text before the first wildcard.
pub fn literal_prefix(pattern: &str) -> &str {
    match pattern.find(['*', '?']) {
        Some(i) => &pattern[..i],
        None => pattern,
    }
}

/// A set of names that answers "does this pattern match any name?" without scanning all
/// names for patterns with a literal prefix.
#[derive(Debug, Default)]
pub struct NameIndex {
    sorted: Vec<String>,
}

impl NameIndex {
    /// An index over `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut sorted: Vec<String> = names.into_iter().map(str::to_string).collect();
        sorted.sort_unstable();
        NameIndex { sorted }
    }

    /// Whether any indexed name matches `pattern`.
    pub fn any_match(&self, pattern: &str) -> bool {
        if is_literal(pattern) {
            return self
                .sorted
                .binary_search_by(|n| n.as_str().cmp(pattern))
                .is_ok();
        }
        let prefix = literal_prefix(pattern);
        let start = self.sorted.partition_point(|n| n.as_str() < prefix);
        self.sorted[start..]
            .iter()
            .take_while(|n| n.starts_with(prefix))
            .any(|n| matches(pattern, n))
    }

    /// Every indexed name matching `pattern`, in sorted order.
    pub fn matching<'s>(&'s self, pattern: &'s str) -> impl Iterator<Item = &'s str> + 's {
        let prefix = literal_prefix(pattern);
        let start = self.sorted.partition_point(|n| n.as_str() < prefix);
        self.sorted[start..]
            .iter()
            .take_while(move |n| n.starts_with(prefix))
            .filter(move |n| matches(pattern, n))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("QA*", "QA1"));
        assert!(matches("QA*", "QA"));
        assert!(!matches("QA*", "qa1"));
        assert!(matches("Q?1", "QA1"));
        assert!(!matches("Q?1", "QA12"));
        assert!(matches("*", ""));
        assert!(matches("*A*B", "xxAyyB"));
        assert!(!matches("*A*B", "xxAyyBz"));
        assert!(matches("DOMAIN*", "DOMAIN2"));
        assert!(!matches("DOMAIN", "DOMAIN2"));
    }

    #[test]
    fn index() {
        let idx = NameIndex::new(["QA1", "QA2", "TEST8", "TEST9"]);
        assert!(idx.any_match("QA*"));
        assert!(idx.any_match("TEST9"));
        assert!(!idx.any_match("TEST1"));
        assert!(idx.any_match("*8"));
        assert!(!idx.any_match("PROD*"));
        assert_eq!(idx.matching("T*").collect::<Vec<_>>(), ["TEST8", "TEST9"]);
    }
}
