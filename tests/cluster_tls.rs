//! TLS of the cluster link: a real `nats-server` with `--tls` (and `--tlsverify`), certificates
//! of a private CA made at test time with the `openssl` command-line tool (Debian's `openssl`;
//! `.ci/run` installs it), kernels in separate homes. Without `nats-server` or `openssl` the
//! tests fail under `CI` and print `SKIP <test>: …` elsewhere.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::nats::*;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

/// A line of every private key the tests make: it must never be printed.
const KEY_MARK: &str = "PRIVATE KEY";

/// A private CA and the certificates it signed, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `openssl` present (or the test skipped outside CI): a CA, a server certificate for
    /// 127.0.0.1 and a client certificate, all EC P-256, valid two days.
    fn make(test: &str) -> Option<Pki> {
        let ok = Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let why = "no openssl on PATH (`apt-get install openssl`)";
            assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
            eprintln!("SKIP {test}: {why}");
            return None;
        }
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.key("ca");
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=pons test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.signed(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        );
        pki.signed(
            "client",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        Some(pki)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn key(&self, name: &str) {
        let file = format!("{name}.key");
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &file,
        ]);
    }

    /// `<name>.key` and `<name>.pem`, signed by the CA with the extensions `ext`.
    fn signed(&self, name: &str, ext: &str) {
        self.key(name);
        std::fs::write(self.path(&format!("{name}.ext")), ext).expect("write ext");
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extf,
        ]);
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// nats-server arguments for TLS with the server certificate (`verify`: client
    /// certificates signed by the CA required).
    fn server_args(&self, verify: bool) -> Vec<String> {
        let mut a = vec![
            "--tls".to_string(),
            "--tlscert".into(),
            self.p("server.pem"),
            "--tlskey".into(),
            self.p("server.key"),
        ];
        if verify {
            a.extend(["--tlsverify".into(), "--tlscacert".into(), self.p("ca.pem")]);
        }
        a
    }

    /// Every line of the private keys' base64 bodies.
    fn key_lines(&self) -> Vec<String> {
        ["ca.key", "server.key", "client.key"]
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(self.path(f))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn tls_nats(test: &str, verify: bool) -> Option<(Pki, Nats)> {
    let bin = nats_or_skip(test)?;
    let pki = Pki::make(test)?;
    let args = pki.server_args(verify);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let nats = Nats::start(&bin, &args);
    Some((pki, nats))
}

/// Waits until `home`'s cluster block has a `lastError` containing every one of `needles`
/// (printed: `--nocapture` shows the sentence an operator reads).
fn wait_last_error(home: &TestHome, needles: &[&str]) -> String {
    let e = wait_for(&format!("lastError with {needles:?}"), T, || {
        let c = cluster(home);
        let e = c["lastError"].as_str()?.to_string();
        (c["connected"] == false && needles.iter().all(|n| e.contains(n))).then_some(e)
    });
    eprintln!("lastError: {e}");
    e
}

fn assert_no_key_material(pki: &Pki, what: &str, text: &str) {
    assert!(
        !text.contains(KEY_MARK),
        "{what} shows key material: {text}"
    );
    for l in pki.key_lines() {
        assert!(!text.contains(&l), "{what} shows a key line: {text}");
    }
}

#[test]
fn two_nodes_connect_over_tls_with_a_private_ca_and_an_rpc_crosses() {
    let test = "two_nodes_connect_over_tls_with_a_private_ca_and_an_rpc_crosses";
    let Some((pki, nats)) = tls_nats(test, false) else {
        return;
    };
    // A: a tls:// URL and the CA by absolute path.
    let mut a = node_home(
        &nats.tls_url(),
        "a",
        &format!(
            "  export: {{services: [echo]}}\n  tls: {{ca: '{}'}}\n",
            pki.p("ca.pem")
        ),
        "",
    );
    a.add(
        ModuleSpec::new("echo")
            .manifest(json!({"provides": ["echo"]}))
            .args(&["--echo"]),
    );
    // B: a nats:// URL with a `tls` mapping (TLS required), the CA by a path relative to the
    // home directory, given through `${VAR}`.
    let mut b = node_home(
        &nats.url(),
        "b",
        "  import: {services: [echo]}\n  tls: {ca: '${PONS_TEST_CA}'}\n",
        "",
    );
    std::fs::create_dir_all(b.path().join("tls")).expect("mkdir tls");
    std::fs::copy(pki.path("ca.pem"), b.path().join("tls/ca.pem")).expect("copy the CA");
    let caps = json!({"services": ["echo"], "topics": []});
    b.add(ModuleSpec::new("cons").manifest(json!({"requires": ["echo"], "capabilities": caps})));

    let _ka = a.start();
    let _kb = b.start_with(&[], &[("PONS_TEST_CA", "tls/ca.pem")]);
    a.wait_status("echo", "ready", T);
    wait_peers(&b, &["a"]);
    wait_peers(&a, &["b"]);
    b.wait_status("cons", "ready", T);
    let r = rpc(&b, "cons", "echo", "hi", json!({"x": 1}));
    assert_eq!(
        r["result"],
        json!({"echo": {"x": 1}, "method": "hi", "from": "cons@b"}),
        "{r}"
    );
    for (home, url) in [(&a, nats.tls_url()), (&b, nats.url())] {
        let c = cluster(home);
        assert_eq!(c["tls"], true, "{c}");
        assert_eq!(c["connected"], true, "{c}");
        assert_eq!(c["url"], url, "{c}");
        assert_eq!(c["lastError"], Value::Null, "{c}");
    }
    let human = a.pons(&["status"]);
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!("via {} (TLS), connected", nats.tls_url())),
        "{human}"
    );
    // No key material anywhere the operator looks.
    for home in [&a, &b] {
        let status = home.pons(&["status", "--json"]);
        assert_no_key_material(&pki, "status", &String::from_utf8_lossy(&status.stdout));
        let plan = home.pons(&["plan"]);
        assert_no_key_material(&pki, "plan", &String::from_utf8_lossy(&plan.stdout));
        assert_no_key_material(&pki, "the log", &home.kernel_log());
    }
}

