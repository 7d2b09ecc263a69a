//! The CLI's one door to the reconciler and the shell's file readers: desired state and plan
//! computed from the files (no kernel needed), permissions.yaml and config.yaml helpers.
//!
//! Everything here is a thin wrapper over `pons_reconciler` (`permissions`, `config`,
//! `manifest`, `render`) and `snapshot_io` / `store`, so that the CLI and the kernel parse,
//! validate and render the files with the same code.

use std::collections::BTreeMap;

use anyhow::Context;
use pons_reconciler::desired::BlockReason;
use pons_reconciler::manifest::Manifest;
use pons_reconciler::permissions::{Capabilities, PermissionsFile};
use pons_reconciler::snapshot::FileRead;
use pons_reconciler::{build_desired, plan, Desired, Observed, Plan, PlanOptions};

use crate::home::Home;

pub use pons_reconciler::config::{coerce, get_path};

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
    plan.has_changes()
}

/// The plan as text (terraform style).
pub fn plan_text(plan: &Plan, desired: &Desired, kernel_running: bool) -> String {
    pons_reconciler::render::plan_text(plan, desired, kernel_running)
}

/// The plan as the JSON of specs/cli.md.
pub fn plan_json(plan: &Plan, kernel_running: bool) -> serde_json::Value {
    pons_reconciler::render::plan_json(plan, kernel_running)
}

/// One plain sentence for a block reason.
pub fn block_reason(reason: &BlockReason) -> String {
    reason.to_string()
}

/// permissions.yaml as on disk (empty when missing; the old layout migrated). A file that cannot
/// be parsed is an error naming it.
pub fn read_permissions(home: &Home) -> anyhow::Result<PermissionsFile> {
    crate::store::read_permissions(home)
}

/// config.yaml as a JSON value (an empty mapping when the file is missing or empty). A file that
/// cannot be parsed is an error naming it, with line and column.
pub fn read_config(home: &Home) -> anyhow::Result<serde_json::Value> {
    let path = home.config_yaml();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    parse_config_text(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid YAML ({e}); fix the file first",
            path.display()
        )
    })
}

/// Parses config.yaml text (strict: duplicate keys are errors with line and column; the top
/// level must be a mapping) into a JSON value.
pub fn parse_config_text(text: &str) -> Result<serde_json::Value, String> {
    pons_reconciler::config::parse(text.as_bytes()).map_err(|e| e.to_string())
}

/// Renders a value as block YAML.
pub fn render_yaml(value: &serde_json::Value) -> String {
    pons_reconciler::yaml::render(value)
}

/// The tamper-detection hash of a manifest: SHA-256, 64 lowercase hex characters, no prefix.
pub fn manifest_hash(bytes: &[u8]) -> String {
    pons_reconciler::manifest::hash(bytes)
}

/// Parses and checks a manifest the way discovery does; the error is one sentence about the
/// file's content.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    pons_reconciler::manifest::parse(bytes).map_err(|e| e.to_string())
}

/// Whether the `permissions` block of a manifest (as JSON) passes the strict schema.
pub fn permissions_block_valid(manifest: &serde_json::Value) -> bool {
    manifest
        .get("permissions")
        .is_some_and(|p| pons_reconciler::manifest::validate_permissions(p).is_ok())
}

/// The capabilities approved with a module: its manifest's `capabilities`, else topics =
/// subscribes ∪ publishes and services = requires ∪ optionalRequires (duplicates removed).
pub fn default_capabilities(m: &Manifest) -> Capabilities {
    pons_reconciler::manifest::install_capabilities(m)
}

/// Now as `2026-01-15T10:30:00.000Z` (the timestamp format of permissions.yaml).
pub fn now_iso() -> String {
    crate::kernel::calls::now_iso()
}
