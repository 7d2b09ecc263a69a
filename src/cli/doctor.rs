//! `pons config doctor [--fix] [--json]`: config.yaml diagnosed against the kernel's sections and
//! the modules present in `modules/` (approved or not): YAML syntax, kernel keys that are unknown
//! or have invalid values, module sections that fail `${VAR}` interpolation or their JSON Schema,
//! schemas that cannot be used, and sections no module uses.
//!
//! `--fix` repairs only what is safe: an invalid value that has a default is replaced by that
//! default (a minimal edit under the config.yaml lock; a value written as `${VAR}` is never
//! replaced). Nothing is deleted — never a kernel section (the reference deleted `security`,
//! the reference kernel's behaviour), and not a section no module uses either (it may belong to a module that is
//! installed later): those are reported with the command that removes them.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use pons_reconciler::config::{self as rconfig, KernelConfig, KERNEL_SECTIONS};
use pons_reconciler::manifest::Manifest;
use serde::Serialize;
use serde_json::{json, Value};

use super::config::{kernel_defaults, read_text, split_schema_error};
use super::modules::{scan, Found};
use super::{offline, output};
use crate::home::Home;

/// Sections owned by the kernel, plus `cluster` (reserved for the cluster configuration): never
/// reported as unknown, never removed.
fn is_kernel_section(key: &str) -> bool {
    KERNEL_SECTIONS.contains(&key) || key == "cluster"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    /// The kernel reports it (an invalid value, a module blocked by its section): exit 1.
    Error,
    /// Worth knowing, harmless to the kernel.
    Warning,
}

/// One finding. `kind` is one of `yaml`, `invalid`, `unknownKey`, `interpolation`, `schema`,
/// `unvalidated`, `unknownSection`, `file` (a file the configuration names cannot be used).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Issue {
    /// Dotted key path; `None` for the file as a whole.
    path: Option<String>,
    section: Option<String>,
    module: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    severity: Severity,
    message: String,
    fixable: bool,
    /// The value `--fix` writes (the default at that path).
    #[serde(skip_serializing_if = "Option::is_none")]
    suggested_value: Option<Value>,
    /// What the operator can do when `--fix` cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

impl Issue {
    fn new(kind: &'static str, severity: Severity, path: Option<String>, message: String) -> Issue {
        Issue {
            section: path
                .as_deref()
                .map(|p| p.split('.').next().unwrap_or(p).to_string()),
            path,
            module: None,
            kind,
            severity,
            message,
            fixable: false,
            suggested_value: None,
            hint: None,
        }
    }

    fn hint(mut self, hint: String) -> Issue {
        self.hint = Some(hint);
        self
    }

    fn fix(mut self, value: Option<Value>) -> Issue {
        self.fixable = value.is_some();
        self.suggested_value = value;
        self
    }
}

