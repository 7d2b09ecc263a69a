//! Issue 13: kernels in separate homes on this machine form a cluster through a real
//! `nats-server` (Debian package `nats-server`; `.ci/run` installs it). Each test starts its own
//! server on a free port and two or three kernels. Without `nats-server` the tests fail under
//! `CI` and print `SKIP <test>: …` elsewhere.

mod common;

use std::time::{Duration, Instant};

use common::nats::*;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// `rpc_request`s a module received, with their `from`.
fn requests_from(home: &TestHome, id: &str) -> Vec<String> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == "rpc_request")
        .map(|m| m["from"].as_str().unwrap_or("").to_string())
        .collect()
}

fn delivered(home: &TestHome, id: &str, topic: &str) -> Vec<Value> {
    home.received(id)
        .into_iter()
        .filter(|m| m["type"] == "deliver" && m["topic"] == topic)
        .map(|m| m["payload"].clone())
        .collect()
}

fn starts(home: &TestHome, id: &str) -> usize {
    home.starts(id).len()
}

#[test]
fn a_remote_provider_meets_requires_and_errors_arrive_as_locally() {
    let Some(bin) = nats_or_skip("a_remote_provider_meets_requires_and_errors_arrive_as_locally")
    else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    let mut a = node_home(
        &nats.url(),
        "a",
        "  export: {services: [echo, plain, mute]}\n",
        "",
    );
    a.add(
        ModuleSpec::new("echo")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    );
    a.add(ModuleSpec::new("plain").manifest(json!({"provides": ["plain"]})));
    a.add(
        ModuleSpec::new("mute")
            .manifest(json!({"provides": ["mute"]}))
            .args(&["--no-reply"]),
    );
    a.add(
        ModuleSpec::new("hidden")
            .manifest(json!({"provides": ["hidden"]}))
            .args(&["--echo"]),
    );
    let mut b = node_home(
        &nats.url(),
        "b",
        "  import: {services: [echo, plain, mute, hidden, nobody]}\n",
        "",
    );
    let caps = json!({"services": ["echo", "plain", "mute", "hidden", "nobody"], "topics": []});
    b.add(ModuleSpec::new("cons").manifest(json!({"requires": ["echo"], "capabilities": caps})));
    b.add(
        ModuleSpec::new("rogue").manifest(json!({"capabilities": {"services": [], "topics": []}})),
    );
    b.write_config(&format!(
        "lifecycle:\n  shutdownGraceMs: 1000\n  rpcTimeoutMs: 1500\ncluster:\n  url: {}\n  node: b\n  staleMs: {STALE_MS}\n  import: {{services: [echo, plain, mute, hidden, nobody]}}\n",
        nats.url()
    ));

    // B first: its consumer's only provider is on A, which is not there yet.
    let _kb = b.start();
    b.wait_status("cons", "waiting", T);
    let _ka = a.start();
    for id in ["echo", "plain", "mute", "hidden"] {
        a.wait_status(id, "ready", T);
    }
    b.wait_status("cons", "ready", T);
    assert!(
        b.received_types("cons").contains(&"deps_ready".to_string()),
        "deps_ready sent once the remote provider appeared"
    );

    // Answered by A's provider, which sees the caller as `cons@b`.
    let r = rpc(&b, "cons", "echo", "hi", json!({"x": 1}));
    assert_eq!(
        r["result"],
        json!({"echo": {"x": 1}, "method": "hi", "from": "cons@b"}),
        "{r}"
    );
    // Errors as locally: the provider's own error, a timeout, no provider.
    let r = rpc(&b, "cons", "plain", "nope", json!({}));
    assert_eq!(r["error"], "Error: Unknown method: nope", "{r}");
    let t0 = Instant::now();
    let r = rpc(&b, "cons", "mute", "x", json!({}));
    assert_eq!(r["error"], "timeout", "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "B's rpcTimeoutMs applies"
    );
    let r = rpc(&b, "cons", "hidden", "x", json!({}));
    assert_eq!(r["error"], "service_not_found", "not exported by A: {r}");
    assert!(requests_from(&a, "hidden").is_empty(), "never reachable");
    let r = rpc(&b, "cons", "nobody", "x", json!({}));
    assert_eq!(r["error"], "service_not_found", "{r}");

    // A caller without the capability is refused on its own node: nothing reaches A.
    b.wait_status("rogue", "ready", T);
    b.command(
        "rogue",
        json!({"rpc": {"service": "echo", "method": "hi", "params": {}}}),
    );
    b.wait_stopped_for_violation("rogue", T);
    assert!(
        !requests_from(&a, "echo")
            .iter()
            .any(|f| f.starts_with("rogue")),
        "{:?}",
        requests_from(&a, "echo")
    );

    // Status: the link, the peer and its services, remote services with their node.
    let st = b.status();
    let c = &st["cluster"];
    assert_eq!(c["node"], "b");
    assert_eq!(c["name"], "pons");
    assert_eq!(c["connected"], true);
    assert_eq!(c["url"], nats.url());
    let peer = c["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["node"] == "a"))
        .cloned()
        .unwrap_or_else(|| panic!("peer a in {c}"));
    assert_eq!(peer["services"], json!(["echo", "mute", "plain"]), "{peer}");
    assert!(peer["lastSeenMs"]
        .as_u64()
        .is_some_and(|ms| ms < 2 * STALE_MS));
    assert!(
        st["services"]
            .as_array()
            .unwrap()
            .contains(&json!({"service": "echo", "module": "echo", "node": "a"})),
        "{}",
        st["services"]
    );
    let text = String::from_utf8_lossy(&b.pons(&["status"]).stdout).into_owned();
    assert!(text.contains("Cluster: node b of `pons`"), "{text}");
    assert!(text.contains("SERVICE") && text.contains("NODE"), "{text}");
}

#[test]
fn exporters_share_calls_and_a_local_provider_wins() {
    let Some(bin) = nats_or_skip("exporters_share_calls_and_a_local_provider_wins") else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    let mut a = node_home(&nats.url(), "a", "  export: {services: [echo]}\n", "");
    a.add(
        ModuleSpec::new("p")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    );
    let mut c = node_home(
        &nats.url(),
        "c",
        "  export: {services: [echo]}\n  import: {services: [echo]}\n",
        "",
    );
    c.add(
        ModuleSpec::new("p")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    );
    c.add(ModuleSpec::new("cc").manifest(json!({"requires": ["echo"]})));
    let mut b = node_home(&nats.url(), "b", "  import: {services: [echo]}\n", "");
    b.add(ModuleSpec::new("cb").manifest(json!({"requires": ["echo"]})));
    let (_ka, _kc, _kb) = (a.start(), c.start(), b.start());
    b.wait_status("cb", "ready", T);
    c.wait_status("cc", "ready", T);
    wait_remote_service(&b, "echo", "a");
    wait_remote_service(&b, "echo", "c");

    const N: usize = 24;
    for i in 0..N {
        b.command(
            "cb",
            json!({"rpc": {"service": "echo", "method": "n", "params": {"i": i}}}),
        );
    }
    let results = wait_for("B's calls answered", T, || {
        let r = rpc_results(&b, "cb");
        (r.len() >= N).then_some(r)
    });
    assert!(
        results.iter().all(|r| r["result"]["from"] == "cb@b"),
        "{results:?}"
    );
    let on_a = requests_from(&a, "p")
        .iter()
        .filter(|f| *f == "cb@b")
        .count();
    let on_c = requests_from(&c, "p")
        .iter()
        .filter(|f| *f == "cb@b")
        .count();
    assert_eq!(on_a + on_c, N, "each call served once");
    assert!(
        on_a > 0 && on_c > 0,
        "both exporters served some: a {on_a}, c {on_c}"
    );

    // C imports echo but has its own provider: its calls stay on C.
    for i in 0..5 {
        let r = rpc(&c, "cc", "echo", "n", json!({"i": i}));
        assert_eq!(r["result"]["from"], "cc", "{r}");
    }
    assert!(
        !requests_from(&a, "p").iter().any(|f| f.starts_with("cc")),
        "a local provider wins"
    );
}

#[test]
fn exported_topics_reach_each_importer_once_and_never_return() {
    let Some(bin) = nats_or_skip("exported_topics_reach_each_importer_once_and_never_return")
    else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    // A exports and imports the same topics: its own messages must not come back to it.
    let mut a = node_home(
        &nats.url(),
        "a",
        "  export: {topics: ['metrics.*']}\n  import: {topics: ['metrics.*']}\n",
        "",
    );
    a.add(
        ModuleSpec::new("pub")
            .manifest(json!({"publishes": ["metrics.cpu", "metrics.done", "private.x"]})),
    );
    a.add(ModuleSpec::new("asub").manifest(json!({"subscribes": ["metrics.*"]})));
    // B's import patterns overlap: still once.
    let mut b = node_home(
        &nats.url(),
        "b",
        "  import: {topics: ['metrics.*', 'metrics.cpu', 'private.*']}\n",
        "",
    );
    b.add(ModuleSpec::new("bsub").manifest(json!({"subscribes": ["metrics.*", "private.*"]})));
    let mut c = node_home(&nats.url(), "c", "  import: {topics: ['metrics.*']}\n", "");
    c.add(ModuleSpec::new("csub").manifest(json!({"subscribes": ["metrics.*"]})));
    let (_ka, _kb, _kc) = (a.start(), b.start(), c.start());
    a.wait_status("pub", "ready", T);
    a.wait_status("asub", "ready", T);
    b.wait_status("bsub", "ready", T);
    c.wait_status("csub", "ready", T);
    // Once A hears B and C, their subscriptions are in place (each heartbeat follows them).
    wait_peers(&a, &["b", "c"]);

    const N: usize = 5;
    for i in 0..N {
        a.command(
            "pub",
            json!({"publish": {"topic": "metrics.cpu", "payload": {"seq": i}}}),
        );
    }
    a.command(
        "pub",
        json!({"publish": {"topic": "private.x", "payload": 1}}),
    );
    a.command(
        "pub",
        json!({"publish": {"topic": "metrics.done", "payload": true}}),
    );
    for (home, id) in [(&b, "bsub"), (&c, "csub"), (&a, "asub")] {
        wait_for(&format!("{id}: the last message"), T, || {
            (!delivered(home, id, "metrics.done").is_empty()).then_some(())
        });
    }
    // Anything duplicated or looped back would arrive right behind the marker.
    std::thread::sleep(Duration::from_millis(300));
    let seqs = |home: &TestHome, id: &str| -> Vec<Value> { delivered(home, id, "metrics.cpu") };
    let expected: Vec<Value> = (0..N).map(|i| json!({"seq": i})).collect();
    assert_eq!(seqs(&b, "bsub"), expected, "B: each once, in order");
    assert_eq!(seqs(&c, "csub"), expected, "C: each once, in order");
    assert_eq!(
        seqs(&a, "asub"),
        expected,
        "A: only its local delivery, nothing came back"
    );
    assert_eq!(delivered(&a, "asub", "metrics.done").len(), 1);
    assert!(
        delivered(&b, "bsub", "private.x").is_empty(),
        "not exported by A"
    );
    let st = cluster(&a);
    assert!(st["sent"].as_u64().is_some_and(|n| n > N as u64), "{st}");
    assert_eq!(st["dropped"], 0, "{st}");
}

#[test]
fn nats_down_takes_remote_services_away_and_back_without_restarts() {
    let Some(bin) = nats_or_skip("nats_down_takes_remote_services_away_and_back_without_restarts")
    else {
        return;
    };
    let mut nats = Nats::start(&bin, &[]);
    let mut a = node_home(&nats.url(), "a", "  export: {services: [echo]}\n", "");
    a.add(
        ModuleSpec::new("p")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    );
    let mut b = node_home(&nats.url(), "b", "  import: {services: [echo]}\n", "");
    b.add(ModuleSpec::new("cons").manifest(json!({"requires": ["echo"]})));
    let (_ka, _kb) = (a.start(), b.start());
    b.wait_status("cons", "ready", T);
    wait_remote_service(&b, "echo", "a");
    assert_eq!(rpc(&b, "cons", "echo", "x", json!(1))["result"]["echo"], 1);

    nats.stop();
    let t0 = Instant::now();
    wait_for("B to drop A's services", T, || {
        (!has_remote_service(&b, "echo", "a")).then_some(())
    });
    let gone_after = t0.elapsed();
    assert!(
        gone_after <= Duration::from_millis(STALE_MS + 500),
        "within staleMs: {gone_after:?}"
    );
    let c = cluster(&b);
    assert_eq!(c["connected"], false, "{c}");
    assert_eq!(c["peers"], json!([]), "{c}");
    let r = rpc(&b, "cons", "echo", "x", json!(2));
    assert_eq!(r["error"], "service_not_found", "{r}");
    let text = String::from_utf8_lossy(&b.pons(&["status"]).stdout).into_owned();
    assert!(text.contains("not connected"), "{text}");

    nats.restart();
    wait_remote_service(&b, "echo", "a");
    assert_eq!(cluster(&b)["connected"], true);
    assert_eq!(rpc(&b, "cons", "echo", "x", json!(3))["result"]["echo"], 3);
    // Nothing local restarted on either node.
    assert_eq!((starts(&a, "p"), starts(&b, "cons")), (1, 1));
    assert_eq!(b.module_status("cons").unwrap()["restarts"], 0);
    assert_eq!(b.module_status("cons").unwrap()["status"], "ready");
}

#[test]
fn editing_the_cluster_section_reconnects_and_restarts_no_module() {
    let Some(bin) = nats_or_skip("editing_the_cluster_section_reconnects_and_restarts_no_module")
    else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    let mut a = node_home(&nats.url(), "a", "  import: {services: [bx]}\n", "");
    a.add(ModuleSpec::new("ac").manifest(json!({"optionalRequires": ["bx"]})));
    // B in manual mode, so `pons plan` shows the change before `pons apply` makes it.
    let manual = "kernel:\n  reconcile: manual\n";
    let mut b = node_home(&nats.url(), "b", "", manual);
    b.add(
        ModuleSpec::new("bsvc")
            .manifest(json!({"provides": ["bx"]}))
            .args(&["--echo"]),
    );
    let (_ka, _kb) = (a.start(), b.start());
    b.wait_status("bsvc", "ready", T);
    a.wait_status("ac", "ready", T);
    wait_peers(&a, &["b"]);
    assert!(!has_remote_service(&a, "bx", "b"), "not exported yet");

    let other_url = format!("nats://localhost:{}", nats.port);
    b.write_config(&cluster_config(
        &other_url,
        "b",
        "  export: {services: [bx]}\n",
        manual,
    ));
    let plan = wait_for("pons plan to show the cluster change", T, || {
        let out = b.pons(&["plan", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        let a = v["actions"]
            .as_array()?
            .iter()
            .find(|a| a["action"] == "cluster")?
            .clone();
        Some((v, a))
    });
    let (doc, action) = plan;
    assert_eq!(action["module"], "(cluster)", "{action}");
    let reason = action["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`url`") && reason.contains("`export`") && reason.contains("reconnect"),
        "{reason}"
    );
    assert!(
        action["diff"].as_str().unwrap_or_default().contains("bx"),
        "{action}"
    );
    assert_eq!(doc["summary"]["restart"], 0, "{doc}");
    assert_eq!(doc["summary"]["cluster"], 1, "{doc}");
    let exit = b.pons(&["plan", "--detailed-exitcode"]);
    assert_eq!(exit.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&exit.stdout).contains("(cluster)"));

    let applied = b.pons(&["apply"]);
    assert!(applied.status.success(), "{applied:?}");
    wait_remote_service(&a, "bx", "b");
    assert_eq!(cluster(&b)["url"], other_url);
    let r = rpc(&a, "ac", "bx", "m", json!({"k": 1}));
    assert_eq!(r["result"]["from"], "ac@a", "{r}");
    assert!(
        a.received("ac")
            .iter()
            .any(|m| m["type"] == "service_available" && m["service"] == "bx"),
        "an optional dependent is told the service came"
    );
    // No module restarted on either node; the plan is converged again.
    assert_eq!((starts(&b, "bsvc"), starts(&a, "ac")), (1, 1));
    let exit = b.pons(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        exit.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&exit.stdout)
    );
}

