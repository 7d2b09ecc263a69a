//! TODO(merge): local stand-ins for pure functions that `pons_reconciler` provides
//! (`permissions::{approve, grant, deny, revoke, effective, parse}`, `config::{get_path, set_path,
//! coerce}`, `render::{plan_text, plan_json}`, `Display for BlockReason`). They follow compat.md
//! §3.1 / §3.4 and DESIGN.md §4; at merge each is replaced by a call to the real one and this
//! file is deleted.

use pons_reconciler::desired::BlockReason;
use pons_reconciler::permissions::{
    Capabilities, DeniedRequest, DynamicGrant, ModuleEntry, PermissionSet, PermissionsFile,
};
use pons_reconciler::{ActionKind, Desired, Plan};
use serde_json::{json, Value};

/// Parses permissions.yaml text (new layout only).
pub fn parse_permissions(text: &str) -> anyhow::Result<PermissionsFile> {
    if text.trim().is_empty() {
        return Ok(PermissionsFile::default());
    }
    let parsed: Option<PermissionsFile> =
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(parsed.unwrap_or_default())
}

/// `approve(id, perms, hash)` + `approveCapabilities` + `registerServiceProvider` (compat §3.2):
/// replaces the module's entry; services already claimed by another module are left alone.
pub fn approve(
    file: &mut PermissionsFile,
    id: &str,
    base: PermissionSet,
    capabilities: Capabilities,
    hash: &str,
    provides: &[String],
    now: &str,
) {
    file.modules.insert(
        id.to_string(),
        ModuleEntry {
            base,
            base_manifest_hash: hash.to_string(),
            base_granted_at: Some(now.to_string()),
            capabilities: Some(capabilities),
            ..ModuleEntry::default()
        },
    );
    for service in provides {
        file.service_providers
            .entry(service.clone())
            .or_insert_with(|| id.to_string());
    }
}

/// Base then dynamic grants, per field, duplicates removed.
pub fn effective(entry: &ModuleEntry) -> PermissionSet {
    let mut out = entry.base.clone();
    for grant in &entry.dynamic {
        merge(&mut out, &grant.permissions);
    }
    out
}

fn merge(into: &mut PermissionSet, add: &PermissionSet) {
    for (dst, src) in fields_mut(into).into_iter().zip(fields(add)) {
        for v in src {
            if !dst.contains(v) {
                dst.push(v.clone());
            }
        }
    }
}

fn fields(p: &PermissionSet) -> [&Vec<String>; 6] {
    [&p.net, &p.read, &p.write, &p.env, &p.run, &p.sys]
}

fn fields_mut(p: &mut PermissionSet) -> [&mut Vec<String>; 6] {
    [
        &mut p.net,
        &mut p.read,
        &mut p.write,
        &mut p.env,
        &mut p.run,
        &mut p.sys,
    ]
}

/// Moves pending request `req_id` to `dynamic` and removes its values from every denied entry
/// (dropping denied entries that become empty). False when not found.
pub fn grant(file: &mut PermissionsFile, id: &str, req_id: &str, now: &str) -> bool {
    let Some(entry) = file.modules.get_mut(id) else {
        return false;
    };
    let Some(pos) = entry.pending.iter().position(|p| p.id == req_id) else {
        return false;
    };
    let req = entry.pending.remove(pos);
    for denied in &mut entry.denied {
        for (dst, src) in fields_mut(&mut denied.permissions)
            .into_iter()
            .zip(fields(&req.permissions))
        {
            dst.retain(|v| !src.contains(v));
        }
    }
    entry
        .denied
        .retain(|d| fields(&d.permissions).iter().any(|f| !f.is_empty()));
    entry.dynamic.push(DynamicGrant {
        permissions: req.permissions,
        reason: req.reason,
        granted_at: Some(now.to_string()),
    });
    true
}

