//! `permissions.yaml`: parsing (new and old layouts), the pure operations on it
//! (approve, request, grant, deny, revoke, effective permissions) and its YAML rendering.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::yaml::{self, YamlError};

/// OS permissions of a module: exactly the six keys of the reference kernel's behaviour
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSet {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sys: Vec<String>,
}

/// IPC capabilities: topics a module may publish/subscribe, services it may call.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

/// A granted runtime request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicGrant {
    pub permissions: PermissionSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<String>,
}

/// A runtime request awaiting the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub id: String,
    pub permissions: PermissionSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// A denied runtime request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeniedRequest {
    pub permissions: PermissionSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_at: Option<String>,
}

/// One module's entry (new layout).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleEntry {
    pub base: PermissionSet,
    #[serde(default)]
    pub base_manifest_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_granted_at: Option<String>,
    #[serde(default)]
    pub dynamic: Vec<DynamicGrant>,
    #[serde(default)]
    pub pending: Vec<PendingRequest>,
    #[serde(default)]
    pub denied: Vec<DeniedRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_spawn_at: Option<String>,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsFile {
    #[serde(default)]
    pub modules: BTreeMap<String, ModuleEntry>,
    #[serde(default)]
    pub service_providers: BTreeMap<String, String>,
    /// Entries of `modules` in neither layout (the module counts as not approved), kept as read
    /// so that rendering the file back never loses an operator's data.
    #[serde(skip)]
    pub unrecognized: BTreeMap<String, serde_json::Value>,
}

/// Problems with a permissions operation; `Display` is one sentence naming the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermError {
    NotApproved(String),
    NoPending(String),
    RequestNotFound {
        module: String,
        request: String,
    },
    Ambiguous {
        module: String,
        request: String,
        matches: Vec<String>,
    },
}

impl std::fmt::Display for PermError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PermError::NotApproved(id) => write!(
                f,
                "module `{id}` is not approved in permissions.yaml: approve it with `pons modules approve {id}`"
            ),
            PermError::NoPending(id) => write!(
                f,
                "module `{id}` has no pending permission request: see `pons permissions pending`"
            ),
            PermError::RequestNotFound { module, request } => write!(
                f,
                "module `{module}` has no pending request `{request}`: see `pons permissions pending`"
            ),
            PermError::Ambiguous { module, request, matches } => {
                if request.is_empty() {
                    write!(
                        f,
                        "module `{module}` has {} pending requests ({}): name one",
                        matches.len(),
                        matches.join(", ")
                    )
                } else {
                    write!(
                        f,
                        "request id `{request}` of module `{module}` matches {} requests ({}): give more characters",
                        matches.len(),
                        matches.join(", ")
                    )
                }
            }
        }
    }
}

impl std::error::Error for PermError {}

/// The answer to `permissions.request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Already a subset of the effective permissions.
    Granted,
    /// A value was denied before, or the module is not approved.
    Denied,
    /// Waiting for the operator; `new` is true when this call added the request.
    Pending { request_id: String, new: bool },
}

impl RequestOutcome {
    /// The `result` of the kernel call.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RequestOutcome::Granted => serde_json::json!({"granted": true}),
            RequestOutcome::Denied => serde_json::json!({"granted": false, "denied": true}),
            RequestOutcome::Pending { request_id, .. } => {
                serde_json::json!({"granted": false, "pending": true, "requestId": request_id})
            }
        }
    }
}

/// The answer to `permissions.check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub granted: bool,
    /// The requested values not granted (fields with nothing missing left out).
    pub missing: PermissionSet,
}

impl CheckResult {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "granted": self.granted,
            "missing": serde_json::to_value(&self.missing).unwrap_or_default(),
        })
    }
}

