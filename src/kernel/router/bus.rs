//! Subscriptions: topic pattern → subscribed modules. Exact topics are a hash lookup; wildcard
//! subscriptions are few and scanned.

use std::sync::Arc;

use super::fasthash::FastMap;
use super::topics::Pattern;

#[derive(Debug, Default)]
pub struct Bus {
    exact: FastMap<String, Vec<Arc<str>>>,
    prefixes: Vec<(String, Arc<str>)>,
}

impl Bus {
    pub fn subscribe(&mut self, pattern: &str, module: &Arc<str>) {
        match Pattern::parse(pattern) {
            Pattern::Exact(t) => {
                let subs = self.exact.entry(t).or_default();
                if !subs.iter().any(|m| m == module) {
                    subs.push(module.clone());
                }
            }
            Pattern::Prefix(p) => {
                if !self.prefixes.iter().any(|(q, m)| *q == p && m == module) {
                    self.prefixes.push((p, module.clone()));
                }
            }
        }
    }

    pub fn unsubscribe_all(&mut self, module: &str) {
        self.exact.retain(|_, subs| {
            subs.retain(|m| &**m != module);
            !subs.is_empty()
        });
        self.prefixes.retain(|(_, m)| &**m != module);
    }

    /// Calls `f` once per module subscribed to `topic` (a module matching through several
    /// patterns is visited once).
    #[inline]
    pub fn for_each_subscriber(&self, topic: &str, mut f: impl FnMut(&Arc<str>)) {
        let exact = self.exact.get(topic);
        if let Some(subs) = exact {
            for m in subs {
                f(m);
            }
        }
        let mut seen: Vec<&Arc<str>> = Vec::new();
        for (p, m) in &self.prefixes {
            if topic.starts_with(p.as_str())
                && !exact.is_some_and(|s| s.contains(m))
                && !seen.contains(&m)
            {
                seen.push(m);
                f(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_once_each() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        let mut bus = Bus::default();
        bus.subscribe("t:x", &a);
        bus.subscribe("t:*", &a);
        bus.subscribe("t:*", &b);
        let mut got = Vec::new();
        bus.for_each_subscriber("t:x", |m| got.push(m.to_string()));
        got.sort();
        assert_eq!(got, ["a", "b"]);
        bus.unsubscribe_all("a");
        let mut got = Vec::new();
        bus.for_each_subscriber("t:x", |m| got.push(m.to_string()));
        assert_eq!(got, ["b"]);
    }
}
