//! The `cluster` section of config.yaml (parse and validate, pure): how this kernel joins other
//! kernels through a NATS server, what it offers them (`export`) and what it takes from them
//! (`import`).
//!
//! ```yaml
//! cluster:
//!   url: nats://127.0.0.1:4222      # or urls: [...]
//!   name: prod                      # subject prefix (default "pons")
//!   node: host-a                    # unique node name (default: the host name)
//!   credentials: ${NATS_CREDS}      # a .creds file; or {token: …}; or {user: …, password: …}
//!   export: {services: [echo], topics: ["metrics.*"]}
//!   import: {services: [db], topics: ["alerts.*"]}
//!   staleMs: 5000                   # a silent peer leaves the directory after this long
//!   tls: {ca: ca.pem, cert: node.pem, key: node.key}   # TLS (also: `tls://` URLs)
//! ```
//!
//! `${VAR}` is expanded in every string of the section. Secrets (a token, a password, the user
//! part of a URL) live in [`Secret`], which prints and serializes as `<redacted>`; the text the
//! plan diffs ([`redacted_text`]) shows the section as written with those values redacted.
//! Nothing here ever puts a secret into an error message.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::config::{self, describe};
use crate::digest::sha256_hex;

/// The subject prefix when `cluster.name` is not given.
pub const DEFAULT_NAME: &str = "pons";
/// `cluster.staleMs` when not given.
pub const DEFAULT_STALE_MS: u64 = 5_000;
/// The smallest `cluster.staleMs` accepted.
pub const MIN_STALE_MS: u64 = 300;
/// What a secret looks like in every output.
pub const REDACTED: &str = "<redacted>";

const KEYS: [&str; 9] = [
    "url",
    "urls",
    "name",
    "node",
    "credentials",
    "export",
    "import",
    "staleMs",
    "tls",
];

/// The keys of `cluster.tls`.
const TLS_KEYS: [&str; 3] = ["ca", "cert", "key"];

/// A credential value: never shown (Debug, Display and Serialize print [`REDACTED`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// How the node authenticates to the NATS server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Credentials {
    /// A NATS `.creds` file (JWT + nkey seed); the path is no secret, its content is.
    File {
        path: String,
    },
    Token {
        token: Secret,
    },
    UserPassword {
        user: String,
        password: Secret,
    },
}

impl Credentials {
    /// What kind of credentials, for status and logs (never the values).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::File { .. } => "creds file",
            Credentials::Token { .. } => "token",
            Credentials::UserPassword { .. } => "user and password",
        }
    }
}

/// What a node offers (`export`) or takes (`import`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Share {
    /// Service names, sorted, without duplicates.
    pub services: Vec<String>,
    /// Topic patterns (an exact topic or a trailing `*`), sorted, without duplicates.
    pub topics: Vec<String>,
}

/// The `cluster.tls` mapping: files as written (`${VAR}` expanded); a relative path is taken
/// from the home directory by the shell, which also checks that they can be read. Their
/// contents are no part of the fingerprint: a renewed certificate under the same path is read
/// at the next connection, it does not reconnect by itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    /// PEM file of the CA certificates to trust instead of the system's roots.
    pub ca: Option<String>,
    /// The client certificate and its key (PEM), both or neither.
    pub client: Option<ClientCert>,
}

/// `cluster.tls.cert` and `cluster.tls.key`: paths only (the key file's content is the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

impl Tls {
    /// The files of the mapping as (key, path as written), in the order of the section.
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        let mut out = Vec::new();
        if let Some(ca) = &self.ca {
            out.push(("cluster.tls.ca", ca.as_str()));
        }
        if let Some(c) = &self.client {
            out.push(("cluster.tls.cert", c.cert.as_str()));
            out.push(("cluster.tls.key", c.key.as_str()));
        }
        out
    }
}

/// The `cluster` section after defaults, `${VAR}` expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Server URLs (`nats://host:port` or `tls://host:port`) without any user part (moved into
    /// `credentials`).
    pub urls: Vec<String>,
    /// Subject prefix.
    pub name: String,
    pub node: String,
    pub credentials: Option<Credentials>,
    pub export: Share,
    pub import: Share,
    pub stale_ms: u64,
    /// The `tls` mapping (`None`: none was written; a `tls://` URL still requires TLS).
    pub tls: Option<Tls>,
}