pub(super) fn run(home: &Home, fix: bool, json: bool) -> anyhow::Result<ExitCode> {
    super::config::require_home(home)?;
    let path = home.config_yaml();
    let modules = scan(home)?;
    let env = offline::env();
    let initial = diagnose(&read_text(home)?, &modules, &env);
    let mut fixed: Vec<Value> = Vec::new();
    let issues = if fix && initial.iter().any(|i| i.fixable) {
        crate::store::update_config_text(home, |current| {
            // Diagnosed again under the lock: the file may have changed since.
            let before = diagnose(current, &modules, &env);
            let root = rconfig::parse(current.as_bytes()).unwrap_or(Value::Null);
            let mut text = current.to_string();
            for i in before.iter().filter(|i| i.fixable) {
                let (Some(p), Some(v)) = (&i.path, &i.suggested_value) else {
                    continue;
                };
                text = crate::store::set_config_key(&text, p, v)?;
                fixed.push(json!({"path": p, "value": v, "was": rconfig::get_path(&root, p)}));
            }
            let added: Vec<String> = diagnose(&text, &modules, &env)
                .into_iter()
                .filter(|a| a.severity == Severity::Error && !before.contains(a))
                .map(|a| a.message)
                .collect();
            if !added.is_empty() {
                anyhow::bail!(
                    "fixing {} would add problems ({}); nothing was written, fix it by hand",
                    path.display(),
                    added.join("; ")
                );
            }
            Ok(text)
        })?;
        diagnose(&read_text(home)?, &modules, &env)
    } else {
        initial
    };
    let mut issues = issues;
    issues.extend(cluster_file_issues(home, &read_text(home)?, &env));
    let errors = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count();
    if json {
        output::print_json(&json!({
            "file": path, "valid": errors == 0, "issues": issues, "fixed": fixed,
        }))?;
    } else {
        print!("{}", render(&path, &issues, &fixed, fix));
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One error of config.yaml: the dotted key it is about (when it is about one) and the sentence.
pub(super) type KeyError = (Option<String>, String);

/// The errors of config.yaml as `text`, judged against the modules present, approved or not.
pub(super) fn errors_in(home: &Home, text: &str) -> anyhow::Result<Vec<KeyError>> {
    let modules = scan(home)?;
    Ok(diagnose(text, &modules, &offline::env())
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| (i.path, i.message))
        .collect())
}

/// Top-level sections of config.yaml as `text` that no module present uses (a typo such as
/// `countr` for `counter`, or a module not installed yet): warnings, never errors.
pub(super) fn unused_sections(home: &Home, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let modules = scan(home)?;
    let root = rconfig::parse(text.as_bytes()).unwrap_or(Value::Null);
    Ok(unknown_sections(&root, &modules)
        .into_iter()
        .filter_map(|i| i.path.clone().map(|p| (p, i.message)))
        .collect())
}

/// The errors `new_text` has and `old_text` has not: an edit (`config edit`, `config reset`)
/// may fix or keep errors, never add one.
pub(super) fn added_errors(
    home: &Home,
    old_text: &str,
    new_text: &str,
) -> anyhow::Result<Vec<KeyError>> {
    let before = errors_in(home, old_text)?;
    Ok(errors_in(home, new_text)?
        .into_iter()
        .filter(|e| !before.contains(e))
        .collect())
}

/// Everything wrong with config.yaml as `text`, against `modules`.
fn diagnose(text: &str, modules: &[Found], env: &BTreeMap<String, String>) -> Vec<Issue> {
    let root = match rconfig::parse(text.as_bytes()) {
        Ok(v) => v,
        Err(e) => {
            return vec![Issue::new(
                "yaml",
                Severity::Error,
                None,
                format!("config.yaml is not valid YAML: {e}"),
            )
            .hint("fix it by hand or with `pons config edit`".into())]
        }
    };
    let mut out = kernel_issues(&root);
    out.extend(cluster_issues(&root, env));
    out.extend(module_issues(&root, modules, env));
    out.extend(unknown_sections(&root, modules));
    out
}

/// The text between the first pair of backticks: the key path every kernel-section error names.
fn backticked(e: &str) -> Option<String> {
    let rest = &e[e.find('`')? + 1..];
    Some(rest[..rest.find('`')?].to_string())
}

/// Unknown keys and invalid values in the kernel's sections (the kernel's own check). An invalid
/// value is fixable when the key has a default; a whole section that is not a mapping becomes `{}`.
fn kernel_issues(root: &Value) -> Vec<Issue> {
    let (_, errors) = rconfig::kernel_config(root, &KernelConfig::default());
    let defaults = kernel_defaults(&pons_reconciler::Desired::default());
    errors
        .into_iter()
        .map(|e| {
            let path = backticked(&e);
            // "keeping <value>" describes a running kernel; here it is noise.
            let message = e.split("; keeping ").next().unwrap_or(&e).to_string();
            if e.contains("is not a known key") {
                let p = path.clone().unwrap_or_default();
                return Issue::new("unknownKey", Severity::Error, path, message).hint(format!(
                    "check its spelling; `pons config reset {p}` removes it"
                ));
            }
            let fix = path.as_deref().and_then(|p| {
                if p.contains('.') {
                    rconfig::get_path(&defaults, p).cloned()
                } else {
                    Some(json!({}))
                }
            });
            let issue = Issue::new("invalid", Severity::Error, path.clone(), message);
            if fix.is_some() {
                issue.fix(fix)
            } else {
                let p = path.unwrap_or_default();
                issue.hint(format!(
                    "set a valid value with `pons config set {p} <value>`"
                ))
            }
        })
        .collect()
}

/// Problems of the `cluster` section (the kernel's own check, which never quotes a credential).
/// None is fixable: a URL or credentials have no default.
fn cluster_issues(root: &Value, env: &BTreeMap<String, String>) -> Vec<Issue> {
    // The host name only gives the default node name, which is always valid.
    let Err(errors) = pons_reconciler::cluster::parse(root, env, "host") else {
        return Vec::new();
    };
    errors
        .into_iter()
        .map(|e| {
            let path = backticked(&e);
            let message = e.split("; no cluster connection").next().unwrap_or(&e).to_string();
            Issue::new("invalid", Severity::Error, path, message)
                .hint("fix it with `pons config edit`; the kernel keeps its last good cluster section until then".into())
        })
        .collect()
}

/// The `cluster.tls` files that cannot be used (missing, unreadable, without the PEM block they
/// need): checked here and before each connection attempt, never by `config edit` (a file may
/// be copied after the key is written).
fn cluster_file_issues(home: &Home, text: &str, env: &BTreeMap<String, String>) -> Vec<Issue> {
    let Ok(root) = rconfig::parse(text.as_bytes()) else {
        return Vec::new();
    };
    let Ok(Some(cluster)) = pons_reconciler::cluster::parse(&root, env, "host") else {
        return Vec::new();
    };
    crate::cluster::tls::check_files(&cluster.config, &home.root)
        .into_iter()
        .map(|p| {
            let key = p.key;
            Issue::new(
                "file",
                Severity::Error,
                Some(key.to_string()),
                format!("`{key}` ({}) {}", p.path.display(), p.why),
            )
            .hint(format!(
                "put the PEM file there or set `{key}` to its path with `pons config set {key} <path>` (a relative path is taken from the home directory); the kernel cannot connect until then"
            ))
        })
        .collect()
}

/// Decodes a JSON pointer (`/a/b~1c`) into its segments.
fn pointer_segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The schema's `default` at `segs`, through `properties` only.
fn default_at<'a>(schema: &'a Value, segs: &[String]) -> Option<&'a Value> {
    let mut s = schema;
    for seg in segs {
        s = s.get("properties")?.get(seg)?;
    }
    s.get("default")
}