impl PermissionSet {
    /// The six fields in the order net, read, write, env, run, sys.
    pub fn fields(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("net", &self.net),
            ("read", &self.read),
            ("write", &self.write),
            ("env", &self.env),
            ("run", &self.run),
            ("sys", &self.sys),
        ]
    }

    fn field_mut(&mut self, name: &str) -> Option<&mut Vec<String>> {
        Some(match name {
            "net" => &mut self.net,
            "read" => &mut self.read,
            "write" => &mut self.write,
            "env" => &mut self.env,
            "run" => &mut self.run,
            "sys" => &mut self.sys,
            _ => return None,
        })
    }

    /// No value in any field.
    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_empty())
    }

    /// Appends the values of `other` that are not present yet, field by field.
    pub fn merge(&mut self, other: &PermissionSet) {
        for (name, values) in other.fields() {
            if let Some(mine) = self.field_mut(name) {
                for v in values {
                    if !mine.contains(v) {
                        mine.push(v.clone());
                    }
                }
            }
        }
    }

    /// The values of `self` missing from `have`.
    pub fn minus(&self, have: &PermissionSet) -> PermissionSet {
        let mut out = PermissionSet::default();
        for ((name, want), (_, got)) in self.fields().into_iter().zip(have.fields()) {
            if let Some(o) = out.field_mut(name) {
                for v in want {
                    if !got.contains(v) && !o.contains(v) {
                        o.push(v.clone());
                    }
                }
            }
        }
        out
    }

    /// Every value of `self` is in `other`.
    pub fn is_subset_of(&self, other: &PermissionSet) -> bool {
        self.minus(other).is_empty()
    }

    /// Some value of `self` is in the same field of `other`.
    pub fn intersects(&self, other: &PermissionSet) -> bool {
        self.fields()
            .into_iter()
            .zip(other.fields())
            .any(|((_, a), (_, b))| a.iter().any(|v| b.contains(v)))
    }

    /// Removes a value (or the whole field when `value` is `None`); false for an unknown field.
    pub fn remove(&mut self, field: &str, value: Option<&str>) -> bool {
        match self.field_mut(field) {
            Some(f) => {
                match value {
                    Some(v) => f.retain(|x| x != v),
                    None => f.clear(),
                }
                true
            }
            None => false,
        }
    }
}

impl PermissionsFile {
    /// `id` has an (understood) entry.
    pub fn is_approved(&self, id: &str) -> bool {
        self.modules.contains_key(id)
    }

    /// Replaces the module's entry with a fresh approval: base permissions, hash, `baseGrantedAt = now`, no dynamic grants,
    /// no pending or denied requests, no `firstSpawnAt` (the next spawn sends `install`).
    pub fn approve(
        &mut self,
        id: &str,
        perms: PermissionSet,
        caps: Capabilities,
        hash: &str,
        now: &str,
    ) {
        self.unrecognized.remove(id);
        self.modules.insert(
            id.to_string(),
            ModuleEntry {
                base: perms,
                base_manifest_hash: hash.to_string(),
                base_granted_at: Some(now.to_string()),
                capabilities: Some(caps),
                ..ModuleEntry::default()
            },
        );
    }

    /// Records the module's first spawn; false when it is not approved.
    pub fn set_first_spawn(&mut self, id: &str, now: &str) -> bool {
        match self.modules.get_mut(id) {
            Some(e) => {
                e.first_spawn_at = Some(now.to_string());
                true
            }
            None => false,
        }
    }

    /// The stored capabilities, when they name at least one topic or service.
    pub fn stored_capabilities(&self, id: &str) -> Option<&Capabilities> {
        self.modules
            .get(id)
            .and_then(|e| e.capabilities.as_ref())
            .filter(|c| !c.topics.is_empty() || !c.services.is_empty())
    }

    /// Base plus granted dynamic permissions, per field in order, duplicates removed; `None` when
    /// the module is not approved.
    pub fn effective(&self, id: &str) -> Option<PermissionSet> {
        let e = self.modules.get(id)?;
        let mut out = PermissionSet::default();
        out.merge(&e.base);
        for d in &e.dynamic {
            out.merge(&d.permissions);
        }
        // `merge` skips duplicates of already-present values; duplicates inside base itself:
        let mut clean = PermissionSet::default();
        clean.merge(&out);
        Some(clean)
    }

    /// `permissions.check`.
    pub fn check(&self, id: &str, perms: &PermissionSet) -> CheckResult {
        match self.effective(id) {
            None => CheckResult {
                granted: false,
                missing: perms.clone(),
            },
            Some(eff) => {
                let missing = perms.minus(&eff);
                CheckResult {
                    granted: missing.is_empty(),
                    missing,
                }
            }
        }
    }