#[test]
fn a_node_without_the_ca_is_refused_and_its_fix_reconnects_without_restarts() {
    let test = "a_node_without_the_ca_is_refused_and_its_fix_reconnects_without_restarts";
    let Some((pki, nats)) = tls_nats(test, false) else {
        return;
    };
    // C: tls:// with the system's roots, which do not hold the test CA.
    let mut c = node_home(&nats.tls_url(), "c", "", "");
    c.add(ModuleSpec::new("m"));
    // D: a plain nats:// node, no TLS configured, to a server that requires TLS.
    let d = node_home(&nats.url(), "d", "", "");
    let (_kc, _kd) = (c.start(), d.start());
    c.wait_status("m", "ready", T);

    let e = wait_last_error(&c, &["`cluster.tls.ca`", "does not trust"]);
    assert!(e.contains(&nats.tls_url()), "names the server: {e}");
    assert_eq!(cluster(&c)["tls"], true);
    c.wait_log("cluster.tls.ca", T);
    let e = wait_last_error(&d, &["`cluster.tls.ca`", "requires TLS"]);
    assert!(e.contains("node `d`"), "{e}");
    assert_eq!(cluster(&d)["tls"], false, "not connected, nothing required");
    d.wait_log("requires TLS", T);

    // The CA added: the next pass reconnects (a changed `tls` key), no module restarts.
    c.write_config(&cluster_config(
        &nats.tls_url(),
        "c",
        &format!("  tls:\n    ca: {}\n", pki.p("ca.pem")),
        "",
    ));
    wait_for("c connected over TLS", T, || {
        let s = cluster(&c);
        (s["connected"] == true && s["lastError"].is_null()).then_some(())
    });
    assert_eq!(c.starts("m").len(), 1, "no module restarted");
    assert!(
        c.kernel_log().contains("cluster section changed (`tls`)"),
        "the pass says what changed"
    );
}