impl ClusterConfig {
    /// Whether every connection must be encrypted: a `tls://` URL or a `tls` mapping. (Without
    /// either, a server that requires TLS still gets it, verified against the system's roots,
    /// as with every NATS client.)
    pub fn requires_tls(&self) -> bool {
        self.tls.is_some() || self.urls.iter().any(|u| u.starts_with("tls://"))
    }

    /// Fingerprint of everything the connection depends on (secrets included; never printed).
    pub fn fingerprint(&self) -> String {
        let creds = match &self.credentials {
            None => String::new(),
            Some(Credentials::File { path }) => format!("file\0{path}"),
            Some(Credentials::Token { token }) => format!("token\0{}", token.expose()),
            Some(Credentials::UserPassword { user, password }) => {
                format!("user\0{user}\0{}", password.expose())
            }
        };
        let public = serde_json::to_string(self).unwrap_or_default();
        sha256_hex(format!("{public}\0{creds}").as_bytes())
    }

    /// The keys whose values differ between `self` and `other` (`url` for the URLs), in the
    /// order of the section.
    pub fn changed_keys(&self, other: &ClusterConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.urls != other.urls {
            out.push("url");
        }
        if self.name != other.name {
            out.push("name");
        }
        if self.node != other.node {
            out.push("node");
        }
        if self.credentials != other.credentials {
            out.push("credentials");
        }
        if self.export != other.export {
            out.push("export");
        }
        if self.import != other.import {
            out.push("import");
        }
        if self.stale_ms != other.stale_ms {
            out.push("staleMs");
        }
        if self.tls != other.tls {
            out.push("tls");
        }
        out
    }

    /// Whether `service` is imported from other nodes.
    pub fn imports_service(&self, service: &str) -> bool {
        self.import
            .services
            .binary_search_by(|s| s.as_str().cmp(service))
            .is_ok()
    }
}

/// The `cluster` section as the kernel uses it: the configuration and the text plans diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredCluster {
    pub config: ClusterConfig,
    /// The section as written (not interpolated), canonical, secrets redacted.
    pub text: String,
    /// [`ClusterConfig::fingerprint`].
    #[serde(skip)]
    pub fingerprint: String,
}

/// Reads the `cluster` section of a parsed config.yaml. `Ok(None)`: no section (or `null`).
/// `host` is the machine's host name, the default node name. Err: one sentence per problem,
/// each naming its key.
pub fn parse(
    root: &Value,
    env: &BTreeMap<String, String>,
    host: &str,
) -> Result<Option<DesiredCluster>, Vec<String>> {
    let raw = match root.get("cluster") {
        None | Some(Value::Null) => return Ok(None),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(vec![format!(
                "`cluster` must be a mapping (url, name, node, credentials, export, import, staleMs, tls), found {}",
                describe(other)
            )])
        }
    };
    let expanded = config::interpolate(raw, env).map_err(|errs| {
        errs.into_iter()
            .map(|e| interpolation_error(&e))
            .collect::<Vec<_>>()
    })?;
    let config = validate(&expanded, host)?;
    let fingerprint = config.fingerprint();
    Ok(Some(DesiredCluster {
        config,
        text: redacted_text(raw),
        fingerprint,
    }))
}

/// An interpolation error (`/pointer: message`) as a sentence naming the key; for a secret, the
/// message (which may quote the value as written) is left out.
fn interpolation_error(e: &str) -> String {
    let (ptr, msg) = e.split_once(": ").unwrap_or(("/", e));
    let key = ptr
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    let key = if key.is_empty() {
        "cluster".to_string()
    } else {
        format!("cluster.{key}")
    };
    if key.starts_with("cluster.credentials") || key.starts_with("cluster.url") {
        format!("`{key}`: a `${{VAR}}` in it cannot be expanded (set the variable in the kernel's environment, or write `${{VAR:-default}}`)")
    } else {
        format!("`{key}`: {msg}")
    }
}