    /// A value of `perms` was denied before.
    pub fn is_denied(&self, id: &str, perms: &PermissionSet) -> bool {
        self.modules
            .get(id)
            .is_some_and(|e| e.denied.iter().any(|d| perms.intersects(&d.permissions)))
    }

    /// The first pending request that covers every requested value (an empty request matches the
    /// first pending request).
    pub fn find_pending(&self, id: &str, perms: &PermissionSet) -> Option<&PendingRequest> {
        self.modules
            .get(id)?
            .pending
            .iter()
            .find(|p| perms.is_subset_of(&p.permissions))
    }

    /// `permissions.request`, in the order of the reference kernel's behaviour: granted, denied, existing pending,
    /// not approved (denied), else a new pending request `{id: new_id, requestedAt: now}`.
    pub fn request(
        &mut self,
        id: &str,
        perms: &PermissionSet,
        reason: Option<&str>,
        new_id: &str,
        now: &str,
    ) -> RequestOutcome {
        if let Some(eff) = self.effective(id) {
            if perms.is_subset_of(&eff) {
                return RequestOutcome::Granted;
            }
        }
        if self.is_denied(id, perms) {
            return RequestOutcome::Denied;
        }
        if let Some(p) = self.find_pending(id, perms) {
            return RequestOutcome::Pending {
                request_id: p.id.clone(),
                new: false,
            };
        }
        match self.add_pending(id, perms, reason, new_id, now) {
            Ok(()) => RequestOutcome::Pending {
                request_id: new_id.to_string(),
                new: true,
            },
            Err(_) => RequestOutcome::Denied,
        }
    }

    /// Appends a pending request; an error when the module is not approved.
    pub fn add_pending(
        &mut self,
        id: &str,
        perms: &PermissionSet,
        reason: Option<&str>,
        req_id: &str,
        now: &str,
    ) -> Result<(), PermError> {
        let e = self
            .modules
            .get_mut(id)
            .ok_or_else(|| PermError::NotApproved(id.to_string()))?;
        e.pending.push(PendingRequest {
            id: req_id.to_string(),
            permissions: perms.clone(),
            reason: reason.map(str::to_string),
            requested_at: Some(now.to_string()),
        });
        Ok(())
    }

    /// Finds a pending request by id or unique id prefix (`None`: the only pending request).
    pub fn resolve_request(&self, id: &str, req: Option<&str>) -> Result<usize, PermError> {
        let e = self
            .modules
            .get(id)
            .ok_or_else(|| PermError::NotApproved(id.to_string()))?;
        if e.pending.is_empty() {
            return Err(PermError::NoPending(id.to_string()));
        }
        let req = req.unwrap_or("");
        if let Some(i) = e.pending.iter().position(|p| p.id == req) {
            return Ok(i);
        }
        let hits: Vec<usize> = e
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.id.starts_with(req))
            .map(|(i, _)| i)
            .collect();
        match hits.as_slice() {
            [i] => Ok(*i),
            [] => Err(PermError::RequestNotFound {
                module: id.to_string(),
                request: req.to_string(),
            }),
            many => Err(PermError::Ambiguous {
                module: id.to_string(),
                request: req.to_string(),
                matches: many.iter().map(|i| e.pending[*i].id.clone()).collect(),
            }),
        }
    }

    /// Grants a pending request: it moves to `dynamic` (`grantedAt = now`) and its values leave
    /// every denied entry (entries left empty are dropped). Returns the granted request.
    pub fn grant(
        &mut self,
        id: &str,
        req: Option<&str>,
        now: &str,
    ) -> Result<PendingRequest, PermError> {
        let i = self.resolve_request(id, req)?;
        let e = self
            .modules
            .get_mut(id)
            .ok_or_else(|| PermError::NotApproved(id.to_string()))?;
        let p = e.pending.remove(i);
        e.dynamic.push(DynamicGrant {
            permissions: p.permissions.clone(),
            reason: p.reason.clone(),
            granted_at: Some(now.to_string()),
        });
        for d in &mut e.denied {
            d.permissions = d.permissions.minus(&p.permissions);
        }
        e.denied.retain(|d| !d.permissions.is_empty());
        Ok(p)
    }

    /// Denies a pending request: it moves to `denied` (`deniedAt = now`).
    pub fn deny(
        &mut self,
        id: &str,
        req: Option<&str>,
        now: &str,
    ) -> Result<PendingRequest, PermError> {
        let i = self.resolve_request(id, req)?;
        let e = self
            .modules
            .get_mut(id)
            .ok_or_else(|| PermError::NotApproved(id.to_string()))?;
        let p = e.pending.remove(i);
        e.denied.push(DeniedRequest {
            permissions: p.permissions.clone(),
            reason: p.reason.clone(),
            denied_at: Some(now.to_string()),
        });
        Ok(p)
    }

    /// Removes the module's entry and every service claim pointing to it; false when there was
    /// nothing to remove.
    pub fn revoke(&mut self, id: &str) -> bool {
        let had = self.modules.remove(id).is_some() | self.unrecognized.remove(id).is_some();
        self.service_providers.retain(|_, m| m != id);
        had
    }

    /// Removes one value (or a whole field) from base and every dynamic grant; false when the
    /// module is not approved or the field is unknown.
    pub fn revoke_value(&mut self, id: &str, field: &str, value: Option<&str>) -> bool {
        let Some(e) = self.modules.get_mut(id) else {
            return false;
        };
        if !e.base.remove(field, value) {
            return false;
        }
        for d in &mut e.dynamic {
            d.permissions.remove(field, value);
        }
        true
    }

    /// Claims `service` for `id`; false when another module already claimed it.
    pub fn register_service_provider(&mut self, service: &str, id: &str) -> bool {
        match self.service_providers.get(service) {
            Some(m) if m != id => false,
            _ => {
                self.service_providers
                    .insert(service.to_string(), id.to_string());
                true
            }
        }
    }

    /// Every pending request, by module.
    pub fn all_pending(&self) -> BTreeMap<String, Vec<PendingRequest>> {
        self.modules
            .iter()
            .filter(|(_, e)| !e.pending.is_empty())
            .map(|(id, e)| (id.clone(), e.pending.clone()))
            .collect()
    }
}

