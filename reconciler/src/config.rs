//! `config.yaml`: parsing (serde-saphyr, strict), kernel sections with defaults,
//! `${VAR}` interpolation of module sections, key paths (get, set, coercion, scope checks) and
//! JSON-Schema validation of module sections (draft 2020-12, defaults filled in).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::yaml::{self, YamlError};

/// `lifecycle` section, all in milliseconds / counts, plus pons' own
/// `maxMessageBytes` (10 MiB), `slowConsumerMs` (10 s) and `maxPendingRpcs` (1024 RPCs in
/// flight per caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub health_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub health_max_failures: u32,
    pub ready_timeout_ms: u64,
    pub requires_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub max_restarts: u32,
    /// The first restart delay (the reference's documented key, which it ignored); doubles per
    /// consecutive failure up to `max_restart_backoff_ms`.
    pub restart_base_ms: u64,
    pub max_restart_backoff_ms: u64,
    pub rpc_timeout_ms: u64,
    pub max_message_bytes: u64,
    pub slow_consumer_ms: u64,
    pub max_pending_rpcs: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            health_interval_ms: 30_000,
            ping_timeout_ms: 10_000,
            health_max_failures: 3,
            ready_timeout_ms: 30_000,
            requires_timeout_ms: 30_000,
            shutdown_grace_ms: 5_000,
            max_restarts: 5,
            restart_base_ms: 1_000,
            max_restart_backoff_ms: 60_000,
            rpc_timeout_ms: 30_000,
            max_message_bytes: 10 * 1024 * 1024,
            slow_consumer_ms: 10_000,
            max_pending_rpcs: 1024,
        }
    }
}

/// `security.enforcementMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    #[default]
    Strict,
    Warn,
    Off,
}

/// `kernel.reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileMode {
    #[default]
    Auto,
    Manual,
}

/// `logging` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    pub level: String,
    #[serde(default)]
    pub levels: std::collections::BTreeMap<String, String>,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
            levels: Default::default(),
        }
    }
}

/// The kernel's own sections of config.yaml, after defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelConfig {
    pub lifecycle: Lifecycle,
    pub enforcement_mode: EnforcementMode,
    pub reconcile: ReconcileMode,
    pub logging: Logging,
    /// `kernel.runtimes`: runtime name → interpreter path override.
    pub runtimes: std::collections::BTreeMap<String, String>,
    /// `kernel.disabled`: ids of modules that must not run (sorted, without duplicates).
    pub disabled: Vec<String>,
}

/// Sections of config.yaml owned by the kernel: modules may neither read nor write them, and a
/// module's `configKey` may not name one (`cluster` holds credentials: crate::cluster).
pub const KERNEL_SECTIONS: [&str; 5] = ["logging", "lifecycle", "security", "kernel", "cluster"];

/// Parses config.yaml. An empty document is `{}`; the top level must be a mapping.
pub fn parse(bytes: &[u8]) -> Result<Value, YamlError> {
    match yaml::parse_value(bytes)? {
        Value::Null => Ok(Value::Object(Map::new())),
        v @ Value::Object(_) => Ok(v),
        _ => Err(YamlError {
            message: "the top level must be a mapping of sections (`logging:`, `lifecycle:`, …)"
                .into(),
        }),
    }
}

const LIFECYCLE_KEYS: [(&str, u64); 13] = [
    ("healthIntervalMs", 1000),
    ("pingTimeoutMs", 1000),
    ("healthMaxFailures", 1),
    ("readyTimeoutMs", 1000),
    ("requiresTimeoutMs", 1000),
    ("shutdownGraceMs", 1000),
    ("maxRestarts", 0),
    ("restartBaseMs", 0),
    ("maxRestartBackoffMs", 0),
    ("rpcTimeoutMs", 1000),
    ("maxMessageBytes", 1024),
    ("slowConsumerMs", 100),
    ("maxPendingRpcs", 1),
];

