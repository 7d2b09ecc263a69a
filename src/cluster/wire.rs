//! What crosses NATS, and how outbound messages wait in the link's queue.
//!
//! - An RPC request's body is `{"m":method,"f":from,"p":params}` (`params` forwarded raw), its
//!   answer `{"result":…}` or `{"error":…}` (raw, as the provider sent it); a topic message's
//!   body is the payload itself. JSON from the network is only forwarded into a module's line
//!   when it is one line (no raw newline or carriage return), so no peer can forge a message.
//! - A heartbeat is [`Heartbeat`] as JSON.
//! - The link's queue (an [`crate::kernel::outbox::Outbox`], for the same back-pressure and caps
//!   as a module's) holds records `kind u8 · subject · reply · body`, each length-prefixed.

use std::borrow::Cow;

use bytes::BufMut;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A record of the link's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A topic message (its subject names the origin node).
    Publish = 0,
    /// An RPC request (with a reply subject).
    Request = 1,
    /// The answer to a remote caller.
    Reply = 2,
}

/// Appends one record to the queue's buffer.
pub fn push_record(buf: &mut Vec<u8>, kind: Kind, subject: &str, reply: &str, body: &[u8]) {
    buf.push(kind as u8);
    for part in [subject.as_bytes(), reply.as_bytes(), body] {
        buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
        buf.extend_from_slice(part);
    }
}

/// One record read back from a batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub subject: &'a str,
    pub reply: &'a str,
    pub body: &'a [u8],
}

/// Reads the records of a batch (stops at the first malformed one, which cannot happen for
/// batches written by [`push_record`]).
pub fn records(mut b: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let (&k, rest) = b.split_first()?;
        let kind = match k {
            0 => Kind::Publish,
            1 => Kind::Request,
            2 => Kind::Reply,
            _ => return None,
        };
        let mut rest = rest;
        let mut part = || -> Option<&[u8]> {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let p = rest.get(4..4 + len)?;
            rest = &rest[4 + len..];
            Some(p)
        };
        let subject = std::str::from_utf8(part()?).ok()?;
        let reply = std::str::from_utf8(part()?).ok()?;
        let body = part()?;
        b = rest;
        Some(Record {
            kind,
            subject,
            reply,
            body,
        })
    })
}

/// Writes the body of an RPC request to another node; `from` is the calling module, `node`
/// this node (`"f"` is `<from>@<node>`).
pub fn request_body(
    out: &mut impl BufMut,
    method: &str,
    (from, node): (&str, &str),
    params: Option<&RawValue>,
) {
    out.put_slice(b"{\"m\":");
    let _ = serde_json::to_writer(out.writer(), method);
    out.put_slice(b",\"f\":");
    // Escaped as it is written: no string of its own.
    let _ = serde_json::to_writer(out.writer(), &format_args!("{from}@{node}"));
    if let Some(p) = params {
        out.put_slice(b",\"p\":");
        out.put_slice(p.get().as_bytes());
    }
    out.put_slice(b"}");
}

/// An RPC request as received from another node (its strings borrowed unless escaped).
#[derive(Debug, Deserialize)]
pub struct RequestBody<'a> {
    #[serde(borrow)]
    pub m: Cow<'a, str>,
    #[serde(borrow)]
    pub f: Cow<'a, str>,
    #[serde(borrow, default)]
    pub p: Option<&'a RawValue>,
}

/// Writes the body of an RPC answer: the provider's `result` and `error` as they came.
pub fn reply_body(out: &mut impl BufMut, result: Option<&RawValue>, error: Option<&RawValue>) {
    out.put_slice(b"{");
    if let Some(r) = result {
        out.put_slice(b"\"result\":");
        out.put_slice(r.get().as_bytes());
    }
    if let Some(e) = error {
        if result.is_some() {
            out.put_slice(b",");
        }
        out.put_slice(b"\"error\":");
        out.put_slice(e.get().as_bytes());
    }
    out.put_slice(b"}");
}

/// Writes the body of a kernel-made error answer (`timeout`, `service_not_found`, …).
pub fn error_body(out: &mut impl BufMut, error: &str) {
    out.put_slice(b"{\"error\":");
    let _ = serde_json::to_writer(out.writer(), error);
    out.put_slice(b"}");
}

/// An RPC answer as received.
#[derive(Debug, Deserialize)]
pub struct ReplyBody<'a> {
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

/// Whether JSON text from the network may be forwarded inside a module's line.
pub fn one_line(b: &[u8]) -> bool {
    memchr::memchr2(b'\n', b'\r', b).is_none()
}

