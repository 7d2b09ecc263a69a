//! Edge cases of routing and kernel calls (compat.md §10 items 44–60 as amended by DESIGN.md).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(15);

fn nth_event(home: &TestHome, id: &str, event: &str, n: usize) -> Value {
    wait_for(&format!("{id}: {event} #{n}"), T, || {
        home.events(id)
            .into_iter()
            .filter(|e| e["event"] == event)
            .nth(n)
    })
}

#[test]
fn a_waiting_module_cannot_publish_or_call_services() {
    let mut home = TestHome::new();
    home.add(
        ModuleSpec::new("late")
            .manifest(json!({"provides": ["late-svc"]}))
            .args(&["--ready-delay-ms", "4000", "--echo"]),
    );
    home.add(ModuleSpec::new("eager").manifest(json!({
        "requires": ["late-svc"], "publishes": ["t:x"], "subscribes": ["t:x"]
    })));
    home.add(ModuleSpec::new("listener").manifest(json!({"subscribes": ["t:x"]})));
    let _k = home.start();
    home.wait_status("eager", "waiting", T);
    home.wait_status("listener", "ready", T);
    home.command("eager", json!({"publish": {"topic": "t:x", "payload": 1}}));
    home.wait_log("Rejected message from module not in ready state", T);
    home.command(
        "eager",
        json!({"rpc": {"service": "late-svc", "method": "m", "params": 1}}),
    );
    let r = nth_event(&home, "eager", "rpc_result", 0);
    assert_eq!(r["error"], "Module not ready", "{r}");
    assert!(
        !home
            .received("listener")
            .iter()
            .any(|m| m["type"] == "deliver"),
        "nothing was delivered"
    );
}

#[test]
fn responses_from_the_wrong_module_or_unknown_ids_are_ignored() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  rpcTimeoutMs: 2000\n");
    home.add(
        ModuleSpec::new("prov")
            .manifest(json!({"provides": ["p"]}))
            .args(&["--no-reply"]),
    );
    home.add(ModuleSpec::new("impostor"));
    home.add(ModuleSpec::new("caller").manifest(json!({"requires": ["p"]})));
    let _k = home.start();
    home.wait_status("caller", "ready", T);
    home.wait_status("impostor", "ready", T);
    home.command(
        "caller",
        json!({"rpc": {"service": "p", "method": "m", "params": 1}}),
    );
    let req = wait_for("request at provider", T, || {
        home.received("prov")
            .into_iter()
            .find(|m| m["type"] == "rpc_request")
    });
    let kid = req["id"].as_str().unwrap().to_string();
    assert_ne!(kid, "tm-rpc-1", "the provider sees a kernel-owned id");
    let forged = json!({"type": "rpc_response", "id": kid, "result": "forged"}).to_string();
    home.command("impostor", json!({"raw": forged}));
    home.wait_log("RPC response from unexpected module", T);
    let unknown = json!({"type": "rpc_response", "id": "k-999999", "result": 1}).to_string();
    home.command("prov", json!({"raw": unknown}));
    let r = nth_event(&home, "caller", "rpc_result", 0);
    assert_eq!(
        r["error"], "timeout",
        "the forged answer never reached the caller: {r}"
    );
}

#[test]
fn module_logs_carry_the_module_name() {
    let mut home = TestHome::new();
    home.add(ModuleSpec::new("talker"));
    let _k = home.start();
    home.wait_status("talker", "ready", T);
    home.command(
        "talker",
        json!({"log": {"level": "info", "msg": "hi", "data": {"a": 1}}}),
    );
    home.command(
        "talker",
        json!({"log": {"level": "verbose", "msg": "odd-level-line"}}),
    );
    home.command("talker", json!({"raw": "{\"type\":\"ack\",\"id\":\"x\"}"}));
    home.command(
        "talker",
        json!({"raw": "{\"type\":\"nack\",\"id\":\"x\",\"error\":\"e\"}"}),
    );
    home.wait_log("hi a=1", T);
    home.wait_log("odd-level-line", T);
    let stderr = std::fs::read_to_string(home.path().join("kernel.stderr")).unwrap();
    let line = stderr
        .lines()
        .find(|l| l.ends_with("hi a=1"))
        .expect("log line");
    assert!(line.contains("talker"), "module column: {line}");
    let odd = stderr
        .lines()
        .find(|l| l.contains("odd-level-line"))
        .unwrap();
    assert!(odd.contains("INFO"), "unknown level logged at info: {odd}");
    assert_eq!(home.starts("talker").len(), 1, "ack/nack change nothing");
}

#[test]
fn config_key_traversal_is_a_violation() {
    let mut home = TestHome::new();
    home.write_config("me:\n  a: 1\n");
    home.add(ModuleSpec::new("me").manifest(json!({"configKey": "me"})));
    let _k = home.start();
    home.wait_status("me", "ready", T);
    // No params at all: a TypeError, and the caller is not restarted.
    home.command(
        "me",
        json!({"raw": "{\"type\":\"call\",\"id\":\"c-np\",\"method\":\"config.get\"}"}),
    );
    wait_for("TypeError answer", T, || {
        home.received("me").into_iter().find(|m| {
            m["type"] == "call:response"
                && m["id"] == "c-np"
                && m["error"].as_str().unwrap_or("").starts_with("TypeError")
        })
    });
    assert_eq!(home.starts("me").len(), 1);
    home.command(
        "me",
        json!({"call": {"method": "config.get", "params": {"key": "me.__proto__.x"}}}),
    );
    let r = wait_for("violation answer", T, || {
        home.received("me")
            .into_iter()
            .find(|m| m["type"] == "call:response" && m["id"] != "c-np")
    });
    assert!(
        r["error"]
            .as_str()
            .unwrap_or("")
            .contains("Security violation"),
        "{r}"
    );
    let st = home.wait_status("me", "stopped", T);
    assert_eq!(
        st["reason"], "security-violation: config:me.__proto__.x",
        "{st}"
    );
}