/// Parses `permissions.yaml` (strict YAML: a duplicate key is an error with line and column).
/// Entries with `base` are read as they are (compat layout); entries with `permissions` are the
/// old SPEC layout and are migrated (`permissions` → `base`, `manifestHash` → `baseManifestHash`,
/// `grantedAt` → `baseGrantedAt`); any other entry, or one that does not fit the layout, is kept
/// in [`PermissionsFile::unrecognized`] and the module counts as not approved.
pub fn parse(bytes: &[u8]) -> Result<PermissionsFile, YamlError> {
    let root = yaml::parse_value(bytes)?;
    let root = match root {
        Value::Null => return Ok(PermissionsFile::default()),
        Value::Object(m) => m,
        _ => {
            return Err(YamlError {
                message: "the top level must be a mapping with `modules`".into(),
            })
        }
    };
    let mut file = PermissionsFile::default();
    match root.get("modules") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mods)) => {
            for (id, raw) in mods {
                match read_entry(raw) {
                    Some(entry) => {
                        file.modules.insert(id.clone(), entry);
                    }
                    None => {
                        file.unrecognized.insert(id.clone(), raw.clone());
                    }
                }
            }
        }
        Some(_) => {
            return Err(YamlError {
                message: "`modules` must be a mapping of module id to entry".into(),
            })
        }
    }
    if let Some(Value::Object(sp)) = root.get("serviceProviders") {
        for (svc, m) in sp {
            if let Value::String(m) = m {
                file.service_providers.insert(svc.clone(), m.clone());
            }
        }
    }
    Ok(file)
}

/// Why an entry of `modules` is not understood (for `pons modules list` / status).
pub fn unrecognized_reason(raw: &Value) -> String {
    match raw {
        Value::Object(m) if m.contains_key("base") || m.contains_key("permissions") => {
            let mut v = raw.clone();
            strip_nulls(&mut v);
            let e = if m.contains_key("base") {
                serde_json::from_value::<ModuleEntry>(v).err()
            } else {
                serde_json::from_value::<PermissionSet>(
                    v.get("permissions").cloned().unwrap_or_default(),
                )
                .err()
            };
            e.map(|e| e.to_string())
                .unwrap_or_else(|| "it does not fit the layout".into())
        }
        _ => "it has neither `base` nor `permissions`".into(),
    }
}