impl Lifecycle {
    fn slot(&mut self, key: &str) -> Option<LifecycleSlot<'_>> {
        Some(match key {
            "healthIntervalMs" => LifecycleSlot::U64(&mut self.health_interval_ms),
            "pingTimeoutMs" => LifecycleSlot::U64(&mut self.ping_timeout_ms),
            "healthMaxFailures" => LifecycleSlot::U32(&mut self.health_max_failures),
            "readyTimeoutMs" => LifecycleSlot::U64(&mut self.ready_timeout_ms),
            "requiresTimeoutMs" => LifecycleSlot::U64(&mut self.requires_timeout_ms),
            "shutdownGraceMs" => LifecycleSlot::U64(&mut self.shutdown_grace_ms),
            "maxRestarts" => LifecycleSlot::U32(&mut self.max_restarts),
            "restartBaseMs" => LifecycleSlot::U64(&mut self.restart_base_ms),
            "maxRestartBackoffMs" => LifecycleSlot::U64(&mut self.max_restart_backoff_ms),
            "rpcTimeoutMs" => LifecycleSlot::U64(&mut self.rpc_timeout_ms),
            "maxMessageBytes" => LifecycleSlot::U64(&mut self.max_message_bytes),
            "slowConsumerMs" => LifecycleSlot::U64(&mut self.slow_consumer_ms),
            "maxPendingRpcs" => LifecycleSlot::U64(&mut self.max_pending_rpcs),
            _ => return None,
        })
    }
}

enum LifecycleSlot<'a> {
    U64(&'a mut u64),
    U32(&'a mut u32),
}

const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// The kernel's sections of a parsed config.yaml, after defaults. A key with a bad value keeps
/// its value from `previous` (the defaults on the first pass) and gives one error naming it.
pub fn kernel_config(root: &Value, previous: &KernelConfig) -> (KernelConfig, Vec<String>) {
    let mut errors = Vec::new();
    let mut out = KernelConfig::default();
    let section = |name: &str, errors: &mut Vec<String>| -> Option<Map<String, Value>> {
        match root.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                errors.push(format!(
                    "`{name}` must be a mapping, found {}",
                    describe(other)
                ));
                None
            }
        }
    };

    // lifecycle
    if let Some(m) = section("lifecycle", &mut errors) {
        for (key, v) in &m {
            let Some(min) = LIFECYCLE_KEYS
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, m)| *m)
            else {
                errors.push(format!(
                    "`lifecycle.{key}` is not a known key (known: {})",
                    LIFECYCLE_KEYS.map(|(k, _)| k).join(", ")
                ));
                continue;
            };
            let mut prev = previous.lifecycle;
            let prev_value = match prev.slot(key) {
                Some(LifecycleSlot::U64(p)) => *p,
                Some(LifecycleSlot::U32(p)) => u64::from(*p),
                None => 0,
            };
            let parsed = v.as_u64().filter(|n| *n >= min);
            let n = match parsed {
                Some(n) => n,
                None => {
                    errors.push(format!(
                        "`lifecycle.{key}` must be an integer of at least {min}, found {}; keeping {prev_value}",
                        describe(v)
                    ));
                    prev_value
                }
            };
            match out.lifecycle.slot(key) {
                Some(LifecycleSlot::U64(p)) => *p = n,
                Some(LifecycleSlot::U32(p)) => *p = u32::try_from(n).unwrap_or(u32::MAX),
                None => {}
            }
        }
    }

    // security
    if let Some(m) = section("security", &mut errors) {
        if let Some(v) = m.get("enforcementMode") {
            match v.as_str() {
                Some("strict") => out.enforcement_mode = EnforcementMode::Strict,
                Some("warn") => out.enforcement_mode = EnforcementMode::Warn,
                Some("off") => out.enforcement_mode = EnforcementMode::Off,
                _ => {
                    errors.push(format!(
                        "`security.enforcementMode` must be strict, warn or off, found {}; keeping {}",
                        describe(v),
                        mode_name(previous.enforcement_mode)
                    ));
                    out.enforcement_mode = previous.enforcement_mode;
                }
            }
        }
    }

    // kernel
    if let Some(m) = section("kernel", &mut errors) {
        for (key, v) in &m {
            match key.as_str() {
                "reconcile" => match v.as_str() {
                    Some("auto") => out.reconcile = ReconcileMode::Auto,
                    Some("manual") => out.reconcile = ReconcileMode::Manual,
                    _ => {
                        errors.push(format!(
                            "`kernel.reconcile` must be auto or manual, found {}",
                            describe(v)
                        ));
                        out.reconcile = previous.reconcile;
                    }
                },
                "runtimes" => match v {
                    Value::Object(rt) => {
                        for (name, path) in rt {
                            match path.as_str() {
                                Some(p) if !p.is_empty() => {
                                    if !crate::manifest::RUNTIMES.contains(&name.as_str()) {
                                        errors.push(format!(
                                            "`kernel.runtimes.{name}` names an unknown runtime (known: {})",
                                            crate::manifest::RUNTIMES.join(", ")
                                        ));
                                    }
                                    out.runtimes.insert(name.clone(), p.to_string());
                                }
                                _ => {
                                    errors.push(format!(
                                        "`kernel.runtimes.{name}` must be the path of an interpreter, found {}",
                                        describe(path)
                                    ));
                                    if let Some(p) = previous.runtimes.get(name) {
                                        out.runtimes.insert(name.clone(), p.clone());
                                    }
                                }
                            }
                        }
                    }
                    Value::Null => {}
                    other => {
                        errors.push(format!(
                            "`kernel.runtimes` must be a mapping of runtime to path, found {}",
                            describe(other)
                        ));
                        out.runtimes = previous.runtimes.clone();
                    }
                },
                "disabled" => match disabled_ids(v) {
                    Ok(ids) => out.disabled = ids,
                    Err(found) => {
                        errors.push(format!(
                            "`kernel.disabled` must be a list of module ids, found {found}; keeping [{}]",
                            previous.disabled.join(", ")
                        ));
                        out.disabled = previous.disabled.clone();
                    }
                },
                _ => errors.push(format!(
                    "`kernel.{key}` is not a known key (known: disabled, reconcile, runtimes)"
                )),
            }
        }
    }

    // logging
    if let Some(m) = section("logging", &mut errors) {
        if let Some(v) = m.get("level") {
            match v.as_str() {
                Some(l) if LOG_LEVELS.contains(&l) => out.logging.level = l.to_string(),
                _ => {
                    errors.push(format!(
                        "`logging.level` must be one of {}, found {}; keeping {}",
                        LOG_LEVELS.join(", "),
                        describe(v),
                        previous.logging.level
                    ));
                    out.logging.level = previous.logging.level.clone();
                }
            }
        }
        match m.get("levels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(levels)) => {
                for (module, v) in levels {
                    match v.as_str() {
                        Some(l) if LOG_LEVELS.contains(&l) => {
                            out.logging.levels.insert(module.clone(), l.to_string());
                        }
                        _ => errors.push(format!(
                            "`logging.levels.{module}` must be one of {}, found {}",
                            LOG_LEVELS.join(", "),
                            describe(v)
                        )),
                    }
                }
            }
            Some(other) => errors.push(format!(
                "`logging.levels` must be a mapping of module id to level, found {}",
                describe(other)
            )),
        }
    }
    (out, errors)
}