/// The value at `segs` inside `v`.
fn value_at<'a>(v: &'a Value, segs: &[String]) -> Option<&'a Value> {
    segs.iter().try_fold(v, |v, s| v.as_object()?.get(s))
}

/// Whether a value (or anything in it) is written with `${…}`.
fn interpolated(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${"),
        Value::Array(a) => a.iter().any(interpolated),
        Value::Object(m) => m.values().any(interpolated),
        _ => false,
    }
}

/// The section of every module with a `configKey`: `${VAR}` interpolation, then its JSON Schema.
fn module_issues(root: &Value, modules: &[Found], env: &BTreeMap<String, String>) -> Vec<Issue> {
    let mut out = Vec::new();
    for f in modules {
        let Ok(m) = &f.manifest else { continue };
        // A configKey naming a kernel section blocks the module; `pons plan` says so.
        let Some(key) = m.config_key.as_deref().filter(|k| !is_kernel_section(k)) else {
            continue;
        };
        let at = |segs: &[String]| -> String {
            std::iter::once(key.to_string())
                .chain(segs.iter().cloned())
                .collect::<Vec<_>>()
                .join(".")
        };
        let with_module = |mut i: Issue| {
            i.section = Some(key.to_string());
            i.module = Some(m.id.clone());
            i
        };
        let raw = root.get(key);
        let mut interpolation_failed = false;
        // When interpolation fails the schema still checks the values written without `${…}`.
        let section = match raw.map(|v| rconfig::interpolate(v, env)) {
            None => json!({}),
            Some(Ok(v)) => v,
            Some(Err(errors)) => {
                interpolation_failed = true;
                for e in errors {
                    let (pointer, _, _) = split_schema_error(&e);
                    let segs = pointer_segments(pointer.as_deref().unwrap_or("/"));
                    out.push(with_module(
                        Issue::new(
                            "interpolation",
                            Severity::Error,
                            Some(at(&segs)),
                            format!("section `{key}` (module `{}`) at {e}", m.id),
                        )
                        .hint("set the variable in the kernel's environment, or write a default as `${VAR:-default}`".into()),
                    ));
                }
                raw.cloned().unwrap_or_default()
            }
        };
        let schema = match module_schema(f, m) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(why) => {
                out.push(with_module(Issue::new(
                    "unvalidated",
                    Severity::Warning,
                    Some(key.to_string()),
                    format!(
                        "section `{key}` of module `{}` is not validated: {why}",
                        m.id
                    ),
                )));
                continue;
            }
        };
        let Err(errors) = schema.apply(&section) else {
            continue;
        };
        for e in errors {
            let (pointer, _, _) = split_schema_error(&e);
            let segs = pointer_segments(pointer.as_deref().unwrap_or("/"));
            let settable = segs.iter().all(|s| !s.is_empty() && !s.contains('.'));
            let written_with_var = raw
                .and_then(|r| value_at(r, &segs))
                .is_some_and(interpolated);
            if written_with_var && interpolation_failed {
                continue; // its value is unknown; the interpolation error says why
            }
            let fix = default_at(&schema.schema, &segs)
                .filter(|_| settable && !written_with_var)
                .cloned();
            let issue = Issue::new(
                "schema",
                Severity::Error,
                Some(at(&segs)),
                format!("section `{key}` (module `{}`) at {e}", m.id),
            );
            let issue = if fix.is_some() {
                issue.fix(fix)
            } else {
                let p = at(&segs);
                issue.hint(format!(
                    "set a valid value with `pons config set {p} <value>`"
                ))
            };
            out.push(with_module(issue));
        }
    }
    out
}