fn read_entry(raw: &Value) -> Option<ModuleEntry> {
    let Value::Object(m) = raw else { return None };
    let mut v = raw.clone();
    strip_nulls(&mut v);
    if m.contains_key("base") {
        return serde_json::from_value(v).ok();
    }
    if m.contains_key("permissions") {
        let base: PermissionSet = serde_json::from_value(v.get("permissions")?.clone()).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        return Some(ModuleEntry {
            base,
            base_manifest_hash: s("manifestHash").unwrap_or_default(),
            base_granted_at: s("grantedAt"),
            ..ModuleEntry::default()
        });
    }
    None
}

/// YAML `key:` with no value is null; treat it as absent everywhere in an entry.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn set_json(set: &PermissionSet, all_keys: bool) -> Value {
    let mut m = Map::new();
    for (name, values) in set.fields() {
        if all_keys || !values.is_empty() {
            m.insert(name.into(), Value::from(values.clone()));
        }
    }
    Value::Object(m)
}

fn entry_json(e: &ModuleEntry) -> Value {
    let mut m = Map::new();
    m.insert("base".into(), set_json(&e.base, true));
    m.insert(
        "baseManifestHash".into(),
        e.base_manifest_hash.clone().into(),
    );
    if let Some(t) = &e.base_granted_at {
        m.insert("baseGrantedAt".into(), t.clone().into());
    }
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    };
    let dynamic = e
        .dynamic
        .iter()
        .map(|d| {
            let mut o = Map::new();
            o.insert("permissions".into(), set_json(&d.permissions, false));
            opt(&mut o, "reason", &d.reason);
            opt(&mut o, "grantedAt", &d.granted_at);
            Value::Object(o)
        })
        .collect::<Vec<_>>();
    let pending = e
        .pending
        .iter()
        .map(|p| {
            let mut o = Map::new();
            o.insert("id".into(), p.id.clone().into());
            o.insert("permissions".into(), set_json(&p.permissions, false));
            opt(&mut o, "reason", &p.reason);
            opt(&mut o, "requestedAt", &p.requested_at);
            Value::Object(o)
        })
        .collect::<Vec<_>>();
    let denied = e
        .denied
        .iter()
        .map(|d| {
            let mut o = Map::new();
            o.insert("permissions".into(), set_json(&d.permissions, false));
            opt(&mut o, "reason", &d.reason);
            opt(&mut o, "deniedAt", &d.denied_at);
            Value::Object(o)
        })
        .collect::<Vec<_>>();
    m.insert("dynamic".into(), dynamic.into());
    m.insert("pending".into(), pending.into());
    m.insert("denied".into(), denied.into());
    if let Some(c) = &e.capabilities {
        m.insert(
            "capabilities".into(),
            serde_json::json!({"topics": c.topics, "services": c.services}),
        );
    }
    opt(&mut m, "firstSpawnAt", &e.first_spawn_at);
    Value::Object(m)
}

