//! Issue 4 acceptance: pub/sub, RPC, kernel calls, lifecycle events, enforcement, back-pressure
//! (compat.md §10 items 39–74 as amended by DESIGN.md).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn delivers(home: &TestHome, id: &str, topic: &str) -> Vec<Value> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == "deliver" && m["topic"] == topic)
        .collect()
}

fn result_of(home: &TestHome, id: &str, event: &str, n: usize) -> Value {
    wait_for(&format!("{id}: {event} #{n}"), T, || {
        home.events(id)
            .into_iter()
            .filter(|e| e["event"] == event)
            .nth(n)
    })
}

fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36 && s.as_bytes()[14] == b'4' && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn publish_reaches_subscribers_but_not_the_publisher() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("pub")
            .manifest(json!({"publishes": ["news:a"], "subscribes": ["news:a", "news:b"]})),
    );
    home.add(
        ModuleSpec::new("sub1")
            .manifest(json!({"subscribes": ["news:a"], "publishes": ["news:b"]})),
    );
    home.add(ModuleSpec::new("sub2").manifest(json!({"subscribes": ["news:*"]})));
    let _k = home.start();
    for id in ["pub", "sub1", "sub2"] {
        home.wait_status(id, "ready", T);
    }
    home.command(
        "pub",
        json!({"publish": {"topic": "news:a", "payload": {"n": 1, "s": "x"}}}),
    );
    let d1 = wait_for("sub1 deliver", T, || {
        delivers(&home, "sub1", "news:a").pop()
    });
    let d2 = wait_for("sub2 deliver (wildcard)", T, || {
        delivers(&home, "sub2", "news:a").pop()
    });
    assert_eq!(d1["payload"], json!({"n": 1, "s": "x"}));
    assert_eq!(d2["payload"], json!({"n": 1, "s": "x"}));
    let (i1, i2) = (d1["id"].as_str().unwrap(), d2["id"].as_str().unwrap());
    assert!(
        is_uuid_v4(i1) && is_uuid_v4(i2) && i1 != i2,
        "fresh UUID per delivery: {i1} {i2}"
    );
    // A later message to the publisher, through the same queue as its own would have taken:
    // once it arrived, a delivery of its own message would have arrived before it.
    home.command(
        "sub1",
        json!({"publish": {"topic": "news:b", "payload": "after"}}),
    );
    wait_for("pub deliver of news:b", T, || {
        delivers(&home, "pub", "news:b").pop()
    });
    assert!(
        delivers(&home, "pub", "news:a").is_empty(),
        "never to the publisher"
    );
}

#[test]
fn forbidden_publish_is_refused_and_stops_the_publisher_in_strict_mode() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  shutdownGraceMs: 1000\n");
    home.add(ModuleSpec::new("rogue").manifest(json!({"publishes": ["ok:t"]})));
    home.add(ModuleSpec::new("victim").manifest(json!({"subscribes": ["secret:t", "ok:t"]})));
    let _k = home.start();
    home.wait_status("rogue", "ready", T);
    home.wait_status("victim", "ready", T);
    home.command(
        "rogue",
        json!({"publish": {"topic": "secret:t", "payload": 1}}),
    );
    home.wait_log("security.violation", T);
    home.wait_stopped_for_violation("rogue", T);
    assert!(
        delivers(&home, "victim", "secret:t").is_empty(),
        "nothing delivered"
    );
    assert!(home.kernel_log().contains("publish:secret:t"));
}

#[test]
fn warn_mode_delivers_and_logs() {
    let mut home = TestHome::new();
    home.write_config("security:\n  enforcementMode: warn\n");
    home.add(ModuleSpec::new("rogue"));
    home.add(ModuleSpec::new("victim").manifest(json!({"subscribes": ["secret:t"]})));
    let _k = home.start();
    home.wait_status("rogue", "ready", T);
    home.wait_status("victim", "ready", T);
    home.command(
        "rogue",
        json!({"publish": {"topic": "secret:t", "payload": 2}}),
    );
    wait_for("delivered in warn mode", T, || {
        delivers(&home, "victim", "secret:t").pop()
    });
    home.wait_log("security.violation", T);
    assert_eq!(home.starts("rogue").len(), 1, "survives in warn mode");
}

