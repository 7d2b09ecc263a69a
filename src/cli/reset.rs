//! `pons config reset <key> | --all`. `<key>` is removed from config.yaml with a minimal edit (the
//! lines of that entry go, every other line stays; see `store::yaml_edit::remove`), so its default
//! applies — refused when that would add an error (the checks of `pons config doctor`; e.g. a key
//! a module's schema requires and has no default for). `--all` replaces the whole file by a comment-only one (every default
//! applies): it needs `--yes` or a "yes" on a terminal, and the previous file is first copied to
//! `config.yaml.<timestamp>.bak` (mode 0600) beside it. Both write under the config.yaml lock; a
//! running kernel picks the change up by itself.

use std::process::ExitCode;

use pons_reconciler::config as rconfig;
use serde_json::{json, Value};

use super::config::{kernel_defaults, read_text, require_home};
use super::doctor::{added_errors, errors_in, module_schema};
use super::modules::scan;
use super::{offline, output};
use crate::home::Home;

pub(super) fn run(
    home: &Home,
    key: Option<&str>,
    all: bool,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    require_home(home)?;
    match key {
        Some(k) if !all => reset_key(home, k, json),
        _ => reset_all(home, yes, json),
    }
}

fn reset_key(home: &Home, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let path = home.config_yaml();
    if key.split('.').any(str::is_empty) {
        anyhow::bail!(
            "config key `{key}` has an empty segment; give a dotted path such as `gateway.port`"
        );
    }
    let mut was: Option<Value> = None;
    crate::store::update_config_text(home, |text| {
        let new_text = crate::store::remove_config_key(text, key)?;
        if new_text == text {
            return Ok(new_text);
        }
        let added = added_errors(home, text, &new_text)?;
        if !added.is_empty() {
            anyhow::bail!(
                "removing `{key}` would make {} invalid ({}); nothing was written — set a valid value with `pons config set {key} <value>` instead",
                path.display(),
                added.into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("; ")
            );
        }
        was = rconfig::parse(text.as_bytes())
            .ok()
            .and_then(|root| rconfig::get_path(&root, key).cloned());
        Ok(new_text)
    })?;
    let removed = was.is_some();
    let default = if removed { default_of(home, key) } else { None };
    if json {
        output::print_json(&json!({
            "key": key, "file": path, "removed": removed, "was": was, "default": default,
        }))?;
    } else if !removed {
        println!("{key} is not set in {}; nothing to reset.", path.display());
    } else {
        match &default {
            Some(d) => println!(
                "Reset {key}: removed from {}; its default {d} applies now (a running kernel applies it by itself).",
                path.display()
            ),
            None => println!(
                "Reset {key}: removed from {}; it has no default, so it is unset now (a running kernel applies it by itself).",
                path.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The value that applies to `key` now that the file does not set it: the kernel's default for
/// a kernel key, else what the owning module's JSON Schema fills in. `None` when there is none.
fn default_of(home: &Home, key: &str) -> Option<Value> {
    let (first, rest) = match key.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (key, None),
    };
    if rconfig::KERNEL_SECTIONS.contains(&first) {
        return rconfig::get_path(&kernel_defaults(&pons_reconciler::Desired::default()), key)
            .cloned();
    }
    let root = rconfig::parse(read_text(home).ok()?.as_bytes()).ok()?;
    let raw = root.get(first).cloned().unwrap_or_else(|| json!({}));
    let section = rconfig::interpolate(&raw, &offline::env()).unwrap_or(raw);
    let modules = scan(home).ok()?;
    modules.iter().find_map(|f| {
        let m = f.manifest.as_ref().ok()?;
        if m.config_key.as_deref() != Some(first) {
            return None;
        }
        let filled = module_schema(f, m).ok()??.apply(&section).ok()?;
        match rest {
            Some(r) => rconfig::get_path(&filled, r).cloned(),
            None => Some(filled),
        }
    })
}

fn reset_all(home: &Home, yes: bool, json: bool) -> anyhow::Result<ExitCode> {
    let path = home.config_yaml();
    let holds_settings = |text: &str| {
        rconfig::parse(text.as_bytes())
            .map_or(true, |v| v.as_object().is_none_or(|m| !m.is_empty()))
    };
    if !holds_settings(&read_text(home)?) {
        if json {
            output::print_json(
                &json!({"all": true, "file": path, "changed": false, "backup": null, "problems": []}),
            )?;
        } else {
            println!("{} holds no settings; nothing to reset.", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !yes {
        if json || !output::stdin_is_tty() {
            anyhow::bail!(
                "resetting all of {} needs --yes when not asked on a terminal; nothing was changed",
                path.display()
            );
        }
        let question = format!(
            "Reset all of {} to defaults? Every setting in it is removed (the file is kept as a backup).",
            path.display()
        );
        if !output::confirm(&question)? {
            anyhow::bail!("reset of {} cancelled; nothing was changed", path.display());
        }
    }
    let now = offline::now_iso();
    let backup = home
        .root
        .join(format!("config.yaml.{}.bak", now.replace(':', "-")));
    let mut backed_up = false;
    crate::store::update_config_text(home, |text| {
        if !holds_settings(text) {
            return Ok(text.to_string());
        }
        crate::store::write_atomic(&backup, text.as_bytes()).map_err(|e| {
            anyhow::anyhow!(
                "cannot keep a backup of {} ({e:#}); nothing was changed",
                path.display()
            )
        })?;
        backed_up = true;
        Ok(format!(
            "# Reset to defaults by `pons config reset --all` at {now}; the previous file is {}.\n",
            backup.file_name().unwrap_or_default().to_string_lossy()
        ))
    })?;
    let problems: Vec<String> = errors_in(home, &read_text(home)?)?
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let backup = backed_up.then_some(backup);
    if json {
        output::print_json(&json!({
            "all": true, "file": path, "changed": backed_up, "backup": backup, "problems": problems,
        }))?;
    } else {
        match &backup {
            Some(b) => println!(
                "Reset {} to defaults; the previous file is kept as {} (a running kernel applies it by itself).",
                path.display(),
                b.display()
            ),
            None => println!("{} holds no settings; nothing to reset.", path.display()),
        }
        for p in &problems {
            eprintln!("warning: {p}; set it with `pons config set <key> <value>`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
