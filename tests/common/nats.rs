//! Clusters of test kernels: a real `nats-server` on a free port (plain or TLS), homes whose
//! config.yaml joins it, and waits on what `pons status --json` says of the cluster. Used by
//! tests/cluster.rs and tests/cluster_tls.rs.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

/// How long a cluster condition may take on a busy machine.
const T: Duration = Duration::from_secs(20);
/// `cluster.staleMs` of every test node.
pub const STALE_MS: u64 = 1000;

/// The nats-server binary, or `None` (test skipped) outside CI.
pub fn nats_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"])
        .map(|d| PathBuf::from(d).join("nats-server"))
        .find(|p| p.is_file());
    if found.is_none() {
        let why = "no nats-server on PATH nor in /usr/sbin (`apt-get install nats-server`)";
        assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
        eprintln!("SKIP {test}: {why}");
    }
    found
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A nats-server of the test, on 127.0.0.1; killed when dropped.
pub struct Nats {
    bin: PathBuf,
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Nats {
    pub fn start(bin: &Path, args: &[&str]) -> Nats {
        let mut n = Nats {
            bin: bin.to_path_buf(),
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        n.restart();
        n
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let port = self.port.to_string();
        let child = Command::new(&self.bin)
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        wait_for("nats-server to listen", T, || {
            TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's URL with the `tls://` scheme.
    pub fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A home whose config.yaml joins the cluster at `url` as `node` (`extra`: more keys of the
/// `cluster` section, indented by two spaces; `top`: more top-level sections).
pub fn node_home(url: &str, node: &str, extra: &str, top: &str) -> TestHome {
    let home = TestHome::new();
    home.write_config(&cluster_config(url, node, extra, top));
    home
}

pub fn cluster_config(url: &str, node: &str, extra: &str, top: &str) -> String {
    format!("{FAST_LIFECYCLE}{top}cluster:\n  url: {url}\n  node: {node}\n  staleMs: {STALE_MS}\n{extra}")
}

pub fn cluster(home: &TestHome) -> Value {
    home.status()["cluster"].clone()
}

/// Waits until `home` is connected and hears the nodes `peers`.
pub fn wait_peers(home: &TestHome, peers: &[&str]) {
    wait_for(&format!("peers {peers:?}"), T, || {
        let c = cluster(home);
        let heard: Vec<&str> = c["peers"]
            .as_array()?
            .iter()
            .filter_map(|p| p["node"].as_str())
            .collect();
        (c["connected"] == true && peers.iter().all(|p| heard.contains(p))).then_some(())
    })
}

/// Waits until `home` lists `service` as provided by `node`.
pub fn wait_remote_service(home: &TestHome, service: &str, node: &str) {
    wait_for(&format!("{service} from node {node}"), T, || {
        has_remote_service(home, service, node).then_some(())
    })
}

pub fn has_remote_service(home: &TestHome, service: &str, node: &str) -> bool {
    home.status()["services"].as_array().is_some_and(|s| {
        s.iter()
            .any(|e| e["service"] == service && e["node"] == node)
    })
}

/// Makes `id` send an RPC and returns its recorded result (the `n`-th RPC of the module).
pub fn rpc(home: &TestHome, id: &str, service: &str, method: &str, params: Value) -> Value {
    let before = rpc_results(home, id).len();
    home.command(
        id,
        json!({"rpc": {"service": service, "method": method, "params": params}}),
    );
    wait_for(&format!("{id}: answer of {service}.{method}"), T, || {
        rpc_results(home, id).get(before).cloned()
    })
}

pub fn rpc_results(home: &TestHome, id: &str) -> Vec<Value> {
    home.events(id)
        .into_iter()
        .filter(|e| e["event"] == "rpc_result")
        .collect()
}