/// A module's JSON Schema, found as the kernel finds it: `Ok(None)` without `configSchema`,
/// `Err(why)` when it cannot be used (the section is then not validated).
pub(super) fn module_schema(f: &Found, m: &Manifest) -> Result<Option<rconfig::Schema>, String> {
    let Some(requested) = &m.config_schema else {
        return Ok(None);
    };
    let dir = std::fs::canonicalize(&f.path)
        .map_err(|e| format!("its directory cannot be resolved ({e})"))?;
    let real = std::fs::canonicalize(f.path.join(requested))
        .map_err(|_| format!("config schema `{requested}` not found"))?;
    if !real.starts_with(&dir) {
        return Err(format!(
            "config schema `{requested}` escapes the module directory"
        ));
    }
    if real.extension().is_none_or(|e| e != "json") {
        return Err(format!(
            "config schema `{requested}` is not a .json JSON Schema (.ts/.js schemas are unsupported)"
        ));
    }
    let bytes = std::fs::read(&real)
        .map_err(|e| format!("config schema `{requested}` cannot be read ({e})"))?;
    rconfig::load_schema(&bytes)
        .map(Some)
        .map_err(|e| format!("config schema `{requested}`: {e}"))
}

/// Top-level sections that are neither the kernel's nor any present module's (`configKey` or
/// `configDependencies`, read leniently so that a module with an invalid manifest still counts).
fn unknown_sections(root: &Value, modules: &[Found]) -> Vec<Issue> {
    let mut used = BTreeSet::new();
    for f in modules {
        if let Ok(m) = &f.manifest {
            used.extend(m.config_key.iter().cloned());
            used.extend(m.config_dependencies.iter().cloned());
        }
        if let Some(j) = &f.json {
            used.extend(
                j.get("configKey")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            );
            if let Some(deps) = j.get("configDependencies").and_then(Value::as_array) {
                used.extend(deps.iter().filter_map(|d| d.as_str().map(str::to_string)));
            }
        }
    }
    root.as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .filter(|k| !is_kernel_section(k) && !used.contains(*k))
        .map(|k| {
            Issue::new(
                "unknownSection",
                Severity::Warning,
                Some(k.clone()),
                format!("section `{k}` is used by no module in modules/ (no module.json has configKey \"{k}\")"),
            )
            .hint(format!(
                "kept as it is; if it is left over, `pons config reset {k}` removes it"
            ))
        })
        .collect()
}

