//! `pons config get | set | list | validate`: config.yaml read from the file and written through
//! the locked read-modify-write of `store` (a minimal edit that keeps the operator's other lines);
//! no kernel needed, and a running one sees the change through its watcher. `doctor`, `edit` and
//! `reset` have files of their own and share the checks here.

use std::process::ExitCode;

use pons_reconciler::desired::BlockReason;
use pons_reconciler::Desired;
use serde_json::{json, Value};

use super::args::ConfigCmd;
use super::{doctor, edit, offline, output, reset};
use crate::home::Home;

pub fn run(home: &Home, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Get { key, json } => get(home, &key, json),
        ConfigCmd::Set { key, value, json } => set(home, &key, &value, json),
        ConfigCmd::List { section, json } => list(home, section.as_deref(), json),
        ConfigCmd::Validate(f) => validate(home, f.json),
        ConfigCmd::Doctor { fix, json } => doctor::run(home, fix, json),
        ConfigCmd::Edit => edit::run(home),
        ConfigCmd::Reset {
            key,
            all,
            yes,
            json,
        } => reset::run(home, key.as_deref(), all, yes, json),
    }
}

/// The kernel's sections with every default filled in, in the file's layout.
pub(super) fn kernel_defaults(desired: &Desired) -> Value {
    let k = &desired.kernel;
    json!({
        "logging": k.logging,
        "lifecycle": k.lifecycle,
        "security": {"enforcementMode": k.enforcement_mode},
        "kernel": {"reconcile": k.reconcile, "runtimes": k.runtimes},
    })
}

fn get(home: &Home, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = offline::read_config(home)?;
    let (value, default) = match offline::get_path(&config, key) {
        Some(v) => (v.clone(), false),
        None => {
            // A kernel key that is not in the file has its default.
            let first = key.split('.').next().unwrap_or_default();
            let from_defaults = pons_reconciler::config::KERNEL_SECTIONS
                .contains(&first)
                .then(|| kernel_defaults(&offline::desired(home)))
                .and_then(|d| offline::get_path(&d, key).cloned());
            match from_defaults {
                Some(v) => (v, true),
                None => anyhow::bail!(
                    "Key \"{key}\" not found in {}; set it with `pons config set {key} <value>`",
                    home.config_yaml().display()
                ),
            }
        }
    };
    if json {
        output::print_json(&value)?;
    } else {
        println!("{}", plain(&value)?);
    }
    if default && !json {
        eprintln!("note: `{key}` is not set in config.yaml; this is the kernel's default.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Strings bare, other scalars as JSON, objects and arrays as indented JSON.
fn plain(v: &Value) -> anyhow::Result<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v)?,
        other => other.to_string(),
    })
}

fn set(home: &Home, key: &str, raw: &str, json: bool) -> anyhow::Result<ExitCode> {
    let value = offline::coerce(raw);
    let path = home.config_yaml();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        anyhow::bail!(
            "config key `{key}` has an empty segment; give a dotted path such as `gateway.port`"
        );
    }
    let mut changed = false;
    crate::store::update_config_text(home, |text| {
        let new_text = crate::store::set_config_key(text, key, &value)?;
        if new_text == text {
            return Ok(new_text);
        }
        // Only problems this edit introduces block it; what was wrong before stays reported
        // by `pons config validate`.
        let new = added_problems(home, text, &new_text);
        if !new.is_empty() {
            anyhow::bail!(
                "setting `{key}` to {value} would make {} invalid ({}); nothing was written",
                path.display(),
                new.join("; ")
            );
        }
        changed = true;
        Ok(new_text)
    })?;
    let section = key.split('.').next().unwrap_or(key);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let unused: Option<String> = super::doctor::unused_sections(home, &text)?
        .into_iter()
        .find(|(s, _)| s == section)
        .map(|(_, message)| message);
    if json {
        output::print_json(
            &json!({"key": key, "value": value, "file": path, "changed": changed, "warning": unused}),
        )?;
    } else if changed {
        println!(
            "Set {key} = {} in {}; {}",
            shown(&value),
            path.display(),
            who_applies(home)
        );
    } else {
        println!("{key} is already {} in {}.", shown(&value), path.display());
    }
    if let (Some(w), false) = (&unused, json) {
        eprintln!("warning: {w}: check the spelling of `{section}`");
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as echoed to the terminal: long ones are cut (the file has all of it).
fn shown(value: &Value) -> String {
    const MAX: usize = 120;
    let text = value.to_string();
    if text.chars().count() <= MAX {
        return text;
    }
    let cut: String = text.chars().take(MAX).collect();
    format!("{cut}… ({} bytes)", text.len())
}

/// Who applies a change to config.yaml: a running kernel in auto mode by itself, one in manual
/// mode on `pons apply`.
fn who_applies(home: &Home) -> &'static str {
    let status = super::remote::call(home, &super::status::request(true), |_| {})
        .ok()
        .flatten();
    match status.as_ref().and_then(|s| s["kernel"]["mode"].as_str()) {
        Some("manual") => "the kernel runs in manual mode: `pons apply` applies it.",
        Some(_) => "the running kernel applies it by itself.",
        None => "the kernel is not running; it applies it when it starts.",
    }
}

