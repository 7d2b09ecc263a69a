//! The plan: the ordered, minimal list of actions that takes observed to desired.
//!
//! CONTRACT: `plan(desired, observed)` is a pure, deterministic function. `pons plan` and a
//! reconcile pass call the same function, so plan == apply.

use serde::Serialize;

/// What to do to one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Spawn,
    Stop,
    Restart,
    Config,
    Blocked,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub action: ActionKind,
    pub module: String,
    /// One plain sentence, e.g. "config section `gateway` changed".
    pub reason: String,
    /// Config actions: the changed section names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sections: Option<Vec<String>>,
    /// Config actions: unified diff of each changed section (as written, never interpolated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Ordered actions. Stops first (reverse dependency order), then restarts, spawns (dependency
/// order), config pushes; blocked entries last.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

/// Options of one planning call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Crashed modules get a `restart` action (an explicit `pons apply`; `pons plan` previews
    /// that). Automatic passes leave crashed modules alone until their spawn fingerprint changes.
    pub retry_crashed: bool,
}

/// Computes the plan that takes `observed` to `desired`.
pub fn plan(
    desired: &crate::desired::Desired,
    observed: &crate::observed::Observed,
    opts: PlanOptions,
) -> Plan {
    let _ = (desired, observed, opts);
    todo!("implemented by the reconciler work")
}