#[test]
fn with_tlsverify_a_node_without_a_client_certificate_is_refused() {
    let test = "with_tlsverify_a_node_without_a_client_certificate_is_refused";
    let Some((pki, nats)) = tls_nats(test, true) else {
        return;
    };
    let ca = pki.p("ca.pem");
    let a = node_home(
        &nats.tls_url(),
        "a",
        &format!(
            "  tls:\n    ca: {ca}\n    cert: {}\n    key: {}\n",
            pki.p("client.pem"),
            pki.p("client.key")
        ),
        "",
    );
    let b = node_home(
        &nats.tls_url(),
        "b",
        &format!("  tls: {{ca: '{ca}'}}\n"),
        "",
    );
    let (_ka, _kb) = (a.start(), b.start());
    wait_for("a connected with its client certificate", T, || {
        (cluster(&a)["connected"] == true).then_some(())
    });
    let e = wait_last_error(&b, &["`cluster.tls.cert`", "`cluster.tls.key`"]);
    assert!(
        e.contains("requires a client certificate and node `b` has none"),
        "{e}"
    );
    b.wait_log("cluster.tls.cert", T);
    assert!(
        !cluster(&a)["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["node"] == "b")),
        "b never joined"
    );
    assert_no_key_material(&pki, "the log", &a.kernel_log());
}

#[test]
fn a_tls_node_to_a_plain_server_is_refused() {
    let test = "a_tls_node_to_a_plain_server_is_refused";
    let Some(bin) = nats_or_skip(test) else {
        return;
    };
    let Some(pki) = Pki::make(test) else {
        return;
    };
    let nats = Nats::start(&bin, &[]);
    // A `tls` mapping with a nats:// URL requires TLS: never plain text.
    let a = node_home(
        &nats.url(),
        "a",
        &format!("  tls: {{ca: '{}'}}\n", pki.p("ca.pem")),
        "",
    );
    let _k = a.start();
    let e = wait_last_error(&a, &["TLS", "node `a`"]);
    assert!(e.contains(&nats.url()), "{e}");
    assert_eq!(cluster(&a)["tls"], true);
}

#[test]
fn missing_tls_files_are_named_by_doctor_and_by_the_connection() {
    // No server needed: the files are checked before any connection attempt.
    let home = node_home(
        "tls://127.0.0.1:1",
        "a",
        "  tls: {ca: certs/ca.pem, cert: /nonexistent/n.pem, key: /nonexistent/n.key}\n",
        "",
    );
    let out = home.pons(&["config", "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let issues = v["issues"].as_array().expect("issues");
    let ca = issues
        .iter()
        .find(|i| i["path"] == "cluster.tls.ca")
        .unwrap_or_else(|| panic!("cluster.tls.ca named: {v}"));
    assert_eq!(ca["type"], "file", "{ca}");
    let resolved = home.path().join("certs/ca.pem").display().to_string();
    assert!(
        ca["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&resolved)
            && ca["message"]
                .as_str()
                .unwrap_or_default()
                .contains("does not exist"),
        "relative to the home: {ca}"
    );
    assert!(issues.iter().any(|i| i["path"] == "cluster.tls.key"), "{v}");
    // The kernel runs, its cluster link says which file.
    let _k = home.start();
    let e = wait_last_error(&home, &["`cluster.tls.ca`", &resolved]);
    assert!(e.contains("does not exist"), "{e}");
    home.wait_log("cluster.tls.ca", T);

    // The file there: doctor is content with the CA (the other two still missing).
    std::fs::create_dir_all(home.path().join("certs")).expect("mkdir");
    std::fs::write(
        home.path().join("certs/ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let out = home.pons(&["config", "doctor", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    assert!(
        !v["issues"]
            .as_array()
            .is_some_and(|i| i.iter().any(|i| i["path"] == "cluster.tls.ca")),
        "{v}"
    );
}

#[test]
fn invalid_tls_keys_keep_the_last_good_section() {
    // No server needed: the section is refused before anything connects.
    let home = node_home("nats://127.0.0.1:1", "a", "", "");
    let _k = home.start();
    wait_for("cluster block", T, || {
        cluster(&home).is_object().then_some(())
    });
    // Another URL and a `tls` mapping: were it applied, `url` and `tls` would change.
    home.write_config(&cluster_config(
        "tls://127.0.0.1:2",
        "a",
        "  tls: {cert: /c.pem, bogus: 1}\n",
        "",
    ));
    let errors = wait_for("the error named", T, || {
        let s = home.status();
        let text = s["errors"].to_string();
        (text.contains("cluster.tls.key") && text.contains("cluster.tls.bogus")).then_some(text)
    });
    assert!(errors.contains("is missing"), "{errors}");
    let c = cluster(&home);
    assert_eq!(c["tls"], false, "the last good section stays: {c}");
    assert_eq!(c["url"], "nats://127.0.0.1:1", "{c}");
}