/// `kernel.disabled` as sorted, distinct ids (`null` is the empty list); Err: what was found
/// instead of a list of non-empty strings.
fn disabled_ids(v: &Value) -> Result<Vec<String>, String> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(describe(other)),
    };
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str().map(str::trim) {
            Some(id) if !id.is_empty() => ids.push(id.to_string()),
            _ => return Err(format!("the item {}", describe(item))),
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn mode_name(m: EnforcementMode) -> &'static str {
    match m {
        EnforcementMode::Strict => "strict",
        EnforcementMode::Warn => "warn",
        EnforcementMode::Off => "off",
    }
}

/// A short description of a value for error messages: `"abc"`, `12`, `a mapping`, …
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Interpolation

/// Expands `${VAR}` and `${VAR:-default}` in every string of `value` from `env` (`$${` is a
/// literal `${`). An unset variable without a default is an error naming the variable and where
/// it is (JSON pointer inside the section); every such error is returned.
pub fn interpolate(value: &Value, env: &BTreeMap<String, String>) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let out = interp_walk(value, env, "", &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn interp_walk(
    v: &Value,
    env: &BTreeMap<String, String>,
    ptr: &str,
    errors: &mut Vec<String>,
) -> Value {
    match v {
        Value::String(s) => match interpolate_str(s, env) {
            Ok(s) => Value::String(s),
            Err(e) => {
                errors.push(format!("{}: {e}", if ptr.is_empty() { "/" } else { ptr }));
                v.clone()
            }
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| interp_walk(x, env, &format!("{ptr}/{i}"), errors))
                .collect(),
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let p = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                    (k.clone(), interp_walk(x, env, &p, errors))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Expands one string (see [`interpolate`]).
pub fn interpolate_str(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let Some(end) = t.find('}') else {
                return Err(format!("`{tail}` has no closing `}}`"));
            };
            let inner = &t[..end];
            let (name, default) = match inner.find(":-") {
                Some(j) => (&inner[..j], Some(&inner[j + 2..])),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("`${{{inner}}}` is not a valid variable reference"));
            }
            match (env.get(name), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "`${{{name}}}` is not set in the kernel's environment (set it, or write `${{{name}:-default}}`)"
                    ))
                }
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Canonical text

/// `value` with every mapping's keys sorted (the canonical form used for fingerprints and diffs).
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The canonical text rendering of a section as written: block YAML with sorted keys.
pub fn section_text(value: &Value) -> String {
    yaml::render(&canonical(value))
}

// ---------------------------------------------------------------------------------------------
// Key paths

const UNSAFE_SEGMENTS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// The value at a dot-separated key path (no index syntax); `None` when missing, when a
/// non-mapping is in the way, or when a segment is `__proto__`, `constructor` or `prototype`.
pub fn get_path<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = root;
    for seg in key.split('.') {
        if UNSAFE_SEGMENTS.contains(&seg) {
            return None;
        }
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// Writes `value` at a key path, replacing missing or non-mapping intermediates with `{}`.
pub fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = key.split('.').collect();
    if let Some(bad) = segs.iter().find(|s| UNSAFE_SEGMENTS.contains(s)) {
        return Err(format!("Unsafe key: {bad}"));
    }
    if !root.is_object() {
        *root = Value::Object(Map::new());
    }
    let mut cur = root;
    let (last, parents) = match segs.split_last() {
        Some(x) => x,
        None => return Err("the key is empty".into()),
    };
    for seg in parents {
        let Value::Object(m) = cur else {
            return Err(format!("cannot write under `{key}`"));
        };
        let slot = m
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        cur = slot;
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.to_string(), value);
            Ok(())
        }
        _ => Err(format!("cannot write under `{key}`")),
    }
}

