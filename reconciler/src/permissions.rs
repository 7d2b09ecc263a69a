//! `permissions.yaml` (compat.md §3.1): parsing (new and old layouts), the pure operations on it
//! (approve, request, grant, deny, revoke, effective permissions) and its YAML rendering.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// OS permissions of a module: exactly the six keys of compat.md §2.4.
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
}