/// Moves pending request `req_id` to `denied`. False when not found.
pub fn deny(file: &mut PermissionsFile, id: &str, req_id: &str, now: &str) -> bool {
    let Some(entry) = file.modules.get_mut(id) else {
        return false;
    };
    let Some(pos) = entry.pending.iter().position(|p| p.id == req_id) else {
        return false;
    };
    let req = entry.pending.remove(pos);
    entry.denied.push(DeniedRequest {
        permissions: req.permissions,
        reason: req.reason,
        denied_at: Some(now.to_string()),
    });
    true
}

/// Deletes the module's entry and the services it claimed. False when unknown.
pub fn revoke(file: &mut PermissionsFile, id: &str) -> bool {
    let known = file.modules.remove(id).is_some();
    file.service_providers.retain(|_, m| m != id);
    known
}

/// Removes `value` (or every value) of permission kind `kind` from base and dynamic grants.
/// False when the module or the kind is unknown.
pub fn revoke_kind(file: &mut PermissionsFile, id: &str, kind: &str, value: Option<&str>) -> bool {
    let idx = match kind {
        "net" => 0,
        "read" => 1,
        "write" => 2,
        "env" => 3,
        "run" => 4,
        "sys" => 5,
        _ => return false,
    };
    let Some(entry) = file.modules.get_mut(id) else {
        return false;
    };
    let sets = std::iter::once(&mut entry.base)
        .chain(entry.dynamic.iter_mut().map(|d| &mut d.permissions));
    for set in sets {
        if let Some(field) = fields_mut(set).into_iter().nth(idx) {
            match value {
                Some(v) => field.retain(|x| x != v),
                None => field.clear(),
            }
        }
    }
    true
}

const UNSAFE_SEGMENTS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// The value at a dotted key path (no index syntax), `None` when absent.
pub fn get_path<'a>(config: &'a Value, key: &str) -> Option<&'a Value> {
    let mut cur = config;
    for seg in key.split('.') {
        if UNSAFE_SEGMENTS.contains(&seg) {
            return None;
        }
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

/// Writes `value` at a dotted key path; missing or non-object intermediates become `{}`.
pub fn set_path(config: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let segs: Vec<&str> = key.split('.').collect();
    if let Some(bad) = segs.iter().find(|s| UNSAFE_SEGMENTS.contains(s)) {
        return Err(format!("Unsafe key: {bad}"));
    }
    let mut cur = config;
    for (i, seg) in segs.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Value::Object(map) = cur else {
            unreachable!("just made an object")
        };
        if i + 1 == segs.len() {
            map.insert(seg.to_string(), value);
            return Ok(());
        }
        cur = map
            .entry(seg.to_string())
            .or_insert(Value::Object(Default::default()));
    }
    Ok(())
}

/// compat §3.4 coercion of a string given on the command line.
pub fn coerce(raw: &str) -> Value {
    let t = raw.trim();
    if (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']')) {
        if let Ok(v) = serde_json::from_str(t) {
            return v;
        }
        return Value::String(raw.into());
    }
    match raw {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        "null" => return Value::Null,
        _ => {}
    }
    if !t.is_empty() {
        if let Ok(i) = t.parse::<i64>() {
            return json!(i);
        }
        if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return json!(i);
            }
        }
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return json!(f);
            }
        }
    }
    Value::String(raw.into())
}

/// DESIGN.md §4 plan JSON.
pub fn plan_json(plan: &Plan, kernel_running: bool) -> Value {
    let mut summary = json!({"spawn":0,"stop":0,"restart":0,"config":0,"blocked":0});
    for a in &plan.actions {
        let key = kind_name(a.action);
        summary[key] = json!(summary[key].as_u64().unwrap_or(0) + 1);
    }
    json!({"kernelRunning": kernel_running, "actions": plan.actions, "summary": summary})
}

fn kind_name(k: ActionKind) -> &'static str {
    match k {
        ActionKind::Spawn => "spawn",
        ActionKind::Stop => "stop",
        ActionKind::Restart => "restart",
        ActionKind::Config => "config",
        ActionKind::Blocked => "blocked",
    }
}

