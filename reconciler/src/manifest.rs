//! `module.json`: the manifest, its validation and its hash. Fields
//! the reference accepts with another JSON type are read as it reads them, with a warning each
//! (`lenient`).

mod lenient;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::desired::Limits;
use crate::permissions::{Capabilities, PermissionSet};

/// A parsed manifest. Unknown fields are kept out; fields follow the reference kernel's behaviour
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `deno` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<String>,
    /// 100 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<f64>,
    #[serde(default)]
    pub provides: Vec<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub optional_requires: Vec<String>,
    #[serde(default)]
    pub subscribes: Vec<String>,
    #[serde(default)]
    pub publishes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<String>,
    #[serde(default)]
    pub config_dependencies: Vec<String>,
    /// Required: a manifest without it is invalid (deny by default).
    pub permissions: PermissionSet,
    #[serde(default)]
    pub commands: Vec<serde_json::Value>,
    /// pons extension: rlimits applied before the module's `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// pons extension: `"required"` blocks the module where Landlock is unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Fields written with another JSON type than documented, read as the reference reads them:
    /// one sentence each (e.g. "`priority` is a string: read as 5 (write a number)").
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Manifest {
    /// `priority`, 100 when absent.
    pub fn priority(&self) -> f64 {
        self.priority.unwrap_or(DEFAULT_PRIORITY)
    }

    /// `runtime`, `deno` when absent.
    pub fn runtime(&self) -> &str {
        self.runtime.as_deref().unwrap_or("deno")
    }
}

/// Spawn priority of a manifest without `priority`.
pub const DEFAULT_PRIORITY: f64 = 100.0;

/// The runtimes pons knows how to start.
pub const RUNTIMES: [&str; 8] = [
    "deno", "node", "bun", "python", "php", "go", "rust", "binary",
];

/// Why a `module.json` was refused. `Display` is one sentence about the file's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON, or not a JSON object.
    Syntax(String),
    /// `id` or `name` missing or not a non-empty string.
    MissingIdOrName,
    /// `minProtocolVersion` not compatible with protocol 1.0.
    ProtocolVersion { id: String, version: String },
    /// No `permissions` block.
    MissingPermissions,
    /// The `permissions` block breaks the strict schema.
    InvalidPermissions(String),
    /// Another field has the wrong type.
    InvalidField(String),
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::Syntax(e) => write!(f, "module.json is not valid JSON: {e}"),
            ManifestError::MissingIdOrName => {
                f.write_str("module.json needs `id` and `name` as non-empty strings")
            }
            ManifestError::ProtocolVersion { id, version } => write!(
                f,
                "module `{id}` needs protocol version {version}, but this kernel speaks 1.0"
            ),
            ManifestError::MissingPermissions => f.write_str(
                "module.json has no `permissions` block (deny by default: add `\"permissions\": {}`)",
            ),
            ManifestError::InvalidPermissions(e) => {
                write!(f, "module.json has an invalid `permissions` block: {e}")
            }
            ManifestError::InvalidField(e) => write!(f, "module.json has an invalid field: {e}"),
        }
    }
}

impl std::error::Error for ManifestError {}

const PERMISSION_KEYS: [&str; 6] = ["net", "read", "write", "env", "run", "sys"];

