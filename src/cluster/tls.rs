//! TLS of the cluster link (specs/cluster.md "TLS"): the `cluster.tls` files resolved (a
//! relative path is taken from the home directory) and checked before each connection attempt
//! (and by `pons config doctor`), the connection options they give, and a failed handshake in
//! one sentence naming the key to set. Nothing here ever reads a file's content into a message:
//! a key file's content is a secret.

use std::io::Read;
use std::path::{Path, PathBuf};

use async_nats::ConnectOptions;
use pons_reconciler::cluster::ClusterConfig;

/// The largest PEM file read for the check (a CA bundle of the system is ~200 KiB).
const MAX_PEM_BYTES: u64 = 4 << 20;

/// A `cluster.tls` file that cannot be used: its key, its path (resolved) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    pub key: &'static str,
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({}) {}: put the PEM file there or fix the path in config.yaml (a relative path is taken from the home directory)",
            self.key,
            self.path.display(),
            self.why
        )
    }
}

/// `path` as written in config.yaml, relative ones taken from `home`.
pub fn resolve(home: &Path, path: &str) -> PathBuf {
    home.join(path)
}

/// The `cluster.tls` files of `c` that cannot be used: missing, unreadable, not a file, or
/// without a PEM block of the kind the key needs (certificates for `ca` and `cert`, a private
/// key for `key`).
pub fn check_files(c: &ClusterConfig, home: &Path) -> Vec<FileProblem> {
    let Some(tls) = &c.tls else {
        return Vec::new();
    };
    tls.files()
        .into_iter()
        .filter_map(|(key, path)| {
            let path = resolve(home, path);
            check_file(key, &path)
                .err()
                .map(|why| FileProblem { key, path, why })
        })
        .collect()
}

fn check_file(key: &str, path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        _ => format!("cannot be read: {e}"),
    })?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES).read_to_end(&mut text))
        .map_err(|e| format!("cannot be read: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let (wanted, what) = if key.ends_with(".key") {
        (
            "PRIVATE KEY-----",
            "PEM private key (`-----BEGIN … PRIVATE KEY-----`)",
        )
    } else {
        (
            "-----BEGIN CERTIFICATE-----",
            "PEM certificate (`-----BEGIN CERTIFICATE-----`)",
        )
    };
    if !text.contains(wanted) {
        return Err(format!("holds no {what}"));
    }
    Ok(())
}

/// `o` with the TLS of `c`: required for a `tls://` URL or a `tls` mapping, the CA file instead
/// of the system's roots, the client certificate and key. Err: a file that cannot be used.
pub fn options(
    mut o: ConnectOptions,
    c: &ClusterConfig,
    home: &Path,
) -> Result<ConnectOptions, String> {
    if let Some(p) = check_files(c, home).into_iter().next() {
        return Err(p.to_string());
    }
    if c.requires_tls() {
        o = o.require_tls(true);
    }
    if let Some(tls) = &c.tls {
        if let Some(ca) = &tls.ca {
            o = o.add_root_certificates(resolve(home, ca));
        }
        if let Some(cc) = &tls.client {
            o = o.add_client_certificate(resolve(home, &cc.cert), resolve(home, &cc.key));
        }
    }
    Ok(o)
}

