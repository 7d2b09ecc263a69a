//! NATS subjects of a cluster named `<name>`, and the header that names a message's origin.
//!
//! | subject | what |
//! |---|---|
//! | `<name>.svc.<service>` | RPC requests to `service`; every exporting node subscribes in the queue group of the same name, so one of them gets each request |
//! | `<name>.topic.<topic>` | messages of an exported topic (header [`ORIGIN`]: the publishing node) |
//! | `<name>.hb` | heartbeats: node, exported services with a ready provider (see [`super::wire::Heartbeat`]) |
//! | `_INBOX.<name>.<node>.<id>.<kid>` | the answer to this node's RPC `kid` |

use pons_reconciler::cluster::subject_safe;

/// Header naming the node a topic message was published on: a node never delivers its own.
pub const ORIGIN: &str = "Pons-Node";

pub fn service(name: &str, service: &str) -> String {
    format!("{name}.svc.{service}")
}

pub fn heartbeat(name: &str) -> String {
    format!("{name}.hb")
}

pub fn topic_prefix(name: &str) -> String {
    format!("{name}.topic.")
}

/// The subject a topic travels on, or `None` when the topic cannot be a subject (spaces, empty
/// segments, `*` / `>` segments): such messages stay local (counted as dropped).
pub fn topic(name: &str, topic: &str) -> Option<String> {
    topic_safe(topic).then(|| format!("{name}.topic.{topic}"))
}

/// Whether `topic` can travel as (the end of) a subject; see [`topic`].
pub fn topic_safe(topic: &str) -> bool {
    subject_safe(topic)
}

/// The subscription subject of an import pattern: an exact topic, a prefix ending in `.`
/// (`metrics.*` → `<name>.topic.metrics.>`), or — for `*` and prefixes that end inside a
/// segment (`news:*`) — every topic of the cluster (filtered locally).
pub fn import_subscription(name: &str, pattern: &str) -> String {
    match pattern.strip_suffix('*') {
        None => format!("{name}.topic.{pattern}"),
        Some(prefix) if prefix.ends_with('.') && subject_safe(prefix.trim_end_matches('.')) => {
            format!("{name}.topic.{prefix}>")
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
            topic("p", "metrics.cpu").as_deref(),
            Some("p.topic.metrics.cpu")
        );
        assert_eq!(topic("p", "news:a").as_deref(), Some("p.topic.news:a"));
        assert_eq!(topic("p", "a b"), None);
        assert_eq!(topic("p", "a..b"), None);
        assert_eq!(import_subscription("p", "metrics.*"), "p.topic.metrics.>");
        assert_eq!(import_subscription("p", "news:*"), "p.topic.>");
        assert_eq!(import_subscription("p", "*"), "p.topic.>");
        assert_eq!(import_subscription("p", "a.b"), "p.topic.a.b");
        assert!(inbox("p", "n").starts_with("_INBOX.p.n."));
    }
}