#[test]
fn rpc_round_trip_restores_the_callers_id() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["math"]}))
            .args(&["--echo"]),
    );
    home.add(ModuleSpec::new("mon").manifest(json!({"subscribes": ["system:rpc"]})));
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["math"]})));
    let _k = home.start();
    for id in ["prov", "mon", "caller"] {
        home.wait_status(id, "ready", T);
    }
    home.command(
        "caller",
        json!({"rpc": {"service": "math", "method": "add", "params": {"a": 1}}}),
    );
    let res = result_of(&home, "caller", "rpc_result", 0);
    assert_eq!(res["result"]["echo"], json!({"a": 1}), "{res}");
    assert_eq!(res["result"]["from"], "caller");
    assert_eq!(res["result"]["method"], "add");
    let req = wait_for("provider got rpc_request", T, || {
        home.received("prov")
            .into_iter()
            .find(|m| m["type"] == "rpc_request")
    });
    assert_eq!(req["from"], "caller");
    assert_eq!(req["service"], "math");
    let mon = wait_for("system:rpc event", T, || {
        delivers(&home, "mon", "system:rpc").pop()
    });
    assert_eq!(mon["payload"]["from"], "caller");
    assert_eq!(mon["payload"]["service"], "math");
    assert!(mon["payload"]["ts"].as_u64().is_some());
}

#[test]
fn rpc_errors() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  rpcTimeoutMs: 1000\n  shutdownGraceMs: 1000\n");
    home.add(
        ModuleSpec::new("silent")
            .manifest(json!({"provides": ["mute"]}))
            .args(&["--no-reply"]),
    );
    home.add(
        ModuleSpec::new("asker")
            .manifest(json!({"capabilities": {"services": ["mute", "ghost"], "topics": []}})),
    );
    let _k = home.start();
    home.wait_status("silent", "ready", T);
    home.wait_status("asker", "ready", T);
    home.command(
        "asker",
        json!({"rpc": {"service": "ghost", "method": "x", "params": null}}),
    );
    let r = result_of(&home, "asker", "rpc_result", 0);
    assert_eq!(r["error"], "service_not_found", "{r}");
    home.command(
        "asker",
        json!({"rpc": {"service": "mute", "method": "x", "params": null}}),
    );
    let r = result_of(&home, "asker", "rpc_result", 1);
    assert_eq!(r["error"], "timeout", "{r}");
    home.wait_log("rpc.timeout", T);
}

#[test]
fn forbidden_rpc_answers_forbidden_then_stops_the_caller() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  shutdownGraceMs: 1000\n");
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["vault"]}))
            .args(&["--echo"]),
    );
    home.add(ModuleSpec::new("thief"));
    let _k = home.start();
    home.wait_status("prov", "ready", T);
    home.wait_status("thief", "ready", T);
    home.command(
        "thief",
        json!({"rpc": {"service": "vault", "method": "open", "params": {}}}),
    );
    // The answer is recorded as received before the module handles the `shutdown` that follows.
    let r = wait_for("forbidden answer", T, || {
        home.received("thief")
            .into_iter()
            .find(|m| m["type"] == "rpc_response")
    });
    assert_eq!(r["error"], "forbidden", "{r}");
    assert_eq!(r["id"], "tm-rpc-1", "the caller's own id");
    home.wait_stopped_for_violation("thief", T);
}

#[test]
fn provider_dying_answers_callers_in_flight() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["slow"]}))
            .args(&["--no-reply"]),
    );
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["slow"]})));
    let _k = home.start();
    home.wait_status("caller", "ready", T);
    home.command(
        "caller",
        json!({"rpc": {"service": "slow", "method": "x", "params": 1}}),
    );
    wait_for("request reached the provider", T, || {
        home.received("prov")
            .into_iter()
            .find(|m| m["type"] == "rpc_request")
    });
    home.command("prov", json!({"exit": 3}));
    let r = result_of(&home, "caller", "rpc_result", 0);
    assert_eq!(
        r["error"], "Module prov stopped while processing RPC",
        "{r}"
    );
}