fn validate(m: &Value, host: &str) -> Result<ClusterConfig, Vec<String>> {
    let mut errors = Vec::new();
    let Some(map) = m.as_object() else {
        return Err(vec!["`cluster` must be a mapping".into()]);
    };
    for k in map.keys() {
        if !KEYS.contains(&k.as_str()) {
            errors.push(format!(
                "`cluster.{k}` is not a known key (known: {})",
                KEYS.join(", ")
            ));
        }
    }

    // url / urls
    let mut url_creds: Option<Credentials> = None;
    let mut urls = Vec::new();
    let listed: Vec<(String, &Value)> = match (map.get("url"), map.get("urls")) {
        (Some(_), Some(_)) => {
            errors.push("`cluster.url` and `cluster.urls` are both set: keep one".into());
            Vec::new()
        }
        (Some(v), None) => vec![("cluster.url".to_string(), v)],
        (None, Some(Value::Array(items))) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("cluster.urls.{i}"), v))
            .collect(),
        (None, Some(other)) => {
            errors.push(format!(
                "`cluster.urls` must be a non-empty list of nats:// or tls:// URLs, found {}",
                match other {
                    Value::Array(_) => "an empty list".to_string(),
                    v => describe_public(v),
                }
            ));
            Vec::new()
        }
        (None, None) => {
            errors.push(
                "`cluster.url` is missing: give the NATS server, e.g. `url: nats://127.0.0.1:4222`"
                    .into(),
            );
            Vec::new()
        }
    };
    for (key, v) in listed {
        match v.as_str().map(|s| split_url(s.trim())) {
            Some(Ok((url, creds))) => {
                if let Some(c) = creds {
                    if url_creds.as_ref().is_some_and(|u| *u != c) {
                        errors.push(format!(
                            "`{key}` carries other credentials than an earlier URL: give them once, in `cluster.credentials`"
                        ));
                    }
                    url_creds = Some(c);
                }
                if !urls.contains(&url) {
                    urls.push(url);
                }
            }
            Some(Err(why)) => errors.push(format!("`{key}` {why}")),
            None => errors.push(format!(
                "`{key}` must be a nats:// or tls:// URL (nats://host:port), found {}",
                describe_public(v)
            )),
        }
    }

    let name = match map.get("name") {
        None | Some(Value::Null) => DEFAULT_NAME.to_string(),
        Some(Value::String(s)) if is_token(s) => s.clone(),
        Some(v) => {
            errors.push(format!(
                "`cluster.name` must be a name of letters, digits, `-` and `_` (it prefixes every subject), found {}",
                describe_public(v)
            ));
            DEFAULT_NAME.to_string()
        }
    };
    let node = match map.get("node") {
        None | Some(Value::Null) => node_from_host(host),
        Some(Value::String(s)) if is_token(s) => s.clone(),
        Some(v) => {
            errors.push(format!(
                "`cluster.node` must be a name of letters, digits, `-` and `_`, unique in the cluster, found {}",
                describe_public(v)
            ));
            node_from_host(host)
        }
    };

    let mut credentials = match map.get("credentials") {
        None | Some(Value::Null) => None,
        Some(v) => match credentials(v) {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                None
            }
        },
    };
    if let Some(c) = url_creds {
        if credentials.is_some() {
            errors.push(
                "`cluster.url` carries credentials and `cluster.credentials` is set too: keep one"
                    .into(),
            );
        } else {
            credentials = Some(c);
        }
    }

    let export = share(map.get("export"), "cluster.export", &mut errors);
    let import = share(map.get("import"), "cluster.import", &mut errors);
    let stale_ms = match map.get("staleMs") {
        None | Some(Value::Null) => DEFAULT_STALE_MS,
        Some(v) => match v.as_u64().filter(|n| *n >= MIN_STALE_MS) {
            Some(n) => n,
            None => {
                errors.push(format!(
                    "`cluster.staleMs` must be an integer of at least {MIN_STALE_MS}, found {}",
                    describe(v)
                ));
                DEFAULT_STALE_MS
            }
        },
    };
    let tls = tls(map.get("tls"), &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ClusterConfig {
        urls,
        name,
        node,
        credentials,
        export,
        import,
        stale_ms,
        tls,
    })
}