/// Removes the value at a key path; false when there was none.
pub fn remove_path(root: &mut Value, key: &str) -> bool {
    let segs: Vec<&str> = key.split('.').collect();
    let Some((last, parents)) = segs.split_last() else {
        return false;
    };
    let mut cur = root;
    for seg in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(*seg)) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    cur.as_object_mut()
        .is_some_and(|m| m.shift_remove(*last).is_some())
}

/// Coercion of `config set` / `config.set` string values: `{…}`/`[…]` parsed
/// as JSON when they parse, `true`/`false`/`null` literals, numbers (`42`, `1e3`, `0x10`), else
/// the string itself.
pub fn coerce(s: &str) -> Value {
    let t = s.trim();
    if (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']')) {
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            return v;
        }
        return Value::String(s.to_string());
    }
    match s {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    parse_number(t).unwrap_or_else(|| Value::String(s.to_string()))
}

fn parse_number(t: &str) -> Option<Value> {
    if t.is_empty() {
        return None;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(d) = t.strip_prefix(prefix) {
            return u64::from_str_radix(d, radix).ok().map(Value::from);
        }
    }
    if !t
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    let f = t.parse::<f64>().ok().filter(|f| f.is_finite())?;
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Some(Value::from(f as i64));
    }
    serde_json::Number::from_f64(f).map(Value::Number)
}

/// the reference kernel's behaviour `checkConfig`: a module may touch `key` only when it is not empty, `.` or `..`,
/// has no `..`/`__proto__`/`constructor`/`prototype` segment, and its first segment is the
/// module's own `configKey`. The error is the sentence the kernel call answers with.
pub fn check_scope(key: &str, caller_config_key: Option<&str>, write: bool) -> Result<(), String> {
    let verb = if write { "write" } else { "read" };
    let denied = || format!("Security violation: not permitted to {verb} config key \"{key}\"");
    if key.is_empty() || key == "." || key == ".." {
        return Err(denied());
    }
    let segs: Vec<&str> = key.split('.').collect();
    if segs
        .iter()
        .any(|s| *s == ".." || UNSAFE_SEGMENTS.contains(s))
    {
        return Err(denied());
    }
    match caller_config_key {
        Some(k) if segs.first() == Some(&k) => Ok(()),
        _ => Err(denied()),
    }
}

/// The first segment of `key` is a kernel section (`security`, `kernel`, `logging`,
/// `lifecycle`, `cluster`) that modules may not write.
pub fn is_protected(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or("");
    KERNEL_SECTIONS.contains(&first)
}

