//! The CLI's one door to the reconciler and the shell's file readers: desired state and plan
//! computed from the files (no kernel needed), permissions.yaml and config.yaml helpers.
//!
//! Everything the CLI needs from `pons_reconciler` / `snapshot_io` goes through this file, so
//! that the interfaces being written in parallel are fixed in one place at merge time. Functions
//! marked `TODO(merge)` are local stand-ins (in `offline/stand_ins.rs` or below) for functions
//! of `pons_reconciler` that did not exist yet when this was written.

mod stand_ins;

use std::collections::BTreeMap;

use anyhow::Context;
use pons_reconciler::desired::BlockReason;
use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::{Capabilities, PermissionSet, PermissionsFile};
use pons_reconciler::snapshot::FileRead;
use pons_reconciler::{build_desired, plan, Desired, Observed, Plan, PlanOptions};

use crate::home::Home;

pub use stand_ins::{
    approve, coerce, deny, effective, get_path, grant, revoke, revoke_kind, set_path,
};

/// The process environment, as the kernel would see it.
pub fn env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Desired state from the files of `home`.
pub fn desired(home: &Home) -> Desired {
    let snap = crate::snapshot_io::read_snapshot(home, &env());
    build_desired(&snap, None)
}

/// Desired state from the files of `home`, with `config_text` in place of config.yaml (to check
/// an edit before it is written).
pub fn desired_with_config(home: &Home, config_text: &str) -> Desired {
    let mut snap = crate::snapshot_io::read_snapshot(home, &env());
    snap.config_yaml = FileRead::Bytes(config_text.as_bytes().to_vec());
    build_desired(&snap, None)
}

/// The plan against an empty system: what a kernel started now would do (crashed modules retried,
/// as `pons apply` would).
pub fn offline_plan(desired: &Desired) -> Plan {
    plan(
        desired,
        &Observed::default(),
        PlanOptions {
            retry_crashed: true,
        },
    )
}

/// Whether a plan has anything to do (any action other than `blocked`).
pub fn plan_has_changes(plan: &Plan) -> bool {
    plan.actions
        .iter()
        .any(|a| a.action != pons_reconciler::ActionKind::Blocked)
}

/// TODO(merge): `pons_reconciler::render::plan_text(plan, desired, kernel_running)`.
pub fn plan_text(plan: &Plan, desired: &Desired, kernel_running: bool) -> String {
    pons_reconciler::render::plan_text(plan, desired, kernel_running)
}

/// TODO(merge): `pons_reconciler::render::plan_json(plan, kernel_running)`.
pub fn plan_json(plan: &Plan, kernel_running: bool) -> serde_json::Value {
    pons_reconciler::render::plan_json(plan, kernel_running)
}

/// One plain sentence for a block reason. TODO(merge): `reason.to_string()` (its `Display`).
pub fn block_reason(reason: &BlockReason) -> String {
    reason.to_string()
}

/// permissions.yaml as on disk (empty when missing). A file that cannot be parsed is an error
/// naming it. TODO(merge): use the reconciler's parser (which also migrates the old layout).
pub fn read_permissions(home: &Home) -> anyhow::Result<PermissionsFile> {
    let path = home.permissions_yaml();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PermissionsFile::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    stand_ins::parse_permissions(&text)
        .with_context(|| format!("{} is not valid; fix or remove it", path.display()))
}

/// config.yaml as a JSON value (an empty mapping when the file is missing or empty).
pub fn read_config(home: &Home) -> anyhow::Result<serde_json::Value> {
    let path = home.config_yaml();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_config_text(&text).with_context(|| format!("{} is not valid YAML", path.display()))
}

/// Parses config.yaml text (strict: duplicate keys are errors) into a JSON value.
pub fn parse_config_text(text: &str) -> anyhow::Result<serde_json::Value> {
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    let value: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match value {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        v => v,
    })
}

/// Renders a config value as YAML text.
pub fn render_yaml(value: &serde_json::Value) -> anyhow::Result<String> {
    serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("cannot render YAML: {e}"))
}

/// The tamper-detection hash of a manifest: SHA-256 of its bytes, 64 lowercase hex characters.
pub fn manifest_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses and checks a manifest the way discovery does (id and name non-empty, a strict
/// permissions block). The error is a phrase to put after the file name.
/// TODO(merge): the reconciler's manifest validation.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if manifest.id.trim().is_empty() || manifest.name.trim().is_empty() {
        return Err("`id` and `name` must be non-empty strings".into());
    }
    permissions_problem(&manifest.permissions).map_or(Ok(manifest), Err)
}

/// Whether the `permissions` block of a manifest (as JSON) passes the strict schema.
pub fn permissions_block_valid(manifest: &serde_json::Value) -> bool {
    manifest
        .get("permissions")
        .and_then(|p| serde_json::from_value::<PermissionSet>(p.clone()).ok())
        .is_some_and(|p| permissions_problem(&p).is_none())
}

fn permissions_problem(p: &PermissionSet) -> Option<String> {
    p.env
        .iter()
        .any(|e| e.contains('*'))
        .then(|| "glob patterns are not allowed in `permissions.env`; use exact names".into())
}

/// The capabilities approved with a module: its manifest's `capabilities`, else topics =
/// subscribes ∪ publishes and services = requires ∪ optionalRequires (duplicates removed).
pub fn default_capabilities(m: &Manifest) -> Capabilities {
    if let Some(c) = &m.capabilities {
        return c.clone();
    }
    let uniq = |a: &[String], b: &[String]| {
        let mut out: Vec<String> = Vec::new();
        for s in a.iter().chain(b) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    };
    Capabilities {
        topics: uniq(&m.subscribes, &m.publishes),
        services: uniq(&m.requires, &m.optional_requires),
    }
}

/// Now as `2026-01-15T10:30:00.000Z` (the timestamp format of permissions.yaml).
pub fn now_iso() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}