/// The `tls` mapping: `ca`, `cert` and `key`, each a non-empty path; `cert` and `key` both or
/// neither. `tls: {}` requires TLS with the system's roots.
fn tls(v: Option<&Value>, errors: &mut Vec<String>) -> Option<Tls> {
    let m = match v {
        None | Some(Value::Null) => return None,
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(format!(
                "`cluster.tls` must be a mapping with `ca` (a PEM file of CA certificates) and/or `cert` and `key` (a client certificate and its key), found {}",
                describe(other)
            ));
            return None;
        }
    };
    let before = errors.len();
    for k in m.keys() {
        if !TLS_KEYS.contains(&k.as_str()) {
            errors.push(format!(
                "`cluster.tls.{k}` is not a known key (known: {})",
                TLS_KEYS.join(", ")
            ));
        }
    }
    let mut path = |k: &str| -> Option<String> {
        match m.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                errors.push(format!(
                    "`cluster.tls.{k}` is empty: give the path of a PEM file, or remove the key"
                ));
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(other) => {
                errors.push(format!(
                    "`cluster.tls.{k}` must be the path of a PEM file, found {}",
                    describe(other)
                ));
                None
            }
        }
    };
    let ca = path("ca");
    let cert = path("cert");
    let key = path("key");
    let client = match (cert, key, m.contains_key("cert"), m.contains_key("key")) {
        (Some(cert), Some(key), _, _) => Some(ClientCert { cert, key }),
        (Some(_), None, _, false) => {
            errors.push("`cluster.tls.key` is missing: a client certificate (`cluster.tls.cert`) needs its private key".into());
            None
        }
        (None, Some(_), false, _) => {
            errors.push("`cluster.tls.cert` is missing: a private key (`cluster.tls.key`) needs its client certificate".into());
            None
        }
        _ => None,
    };
    (errors.len() == before).then_some(Tls { ca, client })
}

/// Like [`describe`], without quoting a string (which could be a secret written in place).
fn describe_public(v: &Value) -> String {
    match v {
        Value::String(_) => "a string that is not one".into(),
        other => describe(other),
    }
}

/// A subject token: letters, digits, `-`, `_`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The default node name: the host name's first label, other characters as `-`.
pub fn node_from_host(host: &str) -> String {
    let first = host.split('.').next().unwrap_or("");
    let s: String = first
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "node".into()
    } else {
        s
    }
}

/// `nats://[user[:password]@]host[:port]` (or `tls://…`) → (`nats://host:port`, credentials
/// from the user part). Err: what is wrong, as the rest of a sentence (never quoting the user
/// part).
fn split_url(s: &str) -> Result<(String, Option<Credentials>), String> {
    let (scheme, rest) = match (s.strip_prefix("nats://"), s.strip_prefix("tls://")) {
        (Some(rest), _) => ("nats", rest),
        (None, Some(rest)) => ("tls", rest),
        (None, None) => {
            let scheme = s.split_once("://").map(|(a, _)| a);
            return Err(match scheme {
                Some(sc) if sc.chars().all(|c| c.is_ascii_alphanumeric()) => format!(
                    "must be a nats:// or tls:// URL (nats://host:port): the `{sc}://` scheme is not supported"
                ),
                _ => "must be a nats:// or tls:// URL (nats://host:port)".into(),
            });
        }
    };
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let hostport = hostport.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains(['/', '?', '#', ' ']) || hostport.starts_with(':') {
        return Err("must be a URL with a host (nats://host:port)".into());
    }
    let port_ok = match hostport.rsplit_once(':') {
        // An IPv6 address without port ends in `]`.
        Some((h, p)) if !h.ends_with(']') || !p.is_empty() => {
            if hostport.starts_with('[') && !h.ends_with(']') {
                true
            } else {
                p.parse::<u16>().is_ok_and(|p| p > 0)
            }
        }
        _ => true,
    };
    if !port_ok {
        return Err("has a port that is not a number from 1 to 65535".into());
    }
    let url = if hostport.ends_with(']') || !hostport.contains(':') {
        format!("{scheme}://{hostport}:4222")
    } else {
        format!("{scheme}://{hostport}")
    };
    let creds = match userinfo {
        None => None,
        Some("") => return Err("has an empty user part before `@`".into()),
        Some(u) => Some(match u.split_once(':') {
            Some((user, pass)) => Credentials::UserPassword {
                user: percent_decode(user),
                password: Secret::new(percent_decode(pass)),
            },
            None => Credentials::Token {
                token: Secret::new(percent_decode(u)),
            },
        }),
    };
    Ok((url, creds))
}