// ---------------------------------------------------------------------------------------------
// JSON Schema

/// A compiled module config schema.
pub struct Schema {
    pub schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema")
            .field("schema", &self.schema)
            .finish()
    }
}

/// Parses a `.json` schema, checks it against the draft 2020-12 meta-schema and compiles it.
pub fn load_schema(bytes: &[u8]) -> Result<Schema, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let schema: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the schema is not valid JSON: {e}"))?;
    if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
        return Err(format!(
            "the schema is not a valid draft 2020-12 JSON Schema: {}: {e}",
            pointer(&e.instance_path().to_string())
        ));
    }
    let validator = jsonschema::draft202012::new(&schema)
        .map_err(|e| format!("the schema cannot be compiled: {e}"))?;
    Ok(Schema { schema, validator })
}

impl Schema {
    /// Fills `default`s (recursively through `properties` and `items`), coerces scalar types
    /// where the schema names one (`"8080"` → 8080), then validates. Errors read
    /// "/pointer: expected …, found …".
    pub fn apply(&self, section: &Value) -> Result<Value, Vec<String>> {
        let mut v = section.clone();
        fill_defaults(&self.schema, &mut v);
        let errors: Vec<String> = self
            .validator
            .iter_errors(&v)
            .map(|e| format_error(&e))
            .collect();
        if errors.is_empty() {
            Ok(v)
        } else {
            Err(errors)
        }
    }
}

fn pointer(p: &str) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        p.to_string()
    }
}

fn format_error(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    let at = pointer(&e.instance_path().to_string());
    let found = describe(e.instance());
    match e.kind() {
        K::Type { kind } => {
            let expected = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(ts) => {
                    let v: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
                    v.join(" or ")
                }
            };
            format!("{at}: expected {expected}, found {found}")
        }
        K::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            let base = if at == "/" { String::new() } else { at.clone() };
            format!("{base}/{name}: expected a value (the key is required), found nothing")
        }
        K::Minimum { limit } => format!("{at}: expected at least {limit}, found {found}"),
        K::Maximum { limit } => format!("{at}: expected at most {limit}, found {found}"),
        K::ExclusiveMinimum { limit } => {
            format!("{at}: expected more than {limit}, found {found}")
        }
        K::ExclusiveMaximum { limit } => {
            format!("{at}: expected less than {limit}, found {found}")
        }
        K::MinLength { limit } => {
            format!("{at}: expected at least {limit} characters, found {found}")
        }
        K::MaxLength { limit } => {
            format!("{at}: expected at most {limit} characters, found {found}")
        }
        K::Pattern { pattern } => {
            format!("{at}: expected text matching `{pattern}`, found {found}")
        }
        K::Enum { options } => format!("{at}: expected one of {options}, found {found}"),
        K::Constant { expected_value } => {
            format!("{at}: expected {expected_value}, found {found}")
        }
        K::AdditionalProperties { unexpected } => format!(
            "{at}: expected no other keys, found {}",
            unexpected
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("{at}: expected {}, found {found}", expectation(e)),
    }
}

/// The keyword-specific part of a validation message, phrased as an expectation.
fn expectation(e: &jsonschema::ValidationError<'_>) -> String {
    let msg = e.to_string();
    let kw = e.kind().keyword();
    // The library's message mentions the instance first ("X is not …"); keep what follows it.
    let inst = e.instance().to_string();
    let rest = msg
        .strip_prefix(&inst)
        .map(|r| r.trim().to_string())
        .unwrap_or(msg);
    format!("a value satisfying `{kw}` ({rest})")
}