/// Parses and validates `module.json` bytes (a leading UTF-8 BOM is ignored). Checks, in the
/// order of the reference kernel's behaviour: JSON object, `id`/`name`, protocol version, `permissions` present and
/// strict, then the types of the other fields. Unknown fields are ignored. A field of another
/// JSON type that the reference accepts is read as it reads it and noted in
/// [`Manifest::warnings`].
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    let Value::Object(mut obj) = value else {
        return Err(ManifestError::Syntax(
            "the top level is not an object".into(),
        ));
    };
    let non_empty = |k: &str| matches!(obj.get(k), Some(Value::String(s)) if !s.is_empty());
    if !non_empty("id") || !non_empty("name") {
        return Err(ManifestError::MissingIdOrName);
    }
    let id = obj
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut warnings = Vec::new();
    let version = lenient::min_protocol_version(&mut obj, &mut warnings)
        .map_err(ManifestError::InvalidField)?;
    if let Some(version) = version {
        if !protocol_compatible(&version) {
            return Err(ManifestError::ProtocolVersion { id, version });
        }
    }
    match obj.get("permissions") {
        None | Some(Value::Null) => return Err(ManifestError::MissingPermissions),
        Some(p) => validate_permissions(p).map_err(ManifestError::InvalidPermissions)?,
    }
    warnings.extend(lenient::normalize(&mut obj));
    let whole = Value::Object(obj.clone());
    let mut manifest = serde_json::from_value::<Manifest>(whole).map_err(|e| {
        // Name the field: retry each one alone on top of the validated required fields.
        for (key, v) in &obj {
            if matches!(key.as_str(), "id" | "name" | "permissions") {
                continue;
            }
            let mut probe = serde_json::Map::new();
            for k in ["id", "name", "permissions"] {
                if let Some(x) = obj.get(k) {
                    probe.insert(k.into(), x.clone());
                }
            }
            probe.insert(key.clone(), v.clone());
            if let Err(e) = serde_json::from_value::<Manifest>(Value::Object(probe)) {
                return ManifestError::InvalidField(format!("`{key}`: {e}"));
            }
        }
        ManifestError::InvalidField(e.to_string())
    })?;
    manifest.warnings = warnings;
    Ok(manifest)
}

/// the reference kernel's behaviour: `MAJOR.MINOR`, unparseable parts count as 0; accepted iff major == 1 and
/// minor == 0.
pub fn protocol_compatible(version: &str) -> bool {
    let mut parts = version.split('.');
    let num = |p: Option<&str>| p.and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(0);
    let major = num(parts.next());
    let minor = num(parts.next());
    major == 1 && minor <= 0
}

