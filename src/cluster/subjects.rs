//! NATS subjects of a cluster named `<name>`. A topic message names its origin node in its
//! subject (one token: node names are letters, digits, `-`, `_`), so it travels without headers
//! and a receiving node tells its own messages apart with a string comparison.
//!
//! | subject | what |
//! |---|---|
//! | `<name>.svc.<service>` | RPC requests to `service`; every exporting node subscribes in the queue group of the same name, so one of them gets each request |
//! | `<name>.topic.<node>.<topic>` | messages of an exported topic published on `node` |
//! | `<name>.hb` | heartbeats: node, exported services with a ready provider (see [`super::wire::Heartbeat`]) |
//! | `_INBOX.<name>.<node>.<id>.<kid>` | the answer to this node's RPC `kid` |

use pons_reconciler::cluster::subject_safe;

pub fn service(name: &str, service: &str) -> String {
    format!("{name}.svc.{service}")
}

pub fn heartbeat(name: &str) -> String {
    format!("{name}.hb")
}

/// `<name>.topic.`: what every topic subject starts with.
pub fn topic_prefix(name: &str) -> String {
    format!("{name}.topic.")
}

/// `<name>.topic.<node>.`: what the subjects of `node`'s topic messages start with.
pub fn origin_prefix(name: &str, node: &str) -> String {
    format!("{name}.topic.{node}.")
}

/// The subject a topic published on `node` travels on, or `None` when the topic cannot be a
/// subject (spaces, empty segments, `*` / `>` segments): such messages stay local (counted as
/// dropped).
pub fn topic(name: &str, node: &str, topic: &str) -> Option<String> {
    topic_safe(topic).then(|| format!("{}{topic}", origin_prefix(name, node)))
}

/// Whether `topic` can travel as (the end of) a subject; see [`topic`].
pub fn topic_safe(topic: &str) -> bool {
    subject_safe(topic)
}

/// The origin node and the topic of a topic message's subject, given what follows
/// [`topic_prefix`]; `None` when there is no node token or no topic after it.
pub fn origin_and_topic(rest: &str) -> Option<(&str, &str)> {
    rest.split_once('.')
        .filter(|(node, topic)| !node.is_empty() && !topic.is_empty())
}

/// The subscription subject of an import pattern, from any node (`*` in the node's place): an
/// exact topic, a prefix ending in `.` (`metrics.*` → `<name>.topic.*.metrics.>`), or — for `*`
/// and prefixes that end inside a segment (`news:*`) — every topic of the cluster (filtered
/// locally).
pub fn import_subscription(name: &str, pattern: &str) -> String {
    match pattern.strip_suffix('*') {
        None => format!("{name}.topic.*.{pattern}"),
        Some(prefix) if prefix.ends_with('.') && subject_safe(prefix.trim_end_matches('.')) => {
            format!("{name}.topic.*.{prefix}>")
        }
        Some(_) => format!("{name}.topic.>"),
    }
}

/// This link's reply prefix (a fresh id per connection task).
pub fn inbox(name: &str, node: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("_INBOX.{name}.{node}.{}", &id[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(service("p", "echo"), "p.svc.echo");
        assert_eq!(
            topic("p", "a", "metrics.cpu").as_deref(),
            Some("p.topic.a.metrics.cpu")
        );
        assert_eq!(
            topic("p", "n-1_x", "news:a").as_deref(),
            Some("p.topic.n-1_x.news:a")
        );
        assert_eq!(topic("p", "a", "a b"), None);
        assert_eq!(topic("p", "a", "a..b"), None);
        assert_eq!(import_subscription("p", "metrics.*"), "p.topic.*.metrics.>");
        assert_eq!(import_subscription("p", "news:*"), "p.topic.>");
        assert_eq!(import_subscription("p", "*"), "p.topic.>");
        assert_eq!(import_subscription("p", "a.b"), "p.topic.*.a.b");
        assert_eq!(import_subscription("p", "a"), "p.topic.*.a");
        assert!(inbox("p", "n").starts_with("_INBOX.p.n."));
    }

    #[test]
    fn a_topic_subject_names_its_origin_node_then_the_topic() {
        let subject = topic("p", "a", "metrics.cpu").unwrap_or_default();
        let rest = subject.strip_prefix(&topic_prefix("p"));
        assert_eq!(rest.and_then(origin_and_topic), Some(("a", "metrics.cpu")));
        assert!(subject.starts_with(&origin_prefix("p", "a")));
        assert_eq!(origin_and_topic("b.news:a"), Some(("b", "news:a")));
        assert_eq!(origin_and_topic("b.x.y"), Some(("b", "x.y")));
        // What no node sends: no topic after the node, or no node at all.
        assert_eq!(origin_and_topic("metrics"), None);
        assert_eq!(origin_and_topic("a."), None);
        assert_eq!(origin_and_topic(".x"), None);
    }
}