fn coerce_to(ty: &str, v: &Value) -> Option<Value> {
    match (ty, v) {
        ("integer", Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        ("number", Value::String(s)) => match parse_number(s.trim())? {
            n @ Value::Number(_) => Some(n),
            _ => None,
        },
        ("boolean", Value::String(s)) => match s.as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ("string", Value::Number(n)) => Some(Value::String(n.to_string())),
        ("string", Value::Bool(b)) => Some(Value::String(b.to_string())),
        _ => None,
    }
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn fill_defaults(schema: &Value, v: &mut Value) {
    let Value::Object(s) = schema else { return };
    if let Some(Value::String(ty)) = s.get("type") {
        if !type_matches(ty, v) {
            if let Some(c) = coerce_to(ty, v) {
                *v = c;
            }
        }
    }
    if let (Some(Value::Object(props)), Value::Object(obj)) = (s.get("properties"), &mut *v) {
        for (name, sub) in props {
            if !obj.contains_key(name) {
                if let Some(d) = sub.get("default") {
                    obj.insert(name.clone(), d.clone());
                }
            }
            if let Some(child) = obj.get_mut(name) {
                fill_defaults(sub, child);
            }
        }
    }
    if let (Some(items), Value::Array(arr)) = (s.get("items"), &mut *v) {
        if items.is_object() {
            for x in arr.iter_mut() {
                fill_defaults(items, x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_empty_and_top_level() {
        assert_eq!(parse(b"").unwrap(), json!({}));
        assert_eq!(parse(b"~\n").unwrap(), json!({}));
        assert!(parse(b"- a\n").is_err());
        assert!(parse(b"a: 1\na: 2\n")
            .unwrap_err()
            .message
            .contains("line 2"));
    }

    #[test]
    fn kernel_defaults_and_errors() {
        let (k, e) = kernel_config(&json!({}), &KernelConfig::default());
        assert!(e.is_empty());
        assert_eq!(k, KernelConfig::default());
        let root = json!({
            "lifecycle": {"healthIntervalMs": 5000, "pingTimeoutMs": 5, "maxRestarts": 0, "bogus": 1},
            "security": {"enforcementMode": "warn"},
            "kernel": {"reconcile": "manual", "runtimes": {"deno": "/opt/deno"}},
            "logging": {"level": "debug", "levels": {"m": "trace"}}
        });
        let mut prev = KernelConfig::default();
        prev.lifecycle.ping_timeout_ms = 7000;
        let (k, e) = kernel_config(&root, &prev);
        assert_eq!(k.lifecycle.health_interval_ms, 5000);
        assert_eq!(k.lifecycle.ping_timeout_ms, 7000);
        assert_eq!(k.lifecycle.max_restarts, 0);
        assert_eq!(k.enforcement_mode, EnforcementMode::Warn);
        assert_eq!(k.reconcile, ReconcileMode::Manual);
        assert_eq!(k.runtimes["deno"], "/opt/deno");
        assert_eq!(k.logging.level, "debug");
        assert_eq!(k.logging.levels["m"], "trace");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].contains("`lifecycle.bogus`"), "{e:?}");
        assert!(e[0].contains("`lifecycle.pingTimeoutMs` must be an integer of at least 1000, found 5; keeping 7000"), "{e:?}");
        let (_, e) = kernel_config(
            &json!({"security": {"enforcementMode": "lax"}, "lifecycle": 3}),
            &prev,
        );
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn kernel_disabled_is_a_list_of_ids() {
        let cfg = |v: Value| json!({"kernel": {"disabled": v}});
        let (k, e) = kernel_config(&cfg(json!(["b", "a", "b"])), &KernelConfig::default());
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(k.disabled, vec!["a", "b"]);
        let (k, e) = kernel_config(&cfg(Value::Null), &KernelConfig::default());
        assert!(e.is_empty() && k.disabled.is_empty());
        let prev = KernelConfig {
            disabled: vec!["x".into()],
            ..KernelConfig::default()
        };
        for (bad, found) in [
            (json!("a"), "found \"a\""),
            (json!(["a", 3]), "found the item 3"),
            (json!([""]), "found the item \"\""),
            (json!({"a": true}), "found a mapping"),
        ] {
            let (k, e) = kernel_config(&cfg(bad.clone()), &prev);
            assert_eq!(k.disabled, vec!["x"], "{bad}: the last good value is kept");
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(
                e[0].starts_with("`kernel.disabled` must be a list of module ids, ")
                    && e[0].contains(found)
                    && e[0].ends_with("; keeping [x]"),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn interpolation() {
        let env: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(interpolate_str("x${A}y", &env).unwrap(), "x1y");
        assert_eq!(interpolate_str("${B:-d}", &env).unwrap(), "d");
        assert_eq!(interpolate_str("${A:-d}", &env).unwrap(), "1");
        assert_eq!(interpolate_str("$${A} $5 $", &env).unwrap(), "${A} $5 $");
        assert!(interpolate_str("${B}", &env)
            .unwrap_err()
            .contains("`${B}` is not set"));
        assert!(interpolate_str("${A", &env).is_err());
        assert!(interpolate_str("${1A}", &env).is_err());
        let v = json!({"k": {"t": "${NOPE}"}, "l": ["${A}"]});
        let e = interpolate(&v, &env).unwrap_err();
        assert!(e[0].starts_with("/k/t: "), "{e:?}");
        let env2: BTreeMap<String, String> = [
            ("NOPE".to_string(), "x".to_string()),
            ("A".to_string(), "1".to_string()),
        ]
        .into();
        assert_eq!(
            interpolate(&v, &env2).unwrap(),
            json!({"k": {"t": "x"}, "l": ["1"]})
        );
    }

    #[test]
    fn key_paths() {
        let mut v = json!({"a": {"b": 1}});
        assert_eq!(get_path(&v, "a.b"), Some(&json!(1)));
        assert_eq!(get_path(&v, "a.c"), None);
        assert_eq!(get_path(&v, "a.__proto__"), None);
        set_path(&mut v, "a.b.c", json!(2)).unwrap();
        assert_eq!(v, json!({"a": {"b": {"c": 2}}}));
        assert!(set_path(&mut v, "a.constructor", json!(1))
            .unwrap_err()
            .contains("Unsafe key"));
        set_path(&mut v, "x..y", json!(1)).unwrap();
        assert_eq!(get_path(&v, "x..y"), Some(&json!(1)));
        assert!(remove_path(&mut v, "a.b.c"));
        assert!(!remove_path(&mut v, "a.b.c"));
    }

    #[test]
    fn coercion() {
        assert_eq!(coerce("8080"), json!(8080));
        assert_eq!(coerce("1e3"), json!(1000));
        assert_eq!(coerce("0x10"), json!(16));
        assert_eq!(coerce("1.5"), json!(1.5));
        assert_eq!(coerce("true"), json!(true));
        assert_eq!(coerce("null"), Value::Null);
        assert_eq!(coerce("[1,2]"), json!([1, 2]));
        assert_eq!(coerce("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(coerce("[oops"), json!("[oops"));
        assert_eq!(coerce(""), json!(""));
        assert_eq!(coerce("inf"), json!("inf"));
        assert_eq!(coerce("abc"), json!("abc"));
    }

    #[test]
    fn scope() {
        assert!(check_scope("k.port", Some("k"), false).is_ok());
        assert!(check_scope("k", Some("k"), true).is_ok());
        for bad in ["", ".", "..", "k.__proto__.x", "other.x"] {
            assert!(check_scope(bad, Some("k"), false).is_err(), "{bad}");
        }
        assert!(check_scope("k", None, false).is_err());
        assert!(check_scope("o", Some("k"), true)
            .unwrap_err()
            .contains("not permitted to write config key \"o\""));
        assert!(is_protected("security.enforcementMode"));
        assert!(is_protected("kernel"));
        assert!(!is_protected("gateway.x"));
    }

    #[test]
    fn canonical_text_sorts_keys() {
        let a = section_text(&json!({"b": 1, "a": {"d": 1, "c": 2}}));
        let b = section_text(&json!({"a": {"c": 2, "d": 1}, "b": 1}));
        assert_eq!(a, b);
        assert!(a.starts_with("a:"));
    }

    #[test]
    fn schema_defaults_coercion_errors() {
        let s = load_schema(
            br#"{"type":"object","properties":{"port":{"type":"integer","default":80},"host":{"type":"string","default":"x"},"auth":{"type":"object","default":{},"properties":{"enabled":{"type":"boolean","default":false}}}},"required":["port"]}"#,
        )
        .unwrap();
        assert_eq!(
            s.apply(&json!({})).unwrap(),
            json!({"port": 80, "host": "x", "auth": {"enabled": false}})
        );
        assert_eq!(
            s.apply(&json!({"port": "8080"})).unwrap()["port"],
            json!(8080)
        );
        let e = s.apply(&json!({"port": "abc"})).unwrap_err();
        assert_eq!(
            e,
            vec!["/port: expected integer, found \"abc\"".to_string()]
        );
        assert!(load_schema(b"{").is_err());
        assert!(load_schema(
            br#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object"}"#
        )
        .is_ok());
        let remote = load_schema(br#"{"$ref":"https://example.invalid/s.json"}"#);
        assert!(
            remote.is_err(),
            "no network access: a remote $ref cannot compile"
        );
        assert!(load_schema(br#"{"type": 5}"#)
            .unwrap_err()
            .contains("draft 2020-12"));
    }
}