/// The strict permissions schema of the reference kernel's behaviour, on raw JSON.
pub fn validate_permissions(value: &Value) -> Result<(), String> {
    let Value::Object(obj) = value else {
        return Err("it must be an object with the keys net, read, write, env, run, sys".into());
    };
    for (key, v) in obj {
        if !PERMISSION_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{key}` (allowed: net, read, write, env, run, sys)"
            ));
        }
        let Value::Array(items) = v else {
            return Err(format!("`{key}` must be an array of strings"));
        };
        for item in items {
            let Value::String(s) = item else {
                return Err(format!("`{key}` must be an array of strings"));
            };
            if key == "env" && s.contains('*') {
                return Err(format!(
                    "`env` entry `{s}`: glob patterns are not allowed in env, use exact names"
                ));
            }
        }
    }
    Ok(())
}

/// The entry file the manifest asks for: `entrypoint`, else `entry`, else `runner.ts` (an empty
/// string counts as absent, as in the reference).
pub fn entry_request(manifest: &Manifest) -> String {
    let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    given(&manifest.entrypoint)
        .or_else(|| given(&manifest.entry))
        .unwrap_or_else(|| "runner.ts".to_string())
}

/// Tamper-detection hash: the bytes decoded as UTF-8 (BOM stripped, invalid
/// sequences replaced), SHA-256, 64 lowercase hex characters.
pub fn hash(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    crate::digest::sha256_hex(text.as_bytes())
}

/// The `version` of a `deno.json`, if it parses and has one (parse errors are ignored).
pub fn deno_json_version(bytes: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

/// The capabilities derived from a manifest when neither the approval nor the manifest names
/// any: topics = subscribes ∪ publishes, services = requires ∪ optionalRequires (deduplicated,
/// first occurrence kept).
pub fn derived_capabilities(m: &Manifest) -> Capabilities {
    Capabilities {
        topics: dedup(m.subscribes.iter().chain(&m.publishes)),
        services: dedup(m.requires.iter().chain(&m.optional_requires)),
    }
}

/// The capabilities to approve at install: the manifest's `capabilities`, else derived.
pub fn install_capabilities(m: &Manifest) -> Capabilities {
    m.capabilities
        .clone()
        .unwrap_or_else(|| derived_capabilities(m))
}

pub(crate) fn dedup<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(json: &str) -> Manifest {
        parse(json.as_bytes()).unwrap()
    }
    fn err(json: &str) -> ManifestError {
        parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn minimal() {
        let m = ok(r#"{"id":"a","name":"A","permissions":{}}"#);
        assert_eq!(m.id, "a");
        assert_eq!(m.priority(), 100.0);
        assert_eq!(m.runtime(), "deno");
        assert_eq!(entry_request(&m), "runner.ts");
    }

    #[test]
    fn gateway_example() {
        let m = ok(
            r#"{"id":"gateway","name":"G","provides":["http-router"],"subscribes":["outbound:ws"],"priority":5,"configKey":"gateway","configSchema":"./src/config.schema.ts","configDependencies":["gateway"],"permissions":{"net":["0.0.0.0","127.0.0.1"],"read":[".","~/.pons/"],"env":["HOME","PONS_HOME"],"sys":["hostname"]},"cli":{"entrypoint":"cli.ts"}}"#,
        );
        assert_eq!(m.priority(), 5.0);
        assert_eq!(m.permissions.net, vec!["0.0.0.0", "127.0.0.1"]);
        assert_eq!(m.config_dependencies, vec!["gateway"]);
    }

    #[test]
    fn id_and_name_required() {
        assert_eq!(
            err(r#"{"name":"A","permissions":{}}"#),
            ManifestError::MissingIdOrName
        );
        assert_eq!(
            err(r#"{"id":"","name":"A","permissions":{}}"#),
            ManifestError::MissingIdOrName
        );
        assert_eq!(
            err(r#"{"id":1,"name":"A","permissions":{}}"#),
            ManifestError::MissingIdOrName
        );
        assert!(matches!(err("[1]"), ManifestError::Syntax(_)));
        assert!(matches!(err("{"), ManifestError::Syntax(_)));
    }

    #[test]
    fn protocol_rule() {
        for v in ["1", "1.0", "1.0.5"] {
            assert!(protocol_compatible(v), "{v}");
        }
        for v in ["1.1", "2.0", "abc", "0.9"] {
            assert!(!protocol_compatible(v), "{v}");
        }
        let e = err(r#"{"id":"a","name":"A","minProtocolVersion":"1.1","permissions":{}}"#);
        assert_eq!(
            e,
            ManifestError::ProtocolVersion {
                id: "a".into(),
                version: "1.1".into()
            }
        );
        ok(r#"{"id":"a","name":"A","minProtocolVersion":"1","permissions":{}}"#);
    }

    #[test]
    fn permissions_strict() {
        assert_eq!(
            err(r#"{"id":"a","name":"A"}"#),
            ManifestError::MissingPermissions
        );
        assert_eq!(
            err(r#"{"id":"a","name":"A","permissions":null}"#),
            ManifestError::MissingPermissions
        );
        let e = err(r#"{"id":"a","name":"A","permissions":{"ffi":[]}}"#);
        assert!(e.to_string().contains("unknown key `ffi`"), "{e}");
        let e = err(r#"{"id":"a","name":"A","permissions":{"env":["AWS_*"]}}"#);
        assert!(e.to_string().contains("glob"), "{e}");
        let e = err(r#"{"id":"a","name":"A","permissions":{"net":"x"}}"#);
        assert!(e.to_string().contains("array of strings"), "{e}");
        let e = err(r#"{"id":"a","name":"A","permissions":{"net":[1]}}"#);
        assert!(e.to_string().contains("array of strings"), "{e}");
    }

    #[test]
    fn other_field_types() {
        let e = err(r#"{"id":"a","name":"A","permissions":{},"provides":"x"}"#);
        assert!(matches!(e, ManifestError::InvalidField(_)), "{e}");
        assert!(e.to_string().contains("`provides`: invalid type"), "{e}");
        let e = err(r#"{"id":"a","name":"A","permissions":{},"limits":{"memoryMB":1}}"#);
        assert!(e.to_string().contains("`limits`: unknown field"), "{e}");
    }

    /// DESIGN §3: what the reference accepts with another JSON type is read as it reads it, with
    /// a warning each; what it refuses stays refused.
    #[test]
    fn lenient_where_the_reference_is() {
        let m = ok(
            r#"{"id":"a","name":"A","version":1,"priority":"5","provides":null,"permissions":{}}"#,
        );
        assert_eq!(m.version.as_deref(), Some("1"));
        assert_eq!(m.priority(), 5.0);
        assert!(m.provides.is_empty());
        assert_eq!(m.warnings.len(), 3, "{:?}", m.warnings);
        assert!(
            m.warnings[0].starts_with("`version` is a number"),
            "{:?}",
            m.warnings
        );
        assert!(ok(r#"{"id":"a","name":"A","permissions":{}}"#)
            .warnings
            .is_empty());
        // `minProtocolVersion || "1.0"`
        let m = ok(r#"{"id":"a","name":"A","minProtocolVersion":null,"permissions":{}}"#);
        assert_eq!((m.min_protocol_version, m.warnings.len()), (None, 1));
        let m = ok(r#"{"id":"a","name":"A","minProtocolVersion":"","permissions":{}}"#);
        assert_eq!(m.warnings.len(), 1);
        assert!(matches!(
            err(r#"{"id":"a","name":"A","minProtocolVersion":2,"permissions":{}}"#),
            ManifestError::ProtocolVersion { .. }
        ));
        // refused as before
        assert_eq!(
            err(r#"{"id":"a","permissions":{}}"#),
            ManifestError::MissingIdOrName
        );
        assert_eq!(
            err(r#"{"id":"a","name":null,"permissions":{}}"#),
            ManifestError::MissingIdOrName
        );
        for bad in [
            r#""provides":"kv""#,
            r#""requires":[1]"#,
            r#""entrypoint":5"#,
            r#""minProtocolVersion":true"#,
            r#""capabilities":"x""#,
            r#""limits":null,"sandbox":3"#,
        ] {
            let json = format!(r#"{{"id":"a","name":"A","permissions":{{}},{bad}}}"#);
            assert!(
                matches!(err(&json), ManifestError::InvalidField(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn entry_fallbacks() {
        assert_eq!(
            entry_request(&ok(
                r#"{"id":"a","name":"A","permissions":{},"entry":"main.ts"}"#
            )),
            "main.ts"
        );
        assert_eq!(
            entry_request(&ok(
                r#"{"id":"a","name":"A","permissions":{},"entry":"main.ts","entrypoint":"e.ts"}"#
            )),
            "e.ts"
        );
        // an empty `entrypoint` counts as absent (`entry && !entrypoint` in the reference)
        assert_eq!(
            entry_request(&ok(
                r#"{"id":"a","name":"A","permissions":{},"entry":"main.ts","entrypoint":""}"#
            )),
            "main.ts"
        );
    }

    #[test]
    fn hash_strips_bom() {
        let plain = br#"{"id":"a"}"#;
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(plain);
        assert_eq!(hash(plain), hash(&bom));
        assert_eq!(
            hash(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_ne!(hash(b"{} "), hash(b"{}"));
        assert!(parse(&bom).is_err()); // not a valid manifest, but the BOM itself is fine
    }

    #[test]
    fn derived_caps() {
        let m = ok(
            r#"{"id":"a","name":"A","permissions":{},"subscribes":["t","u"],"publishes":["u","v"],"requires":["s"],"optionalRequires":["s","o"]}"#,
        );
        let c = derived_capabilities(&m);
        assert_eq!(c.topics, vec!["t", "u", "v"]);
        assert_eq!(c.services, vec!["s", "o"]);
    }

    #[test]
    fn deno_version() {
        assert_eq!(
            deno_json_version(br#"{"version":"2.5.0"}"#),
            Some("2.5.0".into())
        );
        assert_eq!(deno_json_version(b"{"), None);
    }
}