/// A failed connection attempt that is about TLS, in one sentence naming the key to set, or
/// `None` (not a TLS failure). `detail` is the client's error text (no secret: it holds no
/// file content).
pub fn explain(c: &ClusterConfig, home: &Path, detail: &str) -> Option<String> {
    let lower = detail.to_ascii_lowercase();
    let urls = c.urls.join(", ");
    let node = &c.node;
    let tls = c.tls.clone().unwrap_or_default();
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if has(&["invalid peer certificate", "unknownissuer"]) {
        let fix = match &tls.ca {
            Some(ca) => format!(
                "it is not signed by a CA in `cluster.tls.ca` ({}): set `cluster.tls.ca` to the PEM file of the CA that signed the server's certificate",
                resolve(home, ca).display()
            ),
            None => "the system's root certificates do not trust it: set `cluster.tls.ca` in config.yaml to the PEM file of the CA that signed it".into(),
        };
        return Some(if c.requires_tls() {
            format!("node `{node}` does not trust the TLS certificate of the NATS server at {urls} ({detail}); {fix}")
        } else {
            format!("the NATS server at {urls} requires TLS and node `{node}` does not trust its certificate ({detail}); {fix}")
        });
    }
    // A server that verifies clients refuses a handshake without an acceptable certificate with
    // one of these alerts (Go's TLS 1.3 sends `bad certificate` for a missing one).
    if has(&[
        "certificaterequired",
        "certificate required",
        "badcertificate",
        "bad certificate",
        "unknownca",
        "unknown ca",
    ]) {
        return Some(match tls.client {
            None => format!(
                "the NATS server at {urls} requires a client certificate and node `{node}` has none ({detail}): set `cluster.tls.cert` and `cluster.tls.key` in config.yaml"
            ),
            Some(_) => format!(
                "the NATS server at {urls} refused node `{node}`'s client certificate ({detail}): check `cluster.tls.cert` and `cluster.tls.key` in config.yaml (the server must trust the CA that signed it)"
            ),
        });
    }
    if has(&[
        "tls",
        "certificate",
        "handshake",
        "corrupt message",
        "invalid content type",
    ]) {
        let how = if c.requires_tls() {
            "TLS is required (`cluster.tls` or a tls:// URL): check that the server offers TLS (`tls` in its configuration) and the files of `cluster.tls`"
        } else {
            "check the server's TLS settings, and `cluster.tls` in config.yaml"
        };
        return Some(format!(
            "TLS with the NATS server at {urls} failed for node `{node}` ({detail}): {how}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pons_reconciler::cluster::{ClientCert, Share, Tls};

    fn config(tls: Option<Tls>) -> ClusterConfig {
        ClusterConfig {
            urls: vec!["nats://127.0.0.1:4222".into()],
            name: "pons".into(),
            node: "b".into(),
            credentials: None,
            export: Share::default(),
            import: Share::default(),
            stale_ms: 1000,
            tls,
        }
    }

    #[test]
    fn files_are_resolved_from_the_home_and_checked_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::write(
            home.join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(home.join("n.key"), "SECRET-MATERIAL\n").unwrap();
        let c = config(Some(Tls {
            ca: Some("ca.pem".into()),
            client: Some(ClientCert {
                cert: "/nonexistent/n.pem".into(),
                key: "n.key".into(),
            }),
        }));
        let found = check_files(&c, home);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].key, "cluster.tls.cert");
        assert_eq!(found[0].why, "does not exist");
        assert_eq!(found[1].key, "cluster.tls.key");
        assert_eq!(found[1].path, home.join("n.key"));
        let text = found[1].to_string();
        assert!(text.contains("holds no PEM private key"), "{text}");
        assert!(!text.contains("SECRET-MATERIAL"), "{text}");
        assert!(check_files(&config(None), home).is_empty());
    }

    #[test]
    fn tls_failures_name_the_key_to_set() {
        let home = Path::new("/h");
        let plain = config(None);
        let e = explain(
            &plain,
            home,
            "IO error: invalid peer certificate: UnknownIssuer",
        )
        .unwrap();
        assert!(
            e.contains("`cluster.tls.ca`") && e.contains("requires TLS"),
            "{e}"
        );
        let e = explain(
            &plain,
            home,
            "IO error: received fatal alert: BadCertificate",
        )
        .unwrap();
        assert!(
            e.contains("has none") && e.contains("`cluster.tls.cert`"),
            "{e}"
        );
        let with_ca = config(Some(Tls {
            ca: Some("ca.pem".into()),
            client: None,
        }));
        let e = explain(&with_ca, home, "invalid peer certificate: UnknownIssuer").unwrap();
        assert!(e.contains("/h/ca.pem"), "{e}");
        let e = explain(&with_ca, home, "received fatal alert: CertificateRequired").unwrap();
        assert!(
            e.contains("`cluster.tls.cert` and `cluster.tls.key`"),
            "{e}"
        );
        assert_eq!(explain(&plain, home, "connection refused"), None);
    }
}