/// The human report.
fn render(path: &std::path::Path, issues: &[Issue], fixed: &[Value], fix: bool) -> String {
    let mut out = format!("Config doctor: {}\n", path.display());
    for f in fixed {
        out.push_str(&format!(
            "  ✓ fixed {}: {} → {} (the default)\n",
            f["path"].as_str().unwrap_or("?"),
            f["was"],
            f["value"]
        ));
    }
    for i in issues {
        let mark = match i.severity {
            Severity::Error => "✗",
            Severity::Warning => "⚠",
        };
        out.push_str(&format!(
            "  {mark} {}: {}\n",
            i.path.as_deref().unwrap_or("config.yaml"),
            i.message
        ));
        if let Some(v) = &i.suggested_value {
            out.push_str(&format!(
                "      fixable: `pons config doctor --fix` sets it to {v} (its default)\n"
            ));
        } else if let Some(h) = &i.hint {
            out.push_str(&format!("      {h}\n"));
        }
    }
    let errors = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count();
    let warnings = issues.len() - errors;
    let warned = match warnings {
        0 => String::new(),
        1 => " (1 warning)".into(),
        n => format!(" ({n} warnings)"),
    };
    if errors == 0 {
        out.push_str(&format!("✓ Configuration is valid{warned}\n"));
    } else {
        let fixable = issues.iter().filter(|i| i.fixable).count();
        out.push_str(&format!(
            "{errors} problem{} remain{}{warned}",
            if errors == 1 { "" } else { "s" },
            if errors == 1 { "s" } else { "" }
        ));
        if fixable > 0 && !fix {
            out.push_str(&format!(
                "; {fixable} can be fixed with `pons config doctor --fix`"
            ));
        }
        out.push_str(".\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Vec<Issue> {
        diagnose(yaml, &[], &BTreeMap::new())
    }

    #[test]
    fn kernel_errors_name_their_key_and_fix_only_with_a_default() {
        let found = issues(
            "lifecycle:\n  pingTimeoutMs: 5\n  bogus: 1\nsecurity:\n  enforcementMode: lax\nlogging:\n  level: loud\n  levels:\n    m: loud\nkernel:\n  reconcile: sometimes\n  runtimes: 3\ncluster:\n  url: nats://x\n",
        );
        let by_path: BTreeMap<&str, &Issue> = found
            .iter()
            .map(|i| (i.path.as_deref().unwrap(), i))
            .collect();
        let v = |p: &str| by_path[p].suggested_value.clone();
        assert_eq!(v("lifecycle.pingTimeoutMs"), Some(json!(10000)));
        assert_eq!(v("security.enforcementMode"), Some(json!("strict")));
        assert_eq!(v("logging.level"), Some(json!("info")));
        assert_eq!(v("kernel.reconcile"), Some(json!("auto")));
        assert_eq!(v("kernel.runtimes"), Some(json!({})));
        assert_eq!(v("logging.levels.m"), None);
        let bogus = by_path["lifecycle.bogus"];
        assert_eq!((bogus.kind, bogus.fixable), ("unknownKey", false));
        assert!(bogus
            .hint
            .as_deref()
            .unwrap()
            .contains("pons config reset lifecycle.bogus"));
        assert!(
            !by_path["lifecycle.pingTimeoutMs"]
                .message
                .contains("keeping"),
            "{:?}",
            by_path["lifecycle.pingTimeoutMs"]
        );
        // `cluster` is the kernel's: not unknown.
        assert!(!by_path.contains_key("cluster"));
        assert!(found.iter().all(|i| i.severity == Severity::Error));
        // A whole section of the wrong type becomes an empty mapping, never removed.
        let found = issues("lifecycle: 3\n");
        assert_eq!(found[0].suggested_value, Some(json!({})));
    }

    #[test]
    fn cluster_errors_name_their_key_never_a_credential_and_are_not_fixable() {
        let found = issues("cluster:\n  url: ws://x:4222\n  credentials: {token: s3cret}\n");
        assert_eq!(found.len(), 1, "{found:?}");
        let i = &found[0];
        assert_eq!(i.path.as_deref(), Some("cluster.url"));
        assert_eq!(
            (i.kind, i.severity, i.fixable),
            ("invalid", Severity::Error, false)
        );
        assert!(i.message.contains("ws://"), "{i:?}");
        assert!(!format!("{i:?}").contains("s3cret"), "{i:?}");
        assert!(issues("cluster:\n  url: nats://x:4222\n").is_empty());
    }

    #[test]
    fn yaml_errors_and_unknown_sections() {
        let found = issues("a: 1\na: 2\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, "yaml");
        assert!(found[0].message.contains("line 2"), "{:?}", found[0]);
        let found = issues("old:\n  x: 1\nsecurity:\n  enforcementMode: strict\n");
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].kind, found[0].severity, found[0].fixable),
            ("unknownSection", Severity::Warning, false)
        );
        assert!(issues("").is_empty());
    }

    #[test]
    fn schema_defaults_and_pointers() {
        let schema = json!({"properties": {"a": {"properties": {"b": {"default": 1}}}, "l": {"items": {"default": 2}}}});
        assert_eq!(
            default_at(&schema, &["a".into(), "b".into()]),
            Some(&json!(1))
        );
        assert_eq!(default_at(&schema, &["l".into(), "0".into()]), None);
        assert_eq!(pointer_segments("/a/b~1c/d~0e"), vec!["a", "b/c", "d~e"]);
        assert!(pointer_segments("/").is_empty());
        assert!(interpolated(&json!({"x": ["${A}"]})));
        assert!(!interpolated(&json!({"x": "$A"})));
        assert_eq!(backticked("`a.b` is bad"), Some("a.b".into()));
        assert_eq!(backticked("no key"), None);
    }

    #[test]
    fn report_counts_problems_and_warnings() {
        let found = issues("lifecycle:\n  pingTimeoutMs: 5\nold: 1\n");
        let text = render(std::path::Path::new("/h/config.yaml"), &found, &[], false);
        assert!(text.contains("✗ lifecycle.pingTimeoutMs:"), "{text}");
        assert!(text.contains("⚠ old:"), "{text}");
        assert!(
            text.ends_with(
                "1 problem remains (1 warning); 1 can be fixed with `pons config doctor --fix`.\n"
            ),
            "{text}"
        );
        let text = render(std::path::Path::new("/h/c"), &[], &[], false);
        assert!(text.ends_with("✓ Configuration is valid\n"), "{text}");
    }
}