/// Every secret the test writes, to be found nowhere in output.
const SECRETS: [&str; 4] = [
    "tok-SECRET-1",
    "pw-SECRET-2",
    "wrong-SECRET-3",
    "bad-SECRET-4",
];

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} shows a credential ({s}):\n{text}"
        );
    }
}

#[test]
fn credentials_are_never_printed_and_wrong_ones_are_refused() {
    let Some(bin) = nats_or_skip("credentials_are_never_printed_and_wrong_ones_are_refused") else {
        return;
    };
    let token = Nats::start(&bin, &["--auth", "tok-SECRET-1"]);
    let users = Nats::start(&bin, &["--user", "alice", "--pass", "pw-SECRET-2"]);
    let ok_token = node_home(
        &token.url(),
        "a",
        "  credentials: {token: tok-SECRET-1}\n",
        "",
    );
    let bad_token = node_home(
        &token.url(),
        "b",
        "  credentials: {token: wrong-SECRET-3}\n",
        "",
    );
    // The password through the URL's user part and `${VAR}`.
    let ok_user = node_home(
        &format!("'nats://alice:${{NATS_PW}}@127.0.0.1:{}'", users.port),
        "c",
        "",
        "",
    );
    let bad_user = node_home(
        &users.url(),
        "d",
        "  credentials: {user: alice, password: bad-SECRET-4}\n",
        "",
    );
    // Offline plans show the section, redacted.
    for h in [&ok_token, &bad_token, &bad_user] {
        let out = h.pons(&["plan"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("(cluster)") && text.contains("<redacted>"),
            "{text}"
        );
        assert_no_secret("pons plan (offline)", &text);
    }
    let env = [("NATS_PW", "pw-SECRET-2")];
    let _k = [
        ok_token.start(),
        bad_token.start(),
        ok_user.start_with(&[], &env),
        bad_user.start(),
    ];
    for h in [&ok_token, &ok_user] {
        wait_for("connected", T, || {
            (cluster(h)["connected"] == true).then_some(())
        });
    }
    for (h, node) in [(&bad_token, "b"), (&bad_user, "d")] {
        let err = wait_for("a refusal", T, || {
            cluster(h)["lastError"].as_str().map(str::to_string)
        });
        assert!(
            err.contains("refused node") && err.contains("credentials"),
            "{err}"
        );
        assert_eq!(cluster(h)["connected"], false);
        h.wait_log(&format!("refused node `{node}`'s credentials"), T);
    }
    wait_peers(&ok_token, &[]);
    for h in [&ok_token, &bad_token, &ok_user, &bad_user] {
        for args in [
            &["plan"][..],
            &["plan", "--json"],
            &["status"],
            &["status", "--json"],
        ] {
            let out = h.pons(args);
            assert_no_secret(
                &format!("pons {args:?}"),
                &String::from_utf8_lossy(&out.stdout),
            );
            assert_no_secret(
                &format!("pons {args:?}"),
                &String::from_utf8_lossy(&out.stderr),
            );
        }
        assert_no_secret("the kernel log", &h.kernel_log());
    }
    assert_eq!(cluster(&ok_user)["credentials"], "user and password");
}

#[test]
fn without_a_cluster_section_there_is_no_link() {
    let mut home = TestHome::new();
    home.write_config(FAST_LIFECYCLE);
    home.add(ModuleSpec::new("m"));
    let k = home.start();
    home.wait_status("m", "ready", T);
    let st = home.status();
    assert!(st.get("cluster").is_none(), "{st}");
    let plan: Value = serde_json::from_slice(&home.pons(&["plan", "--json"]).stdout).unwrap();
    assert!(plan["summary"].get("cluster").is_none(), "{plan}");
    // The kernel holds no TCP socket at all.
    let pid = k.pid();
    let sockets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_string)
        })
        .collect();
    let tcp: String = ["tcp", "tcp6"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap_or_default())
        .collect();
    let tcp_inodes: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(9))
        .collect();
    assert!(
        !sockets.iter().any(|s| tcp_inodes.contains(&s.as_str())),
        "a TCP socket is open without a cluster section"
    );
}
