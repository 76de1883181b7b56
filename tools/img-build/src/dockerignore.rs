//! `.dockerignore` with Docker's rules: one pattern a line, `#` comments, patterns relative to
//! the context root (a leading `/` is the root), `*` and `?` within a path component, `**` across
//! components, `!` re-includes, and the last matching pattern wins. A pattern that matches a
//! directory also matches everything under it.

use anyhow::{Context, Result};
use globset::{Glob, GlobMatcher};
use img::path::clean_relative;

struct Pattern {
    matcher: GlobMatcher,
    exception: bool,
}

pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Nothing ignored.
    pub fn none() -> Ignore {
        Ignore { patterns: Vec::new() }
    }

    /// Whether no pattern excludes anything.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn parse(text: &str) -> Result<Ignore> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let pattern = clean_relative(pattern);
            if pattern.is_empty() {
                continue;
            }
            let matcher = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map(|g: Glob| g.compile_matcher())
                .with_context(|| format!(".dockerignore line {}: invalid pattern {line:?}", n + 1))?;
            patterns.push(Pattern { matcher, exception });
        }
        Ok(Ignore { patterns })
    }

    /// Whether a path (relative to the context root, `/`-separated) is left out.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean_relative(path);
        let mut excluded = false;
        for p in &self.patterns {
            if ancestors_and_self(&path).any(|a| p.matcher.is_match(a)) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include files under an excluded directory (then the
    /// directory must still be walked).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// `a/b/c` → `a`, `a/b`, `a/b/c`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(|(i, _)| &path[..i]).chain(std::iter::once(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let ig = Ignore::parse(
            "# comment\n*.md\n!README.md\n/target\n**/*.tmp\nsecret/\ndocs/*/draft\n!secret/keep\n  \n",
        )
        .unwrap();
        assert!(ig.is_excluded("CHANGES.md"));
        assert!(!ig.is_excluded("README.md"));
        assert!(!ig.is_excluded("sub/CHANGES.md"), "* does not cross /");
        assert!(ig.is_excluded("target/debug/x"));
        assert!(ig.is_excluded("a/b/c.tmp") && ig.is_excluded("c.tmp"));
        assert!(ig.is_excluded("secret/key"));
        assert!(!ig.is_excluded("secret/keep"));
        assert!(ig.is_excluded("docs/v1/draft/x.txt"));
        assert!(!ig.is_excluded("docs/draft"));
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(ig.has_exceptions());
    }

    #[test]
    fn last_match_wins() {
        let ig = Ignore::parse("!a\na\n").unwrap();
        assert!(ig.is_excluded("a"));
        let ig = Ignore::parse("a\n!a\n").unwrap();
        assert!(!ig.is_excluded("a"));
        let ig = Ignore::parse("**\n!keep/**\n").unwrap();
        assert!(ig.is_excluded("x/y") && !ig.is_excluded("keep/y"));
    }
}