/// `%XX` escapes of a URL's user part decoded (invalid ones kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn credentials(v: &Value) -> Result<Option<Credentials>, String> {
    const SHAPES: &str = "a .creds file path, `{token: …}` or `{user: …, password: …}`";
    match v {
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(Credentials::File {
            path: s.trim().to_string(),
        })),
        Value::Object(m) => {
            let str_of = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            for k in m.keys() {
                if !["file", "token", "user", "password"].contains(&k.as_str()) {
                    return Err(format!(
                        "`cluster.credentials.{k}` is not a known key (known: file, token, user, password)"
                    ));
                }
            }
            for k in ["file", "token", "user", "password"] {
                if m.get(k).is_some_and(|v| !v.is_string()) {
                    return Err(format!(
                        "`cluster.credentials.{k}` must be a string, found {}",
                        describe(m.get(k).unwrap_or(&Value::Null))
                    ));
                }
            }
            match (
                str_of("file"),
                str_of("token"),
                str_of("user"),
                str_of("password"),
            ) {
                (Some(path), None, None, None) => Ok(Some(Credentials::File { path })),
                (None, Some(token), None, None) if !token.is_empty() => {
                    Ok(Some(Credentials::Token {
                        token: Secret::new(token),
                    }))
                }
                (None, None, Some(user), Some(password)) if !user.is_empty() => {
                    Ok(Some(Credentials::UserPassword {
                        user,
                        password: Secret::new(password),
                    }))
                }
                (None, None, Some(_), None) => Err(
                    "`cluster.credentials.password` is missing (a user needs a password)".into(),
                ),
                (None, None, None, Some(_)) => {
                    Err("`cluster.credentials.user` is missing (a password needs a user)".into())
                }
                (None, Some(_), None, None) => Err("`cluster.credentials.token` is empty".into()),
                _ => Err(format!(
                    "`cluster.credentials` must be one of {SHAPES}, not a mix of them"
                )),
            }
        }
        other => Err(format!(
            "`cluster.credentials` must be {SHAPES}, found {}",
            describe(other)
        )),
    }
}

fn share(v: Option<&Value>, key: &str, errors: &mut Vec<String>) -> Share {
    let m = match v {
        None | Some(Value::Null) => return Share::default(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            errors.push(format!(
                "`{key}` must be a mapping with `services` and `topics` lists, found {}",
                describe(other)
            ));
            return Share::default();
        }
    };
    for k in m.keys() {
        if k != "services" && k != "topics" {
            errors.push(format!(
                "`{key}.{k}` is not a known key (known: services, topics)"
            ));
        }
    }
    let list = |field: &str, check: fn(&str) -> Option<&'static str>, errors: &mut Vec<String>| {
        let mut out = Vec::new();
        match m.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(str::trim) {
                        Some(s) => match check(s) {
                            None => out.push(s.to_string()),
                            Some(why) => errors.push(format!("`{key}.{field}.{i}` ({s:?}) {why}")),
                        },
                        None => errors.push(format!(
                            "`{key}.{field}.{i}` must be a string, found {}",
                            describe(item)
                        )),
                    }
                }
            }
            Some(other) => errors.push(format!(
                "`{key}.{field}` must be a list, found {}",
                describe(other)
            )),
        }
        out.sort();
        out.dedup();
        out
    };
    Share {
        services: list("services", check_service, errors),
        topics: list("topics", check_topic, errors),
    }
}

/// Why a service name cannot travel as a NATS subject, if it cannot.
fn check_service(s: &str) -> Option<&'static str> {
    if !subject_safe(s) || s.contains('*') {
        return Some("is not a service name that can cross nodes (no spaces, `*`, `>`, empty or leading/trailing `.`)");
    }
    None
}

/// Why a topic pattern cannot be exported or imported, if it cannot.
fn check_topic(s: &str) -> Option<&'static str> {
    if s == "*" {
        return None;
    }
    let body = s.strip_suffix('*').unwrap_or(s);
    if s.ends_with('*') && !(body.ends_with('.') || body.ends_with(':')) {
        return Some("must be a topic or a pattern ending in `.*` or `:*`");
    }
    let body = body.trim_end_matches('.');
    if body.contains('*') || !subject_safe(body) {
        return Some(
            "is not a topic that can cross nodes (no spaces, `>`, empty or leading `.`, `..`)",
        );
    }
    None
}

/// Whether `s` can be appended to a subject: non-empty dot-separated tokens without
/// whitespace or `>`.
pub fn subject_safe(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|t| !t.is_empty() && t != ">" && t != "*")
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '>')
}

/// The section as written, canonical, with every secret redacted: credentials' `token` and
/// `password`, and the user part of URLs.
pub fn redacted_text(raw: &Value) -> String {
    let mut v = config::canonical(raw);
    redact_secrets(&mut v);
    config::section_text(&v)
}

