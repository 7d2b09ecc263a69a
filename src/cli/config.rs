//! `pons config get | set | list | validate`: config.yaml read from the file and written through
//! the locked read-modify-write of `store`; no kernel needed (a running one sees the change).

use std::process::ExitCode;

use pons_reconciler::desired::BlockReason;
use pons_reconciler::Desired;
use serde_json::{json, Value};

use super::args::ConfigCmd;
use super::{offline, output};
use crate::home::Home;

pub fn run(home: &Home, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Get { key, json } => get(home, &key, json),
        ConfigCmd::Set { key, value, json } => set(home, &key, &value, json),
        ConfigCmd::List { section, json } => list(home, section.as_deref(), json),
        ConfigCmd::Validate(f) => validate(home, f.json),
    }
}

fn get(home: &Home, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = offline::read_config(home)?;
    let value = offline::get_path(&config, key).ok_or_else(|| {
        anyhow::anyhow!("key `{key}` is not set in {}", home.config_yaml().display())
    })?;
    if json {
        output::print_json(value)?;
    } else {
        println!("{}", plain(value)?);
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
    let section = key.split('.').next().unwrap_or(key).to_string();
    crate::store::update_config_text(home, |text| {
        let mut config = offline::parse_config_text(text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid YAML ({e}); fix it before setting keys",
                path.display()
            )
        })?;
        offline::set_path(&mut config, key, value.clone())
            .map_err(|e| anyhow::anyhow!("cannot set `{key}`: {e}"))?;
        let new_text = offline::render_yaml(&config)?;
        let problems = config_problems(&offline::desired_with_config(home, &new_text));
        let mine: Vec<String> = problems
            .iter()
            .filter(|(s, _)| s.as_deref().is_none_or(|s| s == section))
            .map(|(_, e)| e.clone())
            .collect();
        if !mine.is_empty() {
            anyhow::bail!(
                "setting `{key}` to {value} would make {} invalid: {}; nothing was written",
                path.display(),
                mine.join("; ")
            );
        }
        Ok(new_text)
    })?;
    if json {
        output::print_json(&json!({"key": key, "value": value, "file": path}))?;
    } else {
        println!(
            "Set {key} = {value} in {}; a running kernel applies it by itself.",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(home: &Home, section: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let config = offline::read_config(home)?;
    let shown = match section {
        Some(s) => offline::get_path(&config, s).ok_or_else(|| {
            anyhow::anyhow!("section `{s}` is not in {}", home.config_yaml().display())
        })?,
        None => &config,
    };
    if json {
        output::print_json(shown)?;
    } else if shown.as_object().is_some_and(|m| m.is_empty()) {
        println!(
            "{} is empty (kernel defaults apply).",
            home.config_yaml().display()
        );
    } else {
        print!("{}", offline::render_yaml(shown)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Problems with config.yaml found while building the desired state: (section, error). The
/// section is `None` for errors about the file as a whole.
fn config_problems(desired: &Desired) -> Vec<(Option<String>, String)> {
    let mut out: Vec<(Option<String>, String)> = desired
        .errors
        .iter()
        .filter(|e| e.file.file_name().is_some_and(|n| n == "config.yaml"))
        .map(|e| (None, format!("{}: {}", e.file.display(), e.error)))
        .collect();
    for b in &desired.blocked {
        if let BlockReason::InvalidConfig { section, errors } = &b.reason {
            out.push((
                Some(section.clone()),
                format!(
                    "section `{section}` (module `{}`): {}",
                    b.id,
                    errors.join("; ")
                ),
            ));
        }
    }
    out
}

fn validate(home: &Home, json: bool) -> anyhow::Result<ExitCode> {
    let path = home.config_yaml();
    let problems = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            config_problems(&offline::desired(home))
        }
        Err(e) => vec![(None, format!("cannot read {}: {e}", path.display()))],
        Ok(text) => match offline::parse_config_text(&text) {
            Err(e) => vec![(None, format!("{}: {e}", path.display()))],
            Ok(_) => config_problems(&offline::desired(home)),
        },
    };
    if json {
        let errors: Vec<Value> = problems
            .iter()
            .map(|(s, e)| json!({"section": s, "error": e}))
            .collect();
        output::print_json(&json!({"valid": problems.is_empty(), "file": path, "errors": errors}))?;
    } else if problems.is_empty() {
        println!("{} is valid.", path.display());
    } else {
        for (_, e) in &problems {
            eprintln!("error: {e}");
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
    fn problems_are_found_in_errors_and_blocked_modules() {
        let mut d = Desired::default();
        d.errors.push(InputError {
            file: "/h/config.yaml".into(),
            error: "line 1 column 2: bad".into(),
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
                errors: vec!["/port: not an integer".into()],
            },
        });
        let p = config_problems(&d);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], (None, "/h/config.yaml: line 1 column 2: bad".into()));
        assert_eq!(p[1].0.as_deref(), Some("gateway"));
    }

    #[test]
    fn yaml_round_trip_keeps_key_order() {
        let v = offline::parse_config_text("b: 1\na:\n  c: [1, 2]\n").unwrap();
        assert_eq!(v, json!({"b":1,"a":{"c":[1,2]}}));
        let text = offline::render_yaml(&v).unwrap();
        assert_eq!(offline::parse_config_text(&text).unwrap(), v);
        assert!(text.starts_with("b:"), "{text}");
        assert!(
            offline::parse_config_text("a: 1\na: 2\n").is_err(),
            "duplicate keys rejected"
        );
        assert_eq!(offline::parse_config_text("").unwrap(), json!({}));
        let tricky = json!({"s":"true","n":"42","z":"007","e":"","c":"a: b","h":"#x","m":"l1\nl2","f":1.5,"u":null});
        let text = offline::render_yaml(&tricky).unwrap();
        assert_eq!(offline::parse_config_text(&text).unwrap(), tricky, "{text}");
        assert_eq!(
            offline::parse_config_text("# only a comment\n").unwrap(),
            json!({})
        );
    }
}