/// A topic payload from the network as raw JSON (`Some(None)` for an empty body); `None` when
/// it is not one line of JSON.
pub fn payload(b: &[u8]) -> Option<Option<&RawValue>> {
    if b.is_empty() {
        return Some(None);
    }
    if !one_line(b) {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    serde_json::from_str::<&RawValue>(s).ok().map(Some)
}

/// One exported service with a ready provider on the sending node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RemoteService {
    pub service: String,
    pub module: String,
}

/// A node's heartbeat on `<name>.hb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    #[serde(default)]
    pub services: Vec<RemoteService>,
    /// The node just connected: the others answer with their heartbeat at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hello: bool,
    /// The node is leaving: the others drop it at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bye: bool,
    /// The sender's heartbeat interval (ms): a receiver waits at least three of them before it
    /// counts the sender silent.
    #[serde(default, rename = "everyMs", skip_serializing_if = "is_zero")]
    pub every_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RemoteService {
    /// Whether an entry from the network is fit to keep and show (a service name that can be a
    /// subject, a module id without control characters).
    pub fn is_sane(&self) -> bool {
        pons_reconciler::cluster::subject_safe(&self.service)
            && self.service.len() <= 256
            && self.module.len() <= 256
            && !self.module.contains(char::is_control)
            && !self.service.contains(char::is_control)
    }
}

/// Whether a node name from the network is one `cluster.node` could be.
pub fn sane_node(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 64
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        push_record(&mut buf, Kind::Publish, "p.topic.a", "", b"{\"x\":1}");
        push_record(&mut buf, Kind::Request, "p.svc.e", "_INBOX.1", b"{}");
        push_record(&mut buf, Kind::Reply, "_INBOX.2", "", b"");
        let got: Vec<Record> = records(&buf).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].subject, "p.topic.a");
        assert_eq!(got[1].kind, Kind::Request);
        assert_eq!(got[1].reply, "_INBOX.1");
        assert_eq!(got[2].body, b"");
        assert_eq!(
            records(&buf[..buf.len() - 1]).count(),
            2,
            "a cut record is not read"
        );
    }

    #[test]
    fn bodies() {
        let p = RawValue::from_string("{\"a\":[1,2]}".into()).unwrap();
        let mut b = Vec::new();
        request_body(&mut b, "get\"x", ("co\"ns", "b"), Some(&p));
        let r: RequestBody = serde_json::from_slice(&b).unwrap();
        assert_eq!((&*r.m, &*r.f), ("get\"x", "co\"ns@b"));
        assert_eq!(r.p.unwrap().get(), "{\"a\":[1,2]}");
        let mut b = Vec::new();
        request_body(&mut b, "echo", ("cons", "b"), None);
        assert_eq!(b, br#"{"m":"echo","f":"cons@b"}"#);
        let r: RequestBody = serde_json::from_slice(&b).unwrap();
        assert!(matches!(r.f, Cow::Borrowed("cons@b")), "not copied");
        let e = RawValue::from_string("\"Error: no\"".into()).unwrap();
        let mut body = Vec::new();
        reply_body(&mut body, None, Some(&e));
        assert_eq!(body, b"{\"error\":\"Error: no\"}");
        let mut body = Vec::new();
        reply_body(&mut body, Some(&p), None);
        let rb: ReplyBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(rb.result.unwrap().get(), p.get());
        let mut body = Vec::new();
        error_body(&mut body, "timeout");
        assert_eq!(body, b"{\"error\":\"timeout\"}");
    }

    #[test]
    fn payloads_from_the_network() {
        assert!(payload(b"").unwrap().is_none());
        assert_eq!(payload(b"{\"a\":1}").unwrap().unwrap().get(), "{\"a\":1}");
        assert!(
            payload(b"{\"a\":\n1}").is_none(),
            "a raw newline would split the line"
        );
        assert!(payload(b"{nope").is_none());
    }

    #[test]
    fn heartbeat_json() {
        let hb = Heartbeat {
            node: "a".into(),
            services: vec![RemoteService {
                service: "echo".into(),
                module: "prov".into(),
            }],
            hello: false,
            bye: false,
            every_ms: 0,
        };
        let s = serde_json::to_string(&hb).unwrap();
        assert_eq!(
            s,
            r#"{"node":"a","services":[{"service":"echo","module":"prov"}]}"#
        );
        let back: Heartbeat = serde_json::from_str(&s).unwrap();
        assert_eq!(back, hb);
    }
}
