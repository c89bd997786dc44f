//! Byzantine `drop` (see [`crate::byzantine`]): a [`DropRule`] names what a liar keeps back, by path
//! (globs) and by requester (neighbour name or key prefix), where `withhold` keeps back everything
//! from everyone. A targeted liar is harder to notice than a withholding one: every neighbour but
//! the chosen ones sees an honest peer, and the chosen ones miss only some paths.
//!
//! Control-file line: `drop paths=secret/**,*.key peers=p2,3fa4` (both keys optional, values
//! comma-separated; a plain `drop` drops everything for everyone). Globs: `*` and `?` within one
//! path component, `**` as a whole component for any number of them.

/// One `drop` line of the control file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropRule {
    /// Globs over relative paths; empty: every path.
    pub paths: Vec<String>,
    /// Neighbour names or key prefixes (hex, at least 4 characters); empty: every requester.
    pub peers: Vec<String>,
}

/// Shortest key prefix a rule may name: a shorter one would match a name by accident.
pub const KEY_PREFIX_MIN: usize = 4;

impl DropRule {
    /// Parses the `key=value` words after `drop`; `Err` names the first word it did not know.
    pub fn parse<'a>(words: impl Iterator<Item = &'a str>) -> Result<DropRule, String> {
        let mut rule = DropRule::default();
        for word in words {
            let list = |v: &str| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
            match word.split_once('=') {
                Some(("paths", v)) => rule.paths = list(v),
                Some(("peers", v)) => rule.peers = list(v),
                _ => return Err(word.to_string()),
            }
        }
        Ok(rule)
    }

    /// Whether the requester (`short` key id, `name` in our config) is one this rule targets.
    pub fn targets(&self, short: &str, name: &str) -> bool {
        self.peers.is_empty()
            || self
                .peers
                .iter()
                .any(|p| p == name || (p.len() >= KEY_PREFIX_MIN && short.starts_with(p.as_str())))
    }

    /// Whether `path` is kept back from this requester.
    pub fn drops(&self, path: &str, short: &str, name: &str) -> bool {
        self.targets(short, name) && (self.paths.is_empty() || self.paths.iter().any(|g| glob_match(g, path)))
    }

    /// Whether everything is kept back from this requester (no path globs).
    pub fn drops_all(&self, short: &str, name: &str) -> bool {
        self.paths.is_empty() && self.targets(short, name)
    }

    /// The line this rule is written as (for logs).
    pub fn line(&self) -> String {
        let mut s = "drop".to_string();
        if !self.paths.is_empty() {
            s.push_str(&format!(" paths={}", self.paths.join(",")));
        }
        if !self.peers.is_empty() {
            s.push_str(&format!(" peers={}", self.peers.join(",")));
        }
        s
    }
}

/// Whether `path` matches `pattern` (see the module doc). Patterns come from the control file,
/// which only the orchestrator writes, so the plain backtracking is fine.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    components(&p, &s)
}

fn components(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| components(rest, &s[i..])),
        Some((first, rest)) => s
            .split_first()
            .is_some_and(|(c, s_rest)| segment(first.as_bytes(), c.as_bytes()) && components(rest, s_rest)),
    }
}

fn segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| segment(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && segment(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && segment(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_components() {
        assert!(glob_match("secret/**", "secret/a.txt"));
        assert!(glob_match("secret/**", "secret/d/e/a.txt"));
        assert!(!glob_match("secret/**", "public/secret/a.txt"));
        assert!(glob_match("**/*.key", "a/b/c.key"));
        assert!(glob_match("**/*.key", "c.key"));
        assert!(!glob_match("*.key", "a/c.key"));
        assert!(glob_match("f?.txt", "f1.txt"));
        assert!(!glob_match("f?.txt", "f12.txt"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
    }

    #[test]
    fn rules_target_paths_and_requesters() {
        let r = DropRule::parse(["paths=secret/**,*.key", "peers=p2,3fa4"].into_iter()).unwrap();
        assert!(r.drops("secret/x", "0000000000000000", "p2"));
        assert!(r.drops("x.key", "3fa4000000000000", "p9"));
        assert!(!r.drops("open/x", "0000000000000000", "p2"));
        assert!(!r.drops("secret/x", "0000000000000000", "p3"));
        assert!(!r.drops_all("0000000000000000", "p2"));
        assert_eq!(r.line(), "drop paths=secret/**,*.key peers=p2,3fa4");
        let everyone = DropRule::parse(std::iter::empty()).unwrap();
        assert!(everyone.drops_all("anything", "p1"));
        // A key prefix too short to be one is only a name.
        let short = DropRule::parse(["peers=ab"].into_iter()).unwrap();
        assert!(!short.targets("ab00000000000000", "p1"));
        assert_eq!(DropRule::parse(["path=x"].into_iter()), Err("path=x".to_string()));
    }
}
