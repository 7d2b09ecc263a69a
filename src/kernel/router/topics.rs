//! Topic patterns: an exact topic, or a trailing segment wildcard (`a:b:*` matches every topic
//! starting with `a:b:`, `a.*` every topic starting with `a.`; a lone `*` matches everything).
//! The same rule applies to subscriptions and to capabilities.

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// The prefix including its separator (`system:module:`), empty for `*`.
    Prefix(String),
}

impl Pattern {
    pub fn parse(p: &str) -> Pattern {
        if p == "*" {
            return Pattern::Prefix(String::new());
        }
        if let Some(prefix) = p.strip_suffix('*') {
            if prefix.ends_with(':') || prefix.ends_with('.') {
                return Pattern::Prefix(prefix.to_string());
            }
        }
        Pattern::Exact(p.to_string())
    }

    /// Whether a concrete topic matches.
    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Exact(t) => t == topic,
            Pattern::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }

    /// Whether everything `other` matches is also matched by `self` (used to check that a
    /// subscription pattern is covered by a capability pattern).
    pub fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b)) => a == b,
            (Pattern::Prefix(p), Pattern::Exact(b)) => b.starts_with(p.as_str()),
            (Pattern::Prefix(p), Pattern::Prefix(q)) => q.starts_with(p.as_str()),
            (Pattern::Exact(_), Pattern::Prefix(_)) => false,
        }
    }
}

/// A set of patterns (e.g. a module's topic capabilities).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternSet {
    exact: super::fasthash::FastSet<String>,
    prefixes: Vec<String>,
}

impl PatternSet {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a String>) -> PatternSet {
        let mut set = PatternSet::default();
        for p in patterns {
            match Pattern::parse(p) {
                Pattern::Exact(t) => {
                    set.exact.insert(t);
                }
                Pattern::Prefix(p) => set.prefixes.push(p),
            }
        }
        set
    }

    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        self.exact.contains(topic) || self.prefixes.iter().any(|p| topic.starts_with(p.as_str()))
    }

    /// Whether the subscription pattern `sub` is allowed by this set.
    pub fn covers(&self, sub: &str) -> bool {
        let sub = Pattern::parse(sub);
        if let Pattern::Exact(t) = &sub {
            if self.exact.contains(t) {
                return true;
            }
        }
        self.prefixes
            .iter()
            .any(|p| Pattern::Prefix(p.clone()).covers(&sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let p = Pattern::parse("system:module:*");
        assert!(p.matches("system:module:ready"));
        assert!(!p.matches("system:modules"));
        assert!(Pattern::parse("a.*").matches("a.b.c"));
        assert!(!Pattern::parse("a*").matches("ab"));
        assert!(Pattern::parse("a*").matches("a*"));
        assert!(Pattern::parse("*").matches("anything"));
    }

    #[test]
    fn sets_cover_subscriptions() {
        let caps = ["system:module:*".to_string(), "x".to_string()];
        let set = PatternSet::new(caps.iter());
        assert!(set.covers("system:module:ready"));
        assert!(set.covers("system:module:*"));
        assert!(set.covers("x"));
        assert!(!set.covers("system:*"));
        assert!(!set.covers("y"));
        assert!(set.matches("system:module:stopped"));
    }
}