/// A home that does not exist is an error naming it.
pub(super) fn require_home(home: &Home) -> anyhow::Result<()> {
    if home.root.is_dir() {
        return Ok(());
    }
    anyhow::bail!(
        "home directory {} does not exist; create it or pass --home",
        home.root.display()
    )
}

/// config.yaml as text (empty when missing).
pub(super) fn read_text(home: &Home) -> anyhow::Result<String> {
    let path = home.config_yaml();
    match std::fs::read(&path) {
        Ok(b) => String::from_utf8(b).map_err(|_| {
            anyhow::anyhow!("{} is not UTF-8 text; fix the file first", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}; check its permissions", path.display()),
    }
}

/// The problems (as sentences) that `new_text` has and `old_text` has not: `config set` may fix
/// or keep problems, never add one.
pub(super) fn added_problems(home: &Home, old_text: &str, new_text: &str) -> Vec<String> {
    let before = config_problems(&offline::desired_with_config(home, old_text));
    config_problems(&offline::desired_with_config(home, new_text))
        .into_iter()
        .filter(|p| !before.contains(p))
        .map(|p| p.error)
        .collect()
}

fn list(home: &Home, section: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let mut config = offline::read_config(home)?;
    // A listing is read over shoulders and pasted into tickets: the cluster's secrets are shown
    // as `<redacted>` (`pons config get cluster.credentials.token` prints one on purpose).
    if let Some(cluster) = config.get_mut("cluster") {
        pons_reconciler::cluster::redact_secrets(cluster);
    }
    let shown = match section {
        Some(s) => offline::get_path(&config, s).ok_or_else(|| {
            anyhow::anyhow!(
                "Section \"{s}\" not found in {}; see `pons config list`",
                home.config_yaml().display()
            )
        })?,
        None => &config,
    };
    if json {
        output::print_json(shown)?;
    } else if shown.as_object().is_some_and(|m| m.is_empty()) {
        println!(
            "{} is empty or missing (kernel defaults apply).",
            home.config_yaml().display()
        );
    } else {
        print!("{}", offline::render_yaml(shown));
    }
    Ok(ExitCode::SUCCESS)
}

/// One problem with config.yaml found while building the desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    /// The section, `None` for errors about the file as a whole or a kernel key.
    section: Option<String>,
    /// The module whose section it is.
    module: Option<String>,
    /// JSON pointer inside the section, when the error names one.
    pointer: Option<String>,
    expected: Option<String>,
    found: Option<String>,
    /// The whole sentence.
    error: String,
}

/// Splits a schema error `"/port: expected integer, found \"abc\""` into its parts.
pub(super) fn split_schema_error(e: &str) -> (Option<String>, Option<String>, Option<String>) {
    let Some((pointer, rest)) = e.split_once(": ").filter(|(p, _)| p.starts_with('/')) else {
        return (None, None, None);
    };
    let (expected, found) = match rest
        .strip_prefix("expected ")
        .and_then(|r| r.split_once(", found "))
    {
        Some((x, f)) => (Some(x.to_string()), Some(f.to_string())),
        None => (None, None),
    };
    (Some(pointer.to_string()), expected, found)
}

/// Problems with config.yaml found while building the desired state: errors about the file and
/// kernel keys, and module sections that fail interpolation or their schema.
fn config_problems(desired: &Desired) -> Vec<Problem> {
    let mut out: Vec<Problem> = desired
        .errors
        .iter()
        .filter(|e| e.file.file_name().is_some_and(|n| n == "config.yaml"))
        .map(|e| Problem {
            section: None,
            module: None,
            pointer: None,
            expected: None,
            found: None,
            error: format!("{}: {}", e.file.display(), e.error),
        })
        .collect();
    for b in &desired.blocked {
        if let BlockReason::InvalidConfig { section, errors } = &b.reason {
            for e in errors {
                let (pointer, expected, found) = split_schema_error(e);
                out.push(Problem {
                    section: Some(section.clone()),
                    module: Some(b.id.clone()),
                    pointer,
                    expected,
                    found,
                    error: format!("section `{section}` (module `{}`) at {e}", b.id),
                });
            }
        }
    }
    out
}

fn validate(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let path = home.config_yaml();
    let desired = offline::desired(home);
    let problems = config_problems(&desired);
    let mut warnings: Vec<String> = desired
        .order
        .iter()
        .filter_map(|id| desired.modules.get(id))
        .flat_map(|m| {
            m.notes
                .iter()
                .map(move |n| format!("module `{}`: {n}", m.id))
        })
        .collect();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    warnings.extend(
        super::doctor::unused_sections(home, &text)?
            .into_iter()
            .map(|(_, message)| message),
    );
    if json {
        let errors: Vec<Value> = problems
            .iter()
            .map(|p| {
                json!({"section": p.section, "module": p.module, "pointer": p.pointer,
                       "expected": p.expected, "found": p.found, "error": p.error})
            })
            .collect();
        output::print_json(&json!({
            "valid": problems.is_empty(), "file": path, "errors": errors, "warnings": warnings,
        }))?;
    } else {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        if problems.is_empty() {
            println!("{} is valid.", path.display());
        } else {
            for p in &problems {
                eprintln!("error: {}", p.error);
            }
        }
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pons_reconciler::desired::{BlockedModule, InputError};

    #[test]
    fn plain_rendering() {
        assert_eq!(plain(&json!("x")).unwrap(), "x");
        assert_eq!(plain(&json!(3)).unwrap(), "3");
        assert_eq!(plain(&json!({"a":1})).unwrap(), "{\n  \"a\": 1\n}");
    }

    #[test]
    fn schema_errors_split() {
        assert_eq!(
            split_schema_error("/port: expected integer, found \"a, found b\""),
            (
                Some("/port".into()),
                Some("integer".into()),
                Some("\"a, found b\"".into())
            )
        );
        assert_eq!(
            split_schema_error("/k/t: `${B}` is not set"),
            (Some("/k/t".into()), None, None)
        );
        assert_eq!(split_schema_error("no pointer"), (None, None, None));
    }

    #[test]
    fn problems_are_found_in_errors_and_blocked_modules() {
        let mut d = Desired::default();
        d.errors.push(InputError {
            file: "/h/config.yaml".into(),
            error: "line 1, column 2: bad".into(),
        });
        d.errors.push(InputError {
            file: "/h/permissions.yaml".into(),
            error: "other".into(),
        });
        d.blocked.push(BlockedModule {
            id: "gw".into(),
            dir_name: "gw".into(),
            reason: BlockReason::InvalidConfig {
                section: "gateway".into(),
                errors: vec!["/port: expected integer, found \"x\"".into()],
            },
        });
        let p = config_problems(&d);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].error, "/h/config.yaml: line 1, column 2: bad");
        assert_eq!(p[1].section.as_deref(), Some("gateway"));
        assert_eq!(p[1].pointer.as_deref(), Some("/port"));
        assert_eq!(p[1].expected.as_deref(), Some("integer"));
        assert_eq!(
            p[1].error,
            "section `gateway` (module `gw`) at /port: expected integer, found \"x\""
        );
    }

    #[test]
    fn kernel_defaults_have_the_file_layout() {
        let d = kernel_defaults(&Desired::default());
        assert_eq!(d["lifecycle"]["rpcTimeoutMs"], 30000);
        assert_eq!(d["logging"]["level"], "info");
        assert_eq!(d["security"]["enforcementMode"], "strict");
        assert_eq!(d["kernel"]["reconcile"], "auto");
    }
}