#[test]
fn kernel_calls() {
    let mut home = TestHome::new();
    home.write_config("me:\n  port: 8080\n  nested:\n    x: 1\nother:\n  secret: 1\n");
    home.add(ModuleSpec::new("me").manifest(json!({"configKey": "me", "provides": ["svc-me"]})));
    let _k = home.start();
    home.wait_status("me", "ready", T);
    let call = |n: usize, method: &str, params: Value| {
        home.command("me", json!({"call": {"method": method, "params": params}}));
        result_of(&home, "me", "call_result", n)
    };
    assert_eq!(
        call(0, "config.get", json!({"key": "me.port"}))["result"],
        8080
    );
    let missing = call(1, "config.get", json!({"key": "me.nope"}));
    assert!(
        missing.get("result").is_none() || missing["result"].is_null(),
        "{missing}"
    );
    let list = call(2, "module.list", json!(null));
    assert_eq!(list["result"][0]["id"], "me");
    let res = call(3, "service.resolve", json!({"service": "svc-me"}));
    assert_eq!(res["result"], "me");
    let res = call(4, "service.resolve", json!({"service": "nope"}));
    assert_eq!(res["error"], "Error: Service not found: nope");
    let res = call(5, "no.such", json!({}));
    assert_eq!(res["error"], "Error: Unknown kernel method: no.such");
    let res = call(6, "config.sections", json!(null));
    assert_eq!(res["result"][0]["key"], "me");
    let res = call(7, "config.set", json!({"key": "me.port", "value": "9090"}));
    assert_eq!(
        res["result"],
        json!({"success": true, "coerced": 9090}),
        "{res}"
    );
    let upd = wait_for("config:update after config.set", T, || {
        home.received("me")
            .into_iter()
            .find(|m| m["type"] == "config:update")
    });
    assert_eq!(upd["config"]["me"]["port"], 9090);
    assert_eq!(upd["changedSections"], json!(["me"]));
    let text = std::fs::read_to_string(home.path().join("config.yaml")).unwrap();
    assert!(
        text.contains("9090") && text.contains("secret"),
        "other sections kept: {text}"
    );
    // Reading another module's section is a violation: error, then the restart path.
    home.command(
        "me",
        json!({"call": {"method": "config.get", "params": {"key": "other.secret"}}}),
    );
    // Recorded as received before the module handles the `shutdown` of its restart.
    let res = wait_for("violation answer", T, || {
        home.received("me").into_iter().find(|m| {
            m["type"] == "call:response"
                && m["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("Security violation"))
        })
    });
    assert!(
        res["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Error: Security violation: not permitted to read config key"),
        "{res}"
    );
    home.wait_stopped_for_violation("me", T);
}

#[test]
fn lifecycle_events_reach_wildcard_subscribers() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("watcher").manifest(json!({"subscribes": ["system:module:*"]})));
    let _k = home.start();
    home.wait_status("watcher", "ready", T);
    home.add(ModuleSpec::new("newbie").manifest(json!({"provides": ["n"], "version": "1.2.3"})));
    let ev = wait_for("system:module:ready for newbie", T, || {
        delivers(&home, "watcher", "system:module:ready")
            .into_iter()
            .find(|d| d["payload"]["moduleId"] == "newbie")
    });
    assert_eq!(ev["payload"]["provides"], json!(["n"]));
    assert_eq!(ev["payload"]["version"], "1.2.3");
    std::fs::remove_dir_all(home.path().join("modules/newbie")).unwrap();
    wait_for("system:module:stopped for newbie", T, || {
        delivers(&home, "watcher", "system:module:stopped")
            .into_iter()
            .find(|d| d["payload"]["moduleId"] == "newbie")
    });
    assert!(delivers(&home, "watcher", "system:module:stopping")
        .iter()
        .any(|d| d["payload"]["moduleId"] == "newbie" && d["payload"]["tier"] == 0));
}

#[test]
fn burst_of_200k_messages_loses_nothing() {
    let mut home = TestHome::new();
    // The publisher requires the subscriber's service, so it starts bursting only once the
    // subscriber is ready and subscribed.
    home.add(
        ModuleSpec::new("sink")
            .manifest(json!({"subscribes": ["burst"], "provides": ["sink"]}))
            .args(&["--count-only"]),
    );
    home.add(
        ModuleSpec::new("firehose")
            .manifest(json!({"publishes": ["burst"], "requires": ["sink"]}))
            .args(&["--publish", "burst:200000:64"]),
    );
    let _k = home.start();
    home.wait_event("firehose", "publish_done", Duration::from_secs(120), |e| {
        e["event"] == "publish_done"
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let last = home
            .events("sink")
            .iter()
            .rev()
            .find(|e| e["event"] == "count")
            .cloned();
        if last.as_ref().is_some_and(|e| e["n"] == 200_000) {
            break;
        }
        if std::time::Instant::now() > deadline {
            let log = home.kernel_log();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.starts_with('{'))
                .rev()
                .take(30)
                .collect();
            panic!(
                "not all 200000 delivered: last count {last:?}; sink starts {}; status {}; log tail:\n{}",
                home.starts("sink").len(),
                home.status(),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = home.module_status("sink").unwrap();
    assert_eq!(st["dropped"].as_u64().unwrap_or(0), 0, "{st}");
}

#[test]
fn hung_subscriber_is_restarted_while_the_publisher_keeps_running() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  slowConsumerMs: 1000\n  shutdownGraceMs: 1000\n");
    home.add(
        ModuleSpec::new("stuck")
            .manifest(json!({"subscribes": ["flood"], "provides": ["stuck"]}))
            .args(&["--stop-reading"]),
    );
    home.add(
        ModuleSpec::new("flooder")
            .manifest(json!({"publishes": ["flood"], "requires": ["stuck"]}))
            .args(&["--publish", "flood:50000:4096"]),
    );
    let _k = home.start();
    wait_for(
        "stuck restarted as a slow consumer",
        Duration::from_secs(60),
        || (home.starts("stuck").len() >= 2).then_some(()),
    );
    home.wait_event("flooder", "publish_done", Duration::from_secs(60), |e| {
        e["event"] == "publish_done"
    });
    assert_eq!(
        home.starts("flooder").len(),
        1,
        "the publisher was never restarted"
    );
    home.wait_log("slow-consumer", T);
}