/// Terraform-style plan text.
pub fn plan_text(plan: &Plan, _desired: &Desired, _kernel_running: bool) -> String {
    if plan.actions.is_empty() {
        return "No changes: the running set matches the files.\n".into();
    }
    let mut out = String::new();
    for a in &plan.actions {
        let sign = match a.action {
            ActionKind::Spawn => '+',
            ActionKind::Stop => '-',
            ActionKind::Restart | ActionKind::Config => '~',
            ActionKind::Blocked => '!',
        };
        out.push_str(&format!(
            "  {sign} {} {}: {}\n",
            kind_name(a.action),
            a.module,
            a.reason
        ));
        if let Some(diff) = &a.diff {
            for line in diff.lines() {
                out.push_str(&format!("        {line}\n"));
            }
        }
    }
    let s = plan_json(plan, false)["summary"].clone();
    out.push_str(&format!(
        "\nPlan: {} to spawn, {} to stop, {} to restart, {} config, {} blocked.\n",
        s["spawn"], s["stop"], s["restart"], s["config"], s["blocked"]
    ));
    out
}


#[cfg(test)]
mod tests {
    use super::*;
    use pons_reconciler::permissions::PendingRequest;

    #[test]
    fn coercion_follows_compat() {
        assert_eq!(coerce("42"), json!(42));
        assert_eq!(coerce("1e3"), json!(1000.0));
        assert_eq!(coerce("0x10"), json!(16));
        assert_eq!(coerce("true"), json!(true));
        assert_eq!(coerce("null"), Value::Null);
        assert_eq!(coerce("[1,\"a\"]"), json!([1, "a"]));
        assert_eq!(coerce("{bad}"), json!("{bad}"));
        assert_eq!(coerce("hello"), json!("hello"));
        assert_eq!(coerce("  "), json!("  "));
    }

    #[test]
    fn key_paths() {
        let mut c = json!({"a": {"b": 1}, "s": "x"});
        assert_eq!(get_path(&c, "a.b"), Some(&json!(1)));
        assert_eq!(get_path(&c, "a.c"), None);
        assert_eq!(get_path(&c, "s.x"), None);
        assert_eq!(get_path(&c, "a.__proto__"), None);
        set_path(&mut c, "s.y.z", json!(2)).unwrap();
        assert_eq!(c["s"], json!({"y": {"z": 2}}));
        assert!(set_path(&mut c, "constructor.x", json!(1)).is_err());
    }

    #[test]
    fn grant_deny_revoke() {
        let mut f = PermissionsFile::default();
        approve(
            &mut f,
            "m",
            PermissionSet {
                net: vec!["a".into()],
                ..Default::default()
            },
            Capabilities::default(),
            "h",
            &["svc".into()],
            "t",
        );
        let entry = f.modules.get_mut("m").unwrap();
        entry.denied.push(DeniedRequest {
            permissions: PermissionSet {
                env: vec!["X".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        entry.pending.push(PendingRequest {
            id: "r1".into(),
            permissions: PermissionSet {
                env: vec!["X".into()],
                net: vec!["a".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        entry.pending.push(PendingRequest {
            id: "r2".into(),
            ..Default::default()
        });
        assert!(grant(&mut f, "m", "r1", "t2"));
        assert!(!grant(&mut f, "m", "r1", "t2"));
        let e = &f.modules["m"];
        assert!(e.denied.is_empty());
        assert_eq!(effective(e).env, vec!["X"]);
        assert_eq!(effective(e).net, vec!["a"]);
        assert!(deny(&mut f, "m", "r2", "t3"));
        assert_eq!(f.modules["m"].denied.len(), 1);
        assert!(revoke_kind(&mut f, "m", "env", Some("X")));
        assert!(effective(&f.modules["m"]).env.is_empty());
        assert!(!revoke_kind(&mut f, "m", "bogus", None));
        assert_eq!(f.service_providers["svc"], "m");
        assert!(revoke(&mut f, "m"));
        assert!(f.service_providers.is_empty());
        assert!(!revoke(&mut f, "m"));
    }
}