/// Renders the file as block-style YAML in the compat layout: modules sorted by id (entries that
/// were not understood are written back as read), base with all six keys, then
/// `serviceProviders`. Stable: rendering a parsed rendering gives the same text.
pub fn render(file: &PermissionsFile) -> String {
    let mut mods: BTreeMap<&str, Value> = BTreeMap::new();
    for (id, raw) in &file.unrecognized {
        mods.insert(id, raw.clone());
    }
    for (id, e) in &file.modules {
        mods.insert(id, entry_json(e));
    }
    let mut root = Map::new();
    root.insert(
        "modules".into(),
        Value::Object(mods.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
    );
    root.insert(
        "serviceProviders".into(),
        Value::Object(
            file.service_providers
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
    );
    yaml::render(&Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPAT: &str = r#"modules:
  llm:
    base:
      net: [api.anthropic.com]
      read: [., ~/.pons/]
      write: []
      env: [ANTHROPIC_API_KEY]
      run: [gh]
      sys: []
    baseManifestHash: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    baseGrantedAt: 2026-01-15T10:30:00.000Z
    dynamic:
      - permissions: { env: [GITHUB_TOKEN] }
        reason: needs token
        grantedAt: 2026-01-16T08:00:00.000Z
    pending:
      - id: 0b9d2c4e-1111-4222-8333-444455556666
        permissions: { net: [example.com] }
        reason: fetch docs
        requestedAt: 2026-01-16T08:01:00.000Z
    denied:
      - permissions: { run: [/bin/sh] }
        reason: nope
        deniedAt: 2026-01-16T08:02:00.000Z
    capabilities:
      topics: [llm:generate]
      services: [http-router]
    firstSpawnAt: 2026-01-15T10:31:00.000Z
serviceProviders:
  providerRegistry: llm
"#;

    fn set(net: &[&str], env: &[&str]) -> PermissionSet {
        PermissionSet {
            net: net.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn parses_compat_layout() {
        let f = parse(COMPAT.as_bytes()).unwrap();
        let e = &f.modules["llm"];
        assert_eq!(e.base.read, vec![".", "~/.pons/"]);
        assert_eq!(e.base_manifest_hash.len(), 64);
        assert_eq!(e.dynamic[0].permissions.env, vec!["GITHUB_TOKEN"]);
        assert_eq!(e.pending[0].reason.as_deref(), Some("fetch docs"));
        assert_eq!(
            e.first_spawn_at.as_deref(),
            Some("2026-01-15T10:31:00.000Z")
        );
        assert_eq!(f.service_providers["providerRegistry"], "llm");
        let eff = f.effective("llm").unwrap();
        assert_eq!(eff.env, vec!["ANTHROPIC_API_KEY", "GITHUB_TOKEN"]);
        assert!(eff.write.is_empty());
    }

    #[test]
    fn render_is_stable_and_roundtrips() {
        let f = parse(COMPAT.as_bytes()).unwrap();
        let text = render(&f);
        let again = parse(text.as_bytes()).unwrap();
        assert_eq!(f, again);
        assert_eq!(text, render(&again));
        assert!(text.contains("baseManifestHash: 9f86"));
    }

    #[test]
    fn migrates_old_layout() {
        let f = parse(
            b"modules:\n  a:\n    permissions:\n      net: [x]\n    manifestHash: abc\n    grantedAt: t0\n",
        )
        .unwrap();
        let e = &f.modules["a"];
        assert_eq!(e.base.net, vec!["x"]);
        assert_eq!(e.base_manifest_hash, "abc");
        assert_eq!(e.base_granted_at.as_deref(), Some("t0"));
        assert!(render(&f).contains("base:"));
    }

    #[test]
    fn other_shapes_are_not_approved_but_kept() {
        let f =
            parse(b"modules:\n  a: 5\n  b:\n    foo: 1\n  c:\n    base:\n      ffi: []\n").unwrap();
        assert!(f.modules.is_empty());
        assert_eq!(f.unrecognized.len(), 3);
        assert!(unrecognized_reason(&f.unrecognized["c"]).contains("ffi"));
        let text = render(&f);
        assert!(text.contains("foo: 1"), "{text}");
    }

    #[test]
    fn null_fields_are_absent() {
        let f = parse(b"modules:\n  a:\n    base:\n      net:\n    dynamic:\n").unwrap();
        assert!(f.is_approved("a"));
    }

    #[test]
    fn duplicate_keys_rejected() {
        let e = parse(b"modules:\n  a:\n    base: {}\n  a:\n    base: {}\n").unwrap_err();
        assert!(e.message.starts_with("line 4, column 3"), "{}", e.message);
        assert!(parse(b"- 1\n").is_err());
        assert!(parse(b"modules: [1]\n").is_err());
        assert_eq!(parse(b"").unwrap(), PermissionsFile::default());
    }

    #[test]
    fn approve_resets_entry() {
        let mut f = parse(COMPAT.as_bytes()).unwrap();
        f.approve("llm", set(&["a"], &[]), Capabilities::default(), "h", "now");
        let e = &f.modules["llm"];
        assert!(e.dynamic.is_empty() && e.pending.is_empty() && e.first_spawn_at.is_none());
        assert_eq!(e.base_granted_at.as_deref(), Some("now"));
        assert!(f.set_first_spawn("llm", "t1"));
        assert!(!f.set_first_spawn("zzz", "t1"));
        assert!(f.stored_capabilities("llm").is_none());
    }

    #[test]
    fn request_flow() {
        let mut f = PermissionsFile::default();
        // not approved → denied
        assert_eq!(
            f.request("m", &set(&["x"], &[]), None, "r1", "t"),
            RequestOutcome::Denied
        );
        f.approve("m", set(&["a"], &[]), Capabilities::default(), "h", "t");
        assert_eq!(
            f.request("m", &set(&["a"], &[]), None, "r1", "t"),
            RequestOutcome::Granted
        );
        assert_eq!(
            f.request("m", &PermissionSet::default(), None, "r1", "t"),
            RequestOutcome::Granted
        );
        let r = f.request("m", &set(&["b"], &[]), Some("why"), "r1", "t");
        assert_eq!(
            r,
            RequestOutcome::Pending {
                request_id: "r1".into(),
                new: true
            }
        );
        let r = f.request("m", &set(&["b"], &[]), None, "r2", "t");
        assert_eq!(
            r,
            RequestOutcome::Pending {
                request_id: "r1".into(),
                new: false
            }
        );
        assert_eq!(r.to_json()["requestId"], "r1");
        let c = f.check("m", &set(&["a", "b"], &["E"]));
        assert!(!c.granted);
        assert_eq!(c.missing, set(&["b"], &["E"]));
        assert_eq!(
            c.to_json()["missing"],
            serde_json::json!({"net": ["b"], "env": ["E"]})
        );
        // deny then ask again → denied without a new request
        f.deny("m", Some("r"), "t2").unwrap();
        assert_eq!(
            f.request("m", &set(&["b", "c"], &[]), None, "r3", "t"),
            RequestOutcome::Denied
        );
        assert!(f.modules["m"].pending.is_empty());
        // a later grant of b removes it from denied
        f.add_pending("m", &set(&["b"], &[]), None, "r4", "t")
            .unwrap();
        let g = f.grant("m", None, "t3").unwrap();
        assert_eq!(g.id, "r4");
        assert!(f.modules["m"].denied.is_empty());
        assert_eq!(f.effective("m").unwrap().net, vec!["a", "b"]);
        assert!(f.check("m", &set(&["b"], &[])).granted);
    }

    #[test]
    fn request_id_prefixes() {
        let mut f = PermissionsFile::default();
        f.approve(
            "m",
            PermissionSet::default(),
            Capabilities::default(),
            "h",
            "t",
        );
        assert_eq!(
            f.grant("m", None, "t"),
            Err(PermError::NoPending("m".into()))
        );
        f.add_pending("m", &set(&["a"], &[]), None, "abc1", "t")
            .unwrap();
        f.add_pending("m", &set(&["b"], &[]), None, "abd2", "t")
            .unwrap();
        assert!(matches!(
            f.grant("m", Some("ab"), "t"),
            Err(PermError::Ambiguous { .. })
        ));
        assert!(matches!(
            f.grant("m", None, "t"),
            Err(PermError::Ambiguous { .. })
        ));
        assert!(matches!(
            f.grant("m", Some("x"), "t"),
            Err(PermError::RequestNotFound { .. })
        ));
        assert_eq!(f.grant("m", Some("abd"), "t").unwrap().id, "abd2");
        assert_eq!(f.deny("m", Some("abc1"), "t").unwrap().id, "abc1");
        assert!(matches!(
            f.grant("zz", None, "t"),
            Err(PermError::NotApproved(_))
        ));
        let msg = PermError::NotApproved("zz".into()).to_string();
        assert!(msg.contains("pons modules approve zz"));
    }

    #[test]
    fn revoke_removes_claims() {
        let mut f = parse(COMPAT.as_bytes()).unwrap();
        assert!(f.revoke_value("llm", "env", Some("GITHUB_TOKEN")));
        assert!(f.effective("llm").unwrap().env == vec!["ANTHROPIC_API_KEY"]);
        assert!(!f.revoke_value("llm", "ffi", None));
        assert!(f.register_service_provider("x", "llm"));
        assert!(!f.register_service_provider("x", "other"));
        assert!(f.revoke("llm"));
        assert!(f.service_providers.is_empty());
        assert!(f.effective("llm").is_none());
        assert!(!f.revoke("llm"));
    }
}
