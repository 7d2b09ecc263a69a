//! What a node sends over NATS, seen by a plain NATS client that plays another node (specs/
//! cluster.md "Subjects"): a request to another node's service carries its caller in its body
//! (`{"m","f","p"}`) and no header, its answer is `{"result"}` on the request's reply subject;
//! an exported topic message carries the payload and no header, its origin node in its subject
//! (`pons.topic.<node>.<topic>`), and a node delivers what other nodes publish so, never what
//! names itself as origin. Without `nats-server` the tests fail under `CI` and print
//! `SKIP <test>: …` elsewhere.

mod common;

use std::time::Duration;

use common::nats::*;
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A runtime for the plain NATS clients that play other nodes.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn requests_carry_their_caller_in_the_body_and_no_header() {
    let Some(bin) = nats_or_skip("requests_carry_their_caller_in_the_body_and_no_header") else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    let rt = runtime();
    let url = nats.url();
    // Node `x`: a plain client advertising `echo` in its heartbeats, answering each request and
    // reporting what it received.
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<async_nats::Message>();
    let client = rt.block_on(async {
        let c = async_nats::connect(&url).await.expect("connect node x");
        let mut svc = c
            .queue_subscribe("pons.svc.echo".to_string(), "pons.svc.echo".to_string())
            .await
            .expect("subscribe pons.svc.echo");
        // As an importing node subscribes: from any node.
        let mut topic = c
            .subscribe("pons.topic.*.t.x".to_string())
            .await
            .expect("subscribe pons.topic.*.t.x");
        c.flush().await.expect("flush");
        let answer = c.clone();
        let tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Some(m) = svc.next().await {
                if let Some(reply) = m.reply.clone() {
                    let _ = answer
                        .publish(reply, r#"{"result":{"ok":true}}"#.into())
                        .await;
                }
                let _ = tx.send(m);
            }
        });
        tokio::spawn(async move {
            while let Some(m) = topic.next().await {
                let _ = seen_tx.send(m);
            }
        });
        let hb = c.clone();
        tokio::spawn(async move {
            let body = json!({"node": "x", "services": [{"service": "echo", "module": "prov"}], "everyMs": 100});
            loop {
                let _ = hb
                    .publish("pons.hb".to_string(), body.to_string().into())
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        c
    });

    let mut b = node_home(
        &url,
        "b",
        "  import: {services: [echo]}\n  export: {topics: ['t.*']}\n",
        "",
    );
    b.add(ModuleSpec::new("cons").manifest(json!({"requires": ["echo"], "publishes": ["t.*"]})));
    let _kb = b.start();
    b.wait_status("cons", "ready", T);

    let r = rpc(&b, "cons", "echo", "hi", json!({"x": "é\"1"}));
    assert_eq!(r["result"], json!({"ok": true}), "{r}");
    let req = seen_rx.recv_timeout(T).expect("node x got the request");
    assert_eq!(req.subject.as_str(), "pons.svc.echo");
    assert!(
        req.headers.as_ref().is_none_or(|h| h.is_empty()),
        "a request carries no header: {:?}",
        req.headers
    );
    let body: Value = serde_json::from_slice(&req.payload).expect("a JSON body");
    assert_eq!(
        body,
        json!({"m": "hi", "f": "cons@b", "p": {"x": "é\"1"}}),
        "{}",
        String::from_utf8_lossy(&req.payload)
    );
    let reply = req
        .reply
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    assert!(reply.starts_with("_INBOX.pons.b."), "{reply}");

    b.command(
        "cons",
        json!({"publish": {"topic": "t.x", "payload": {"n": 1}}}),
    );
    let msg = seen_rx
        .recv_timeout(T)
        .expect("node x got the topic message");
    assert_eq!(
        msg.subject.as_str(),
        "pons.topic.b.t.x",
        "named after node b"
    );
    assert_eq!(&msg.payload[..], br#"{"n":1}"#);
    assert!(
        msg.headers.as_ref().is_none_or(|h| h.is_empty()),
        "a topic message carries no header: {:?}",
        msg.headers
    );
    drop(client);
}

/// The origin check on its own (a node's own messages never reach it through NATS anyway: its
/// connection has no echo): a plain client publishes on B's imported topic as node `x` and as
/// node `b`; B delivers `x`'s messages under their topic, never those naming B.
#[test]
fn a_node_delivers_what_other_nodes_publish_never_what_names_itself() {
    let Some(bin) =
        nats_or_skip("a_node_delivers_what_other_nodes_publish_never_what_names_itself")
    else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    let rt = runtime();
    let client = rt
        .block_on(async_nats::connect(nats.url()))
        .expect("connect node x");
    let publish = |subject: &str, payload: Value| {
        rt.block_on(async {
            client
                .publish(subject.to_string(), payload.to_string().into())
                .await
                .expect("publish");
            client.flush().await.expect("flush");
        })
    };

    let mut b = node_home(
        &nats.url(),
        "b",
        "  import: {topics: ['t.*']}
",
        "",
    );
    b.add(ModuleSpec::new("bsub").manifest(json!({"subscribes": ["t.*"]})));
    let _kb = b.start();
    b.wait_status("bsub", "ready", T);
    let delivered = |b: &TestHome| -> Vec<Value> {
        b.received("bsub")
            .into_iter()
            .filter(|m| m["type"] == "deliver")
            .map(|m| json!([m["topic"], m["payload"]]))
            .collect()
    };
    // Until B's import is in place: `x`'s messages, one every 50 ms.
    let mut k = 0;
    wait_for("node b to deliver what node x publishes", T, || {
        k += 1;
        publish("pons.topic.x.t.y", json!({"warm": k}));
        std::thread::sleep(Duration::from_millis(50));
        (!delivered(&b).is_empty()).then_some(())
    });
    // In order from one connection on one subscription: once `last` is delivered, the message
    // naming B before it was dealt with.
    publish("pons.topic.b.t.y", json!({"own": true}));
    publish("pons.topic.x.t.y", json!({"last": true}));
    wait_for("node b: the last message", T, || {
        delivered(&b)
            .contains(&json!(["t.y", {"last": true}]))
            .then_some(())
    });
    let got = delivered(&b);
    assert!(
        got.iter()
            .all(|m| m[0] == "t.y" && m[1].get("own").is_none()),
        "only x's messages, under their topic: {got:?}"
    );
    drop(client);
}