/// Replaces the secrets of a `cluster` section in place: credentials' `token` and `password`,
/// and the user part of URLs.
pub fn redact_secrets(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        if let Some(Value::Object(c)) = m.get_mut("credentials") {
            for k in ["token", "password"] {
                if let Some(x) = c.get_mut(k) {
                    *x = Value::String(REDACTED.into());
                }
            }
        }
        if let Some(u) = m.get_mut("url") {
            redact_url_value(u);
        }
        if let Some(Value::Array(items)) = m.get_mut("urls") {
            items.iter_mut().for_each(redact_url_value);
        }
    }
}

fn redact_url_value(v: &mut Value) {
    if let Value::String(s) = v {
        *s = redact_url(s);
    }
}

/// A URL with its user part (token, user and password) replaced by [`REDACTED`].
pub fn redact_url(s: &str) -> String {
    match s.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{REDACTED}@{host}"),
            None => s.to_string(),
        },
        None => match s.rsplit_once('@') {
            Some((_, host)) => format!("{REDACTED}@{host}"),
            None => s.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse_yaml(y: &str) -> Result<Option<DesiredCluster>, Vec<String>> {
        let root = config::parse(y.as_bytes()).unwrap();
        parse(
            &root,
            &env(&[("TOK", "s3cret-token")]),
            "host-a.example.com",
        )
    }

    #[test]
    fn absent_section_is_none() {
        assert_eq!(parse_yaml("logging: {level: info}\n"), Ok(None));
        assert_eq!(parse_yaml("cluster:\n"), Ok(None));
    }

    #[test]
    fn defaults() {
        let c = parse_yaml("cluster: {url: nats://127.0.0.1:4222}\n")
            .unwrap()
            .unwrap()
            .config;
        assert_eq!(c.urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.name, "pons");
        assert_eq!(c.node, "host-a");
        assert_eq!(c.credentials, None);
        assert_eq!(c.export, Share::default());
        assert_eq!(c.stale_ms, 5000);
        let c = parse_yaml("cluster: {url: nats://localhost}\n")
            .unwrap()
            .unwrap()
            .config;
        assert_eq!(c.urls, ["nats://localhost:4222"]);
    }

    #[test]
    fn full_section() {
        let c = parse_yaml(
            "cluster:\n  urls: [nats://a:1, nats://b:2]\n  name: prod\n  node: n1\n  credentials: {token: '${TOK}'}\n  export: {services: [echo, echo], topics: ['metrics.*']}\n  import: {services: [db], topics: ['alerts:*', x]}\n  staleMs: 1000\n",
        )
        .unwrap()
        .unwrap();
        let cfg = &c.config;
        assert_eq!(cfg.urls, ["nats://a:1", "nats://b:2"]);
        assert_eq!((cfg.name.as_str(), cfg.node.as_str()), ("prod", "n1"));
        assert_eq!(
            cfg.credentials,
            Some(Credentials::Token {
                token: Secret::new("s3cret-token")
            })
        );
        assert_eq!(cfg.export.services, ["echo"]);
        assert_eq!(cfg.import.topics, ["alerts:*", "x"]);
        assert_eq!(cfg.stale_ms, 1000);
        assert!(cfg.imports_service("db") && !cfg.imports_service("echo"));
        // The secret appears nowhere: not in Debug, JSON or the text plans diff.
        let shown = format!("{c:?} {} {}", serde_json::to_string(&c).unwrap(), c.text);
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(c.text.contains("token: <redacted>"), "{}", c.text);
    }

    #[test]
    fn url_user_part_becomes_credentials_and_is_redacted() {
        let c = parse_yaml("cluster: {url: 'nats://bob:pa%40ss@127.0.0.1:4222'}\n")
            .unwrap()
            .unwrap();
        assert_eq!(c.config.urls, ["nats://127.0.0.1:4222"]);
        assert_eq!(
            c.config.credentials,
            Some(Credentials::UserPassword {
                user: "bob".into(),
                password: Secret::new("pa@ss")
            })
        );
        assert!(
            !c.text.contains("pa%40ss") && !c.text.contains("bob"),
            "{}",
            c.text
        );
        let t = parse_yaml("cluster: {url: 'nats://tok123@h:1'}\n")
            .unwrap()
            .unwrap();
        assert!(matches!(
            t.config.credentials,
            Some(Credentials::Token { .. })
        ));
        assert_eq!(redact_url("nats://a:b@h:1"), "nats://<redacted>@h:1");
        assert_eq!(redact_url("nats://h:1"), "nats://h:1");
    }

    #[test]
    fn errors_name_the_key_and_never_the_secret() {
        let errs = |y: &str| parse_yaml(y).unwrap_err().join("\n");
        assert!(errs("cluster: {}\n").contains("`cluster.url` is missing"));
        assert!(errs("cluster: 3\n").contains("`cluster` must be a mapping"));
        assert!(errs("cluster: {url: 'http://x:1'}\n")
            .contains("`cluster.url` must be a nats:// or tls:// URL"));
        assert!(errs("cluster: {url: 'nats://x:99999'}\n").contains("`cluster.url` has a port"));
        assert!(errs("cluster: {url: nats://x, urls: [nats://y]}\n").contains("keep one"));
        assert!(errs("cluster: {url: nats://x, name: 'a.b'}\n").contains("`cluster.name`"));
        assert!(errs("cluster: {url: nats://x, node: 'a b'}\n").contains("`cluster.node`"));
        assert!(errs("cluster: {url: nats://x, staleMs: 10}\n")
            .contains("`cluster.staleMs` must be an integer of at least 300"));
        assert!(errs("cluster: {url: nats://x, bogus: 1}\n")
            .contains("`cluster.bogus` is not a known key"));
        assert!(
            errs("cluster: {url: nats://x, export: {services: ['a b']}}\n")
                .contains("`cluster.export.services.0`")
        );
        assert!(errs("cluster: {url: nats://x, import: {topics: ['a*']}}\n")
            .contains("`cluster.import.topics.0`"));
        assert!(errs("cluster: {url: nats://x, export: [a]}\n")
            .contains("`cluster.export` must be a mapping"));
        assert!(errs("cluster: {url: nats://x, credentials: {user: u}}\n")
            .contains("`cluster.credentials.password` is missing"));
        assert!(
            errs("cluster: {url: nats://x, credentials: {token: t, user: u, password: p}}\n")
                .contains("not a mix")
        );
        let e = errs("cluster: {url: 'nats://u:p@x', credentials: {token: hidden-tok}}\n");
        assert!(e.contains("keep one") && !e.contains("hidden-tok"), "{e}");
        let e = errs("cluster: {url: nats://x, credentials: {token: '${UNSET_SECRET_VAR'}}\n");
        assert!(
            e.contains("`cluster.credentials.token`") && !e.contains("UNSET_SECRET"),
            "{e}"
        );
        let e = errs("cluster: {url: nats://x, node: '${NOPE}'}\n");
        assert!(e.contains("`cluster.node`: `${NOPE}` is not set"), "{e}");
    }

    #[test]
    fn creds_file_and_user_password() {
        let c = parse_yaml("cluster: {url: nats://x, credentials: /etc/nats/a.creds}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.config.credentials,
            Some(Credentials::File {
                path: "/etc/nats/a.creds".into()
            })
        );
        assert!(c.text.contains("/etc/nats/a.creds"));
        let c = parse_yaml("cluster: {url: nats://x, credentials: {user: u, password: pw-123}}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.config.credentials.as_ref().map(Credentials::kind),
            Some("user and password")
        );
        assert!(!c.text.contains("pw-123"));
    }

    #[test]
    fn fingerprint_follows_secrets_and_changed_keys_name_them() {
        let a = parse_yaml("cluster: {url: nats://x, credentials: {token: one}}\n")
            .unwrap()
            .unwrap();
        let b = parse_yaml("cluster: {url: nats://x, credentials: {token: two}}\n")
            .unwrap()
            .unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert_eq!(a.text, b.text, "both redacted");
        assert_eq!(a.config.changed_keys(&b.config), ["credentials"]);
        let c = parse_yaml("cluster: {url: nats://y, export: {services: [e]}}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            a.config.changed_keys(&c.config),
            ["url", "credentials", "export"]
        );
    }

    #[test]
    fn tls_urls_and_the_tls_mapping() {
        let c = |y: &str| parse_yaml(y).unwrap().unwrap();
        // A tls:// URL requires TLS (system roots), keeps its scheme and gets the default port.
        let t = c("cluster: {url: 'tls://x'}\n");
        assert_eq!(t.config.urls, ["tls://x:4222"]);
        assert!(t.config.requires_tls() && t.config.tls.is_none());
        assert!(!c("cluster: {url: nats://x}\n").config.requires_tls());
        // A tls mapping with nats:// URLs requires TLS too.
        let t = c(
            "cluster:\n  url: nats://x\n  tls: {ca: '${TOK}.pem', cert: certs/n.pem, key: /k/n.key}\n",
        );
        assert!(t.config.requires_tls());
        let tls = t.config.tls.clone().unwrap();
        assert_eq!(
            tls.ca.as_deref(),
            Some("s3cret-token.pem"),
            "${{VAR}} expanded"
        );
        assert_eq!(
            tls.files(),
            [
                ("cluster.tls.ca", "s3cret-token.pem"),
                ("cluster.tls.cert", "certs/n.pem"),
                ("cluster.tls.key", "/k/n.key")
            ]
        );
        let empty = c("cluster: {url: nats://x, tls: {}}\n");
        assert_eq!(empty.config.tls, Some(Tls::default()));
        assert!(empty.config.requires_tls());
        // A changed tls key is a changed section, named `tls`.
        let plain = c("cluster: {url: nats://x}\n");
        assert_ne!(plain.fingerprint, empty.fingerprint);
        assert_eq!(plain.config.changed_keys(&empty.config), ["tls"]);
        let other_ca = c("cluster: {url: nats://x, tls: {ca: /b.pem}}\n");
        assert_eq!(empty.config.changed_keys(&other_ca.config), ["tls"]);
        assert_ne!(empty.fingerprint, other_ca.fingerprint);
        assert_eq!(
            c("cluster: {url: 'tls://x'}\n")
                .config
                .changed_keys(&plain.config),
            ["url"]
        );
    }

    #[test]
    fn tls_errors_name_their_key() {
        let errs = |y: &str| parse_yaml(y).unwrap_err().join("\n");
        let e = errs("cluster: {url: nats://x, tls: {cert: /c.pem}}\n");
        assert!(e.contains("`cluster.tls.key` is missing"), "{e}");
        let e = errs("cluster: {url: nats://x, tls: {key: /k.pem}}\n");
        assert!(e.contains("`cluster.tls.cert` is missing"), "{e}");
        let e = errs("cluster: {url: nats://x, tls: {ca: ''}}\n");
        assert!(e.contains("`cluster.tls.ca` is empty"), "{e}");
        let e = errs("cluster: {url: nats://x, tls: {cert: /c.pem, key: ' '}}\n");
        assert!(e.contains("`cluster.tls.key` is empty"), "{e}");
        assert!(!e.contains("is missing"), "one error for one problem: {e}");
        let e = errs("cluster: {url: nats://x, tls: {ca: /a.pem, verify: true}}\n");
        assert!(
            e.contains("`cluster.tls.verify` is not a known key (known: ca, cert, key)"),
            "{e}"
        );
        let e = errs("cluster: {url: nats://x, tls: {ca: 3}}\n");
        assert!(
            e.contains("`cluster.tls.ca` must be the path of a PEM file"),
            "{e}"
        );
        let e = errs("cluster: {url: nats://x, tls: true}\n");
        assert!(e.contains("`cluster.tls` must be a mapping"), "{e}");
        let e = errs("cluster: {url: nats://x, tls: {ca: '${NOPE}'}}\n");
        assert!(e.contains("`cluster.tls.ca`: `${NOPE}` is not set"), "{e}");
        let e = errs("cluster: {url: 'ws://x'}\n");
        assert!(e.contains("the `ws://` scheme is not supported"), "{e}");
    }

    #[test]
    fn node_names_from_hosts() {
        assert_eq!(node_from_host("web-1.example.org"), "web-1");
        assert_eq!(node_from_host("wéird host"), "w-ird-host");
        assert_eq!(node_from_host(""), "node");
    }

    #[test]
    fn topics_and_services_that_can_cross() {
        assert_eq!(check_topic("metrics.*"), None);
        assert_eq!(check_topic("news:*"), None);
        assert_eq!(check_topic("*"), None);
        assert_eq!(check_topic("a.b"), None);
        assert!(check_topic("a.>").is_some());
        assert!(check_topic("a..b").is_some());
        assert!(check_service("a b").is_some());
        assert_eq!(check_service("http-router"), None);
        assert!(json!(null).is_null());
    }
}
