//! `pons call` and `pons publish`: the operator poking modules from the shell, through the real
//! binary, a real kernel and real test modules.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn call_reaches_the_provider_as_the_operator_and_prints_its_answer() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    )
    .add(ModuleSpec::new("strict").manifest(json!({"provides": ["picky"]})))
    .add(
        ModuleSpec::new("slow")
            .manifest(json!({"provides": ["sleepy"]}))
            .args(&["--no-reply"]),
    );
    let _k = home.start();
    for id in ["prov", "strict", "slow"] {
        home.wait_status(id, "ready", T);
    }

    let out = home.pons(&["call", "echo", "say", r#"{"text":"hi","n":[1,2]}"#]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    assert_eq!(
        answer,
        json!({"echo": {"text": "hi", "n": [1, 2]}, "method": "say", "from": "operator"})
    );
    assert!(
        stdout(&out).contains("\n  \"method\""),
        "pretty JSON: {}",
        stdout(&out)
    );
    // The provider saw an ordinary rpc_request from the operator.
    let req = home.wait_received("prov", "rpc_request", T);
    assert_eq!(req["from"], "operator");
    assert_eq!(req["service"], "echo");
    assert_eq!(req["method"], "say");
    assert_eq!(req["params"], json!({"text": "hi", "n": [1, 2]}));

    // No params: the provider gets none, the answer still comes back.
    let out = home.pons(&["call", "echo", "ping"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(answer["method"], "ping");
    assert_eq!(answer["echo"], Value::Null);

    // The provider's own error.
    let out = home.pons(&["call", "picky", "nothing"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: picky.nothing: Error: Unknown method: nothing"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));

    // No provider.
    let out = home.pons(&["call", "nope", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "error: nope.x: service_not_found (no module provides `nope`; `pons status` lists the services and who provides them)"
    );

    // A provider that never answers: the operator's own timeout.
    let out = home.pons(&["call", "sleepy", "wait", "--timeout", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: sleepy.wait: timeout (no answer within 1 s; a longer wait: --timeout S)"
    );
    home.wait_log("rpc.timeout", T);
    let log = home.kernel_log();
    assert!(
        log.lines()
            .any(|l| l.contains("rpc.timeout") && l.contains("operator") && l.contains("1000")),
        "{log}"
    );

    // A JSON argument that does not parse is named, and nothing is sent.
    let before = home
        .received("prov")
        .iter()
        .filter(|m| m["type"] == "rpc_request")
        .count();
    let out = home.pons(&["call", "echo", "say", "{text:hi}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the params argument \"{text:hi}\" is not valid JSON"),
        "{}",
        stderr(&out)
    );
    let out = home.pons(&["call", "echo", "after"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests: Vec<Value> = home
        .received("prov")
        .into_iter()
        .filter(|m| m["type"] == "rpc_request")
        .collect();
    assert_eq!(requests.len(), before + 1, "{requests:?}");
    assert_eq!(requests[before]["method"], "after");
}

#[test]
fn publish_reaches_subscribers_and_is_logged() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("sub").manifest(json!({"subscribes": ["news:*"]})))
        .add(ModuleSpec::new("sub2").manifest(json!({"subscribes": ["news:flash"]})))
        .add(ModuleSpec::new("other").manifest(json!({"subscribes": ["weather:today"]})));
    let _k = home.start();
    for id in ["sub", "sub2", "other"] {
        home.wait_status(id, "ready", T);
    }

    let out = home.pons(&[
        "publish",
        "news:flash",
        r#"{"headline":"bridge opens"}"#,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let data: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(&out)));
    assert_eq!(data, json!({"topic": "news:flash", "delivered": 2}));
    for id in ["sub", "sub2"] {
        let msg = home.wait_received(id, "deliver", T);
        assert_eq!(msg["topic"], "news:flash");
        assert_eq!(msg["payload"], json!({"headline": "bridge opens"}));
    }
    home.wait_log("operator.publish topic=news:flash subscribers=2", T);

    // Text output, no payload, one subscriber.
    let out = home.pons(&["publish", "news:late"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "published to news:late: delivered to 1 subscriber"
    );
    home.wait_log("operator.publish topic=news:late subscribers=1", T);
    wait_for("sub to receive news:late", T, || {
        home.received("sub")
            .into_iter()
            .find(|m| m["type"] == "deliver" && m["topic"] == "news:late")
    });

    // The kernel's topics are refused, and nothing is delivered.
    let out = home.pons(&["publish", "system:module:ready", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: topic system:module:ready is refused"),
        "{err}"
    );
    assert!(err.contains("belong to the kernel"), "{err}");

    // Whatever else happened, `other` (subscribed elsewhere) got none of it, and sub2 only its one
    // topic; checked after a last publish to `other` arrived, so earlier deliveries would be in.
    let out = home.pons(&["publish", "weather:today", "\"sunny\""]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let msg = home.wait_received("other", "deliver", T);
    assert_eq!(msg["payload"], "sunny");
    let topics = |id: &str| -> Vec<String> {
        home.received(id)
            .into_iter()
            .filter(|m| m["type"] == "deliver")
            .filter_map(|m| m["topic"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(topics("other"), ["weather:today"]);
    assert_eq!(topics("sub2"), ["news:flash"]);
    assert_eq!(topics("sub"), ["news:flash", "news:late"]);
}

#[test]
fn without_a_kernel() {
    let home = TestHome::new();
    for args in [
        vec!["call", "echo", "say", "{}"],
        vec!["publish", "news:flash"],
    ] {
        let out = home.pons(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("the kernel is not running")
                && stderr(&out).contains("`pons kernel start`"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // A bad JSON argument is reported before the kernel is looked for.
    let out = home.pons(&["publish", "news:flash", "not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the payload argument \"not json\" is not valid JSON"),
        "{}",
        stderr(&out)
    );
}
