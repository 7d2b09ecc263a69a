//! Ordered shutdown: tiers in reverse dependency order — a module is stopped
//! before the providers it requires — each tier in parallel, each module through its supervisor
//! (`shutdown` message → grace → SIGTERM to its group → SIGKILL), then one sweep of every
//! module's tagged descendants (see [`crate::sandbox::tag`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::supervisor::SupCmd;
use super::Kernel;

/// Shutdown tiers: tier 0 holds the modules nobody depends on.
pub fn tiers(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut remaining: BTreeSet<String> = deps.keys().cloned().collect();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let tier: Vec<String> = remaining
            .iter()
            .filter(|m| {
                !remaining
                    .iter()
                    .any(|o| o != *m && deps.get(o).is_some_and(|d| d.contains(*m)))
            })
            .cloned()
            .collect();
        let tier = if tier.is_empty() {
            remaining.iter().cloned().collect()
        } else {
            tier
        };
        for m in &tier {
            remaining.remove(m);
        }
        out.push(tier);
    }
    out
}

/// Stops every module, tier by tier.
pub async fn stop_all(kernel: &Arc<Kernel>) {
    let (deps, sups) = {
        let core = kernel.core.lock();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut sups = BTreeMap::new();
        for e in core.modules.values() {
            let providers = e
                .desired
                .manifest
                .requires
                .iter()
                .filter_map(|s| core.declared.get(s))
                .filter(|p| **p != e.id)
                .map(|p| p.to_string())
                .collect();
            deps.insert(e.id.to_string(), providers);
            sups.insert(e.id.to_string(), e.sup.clone());
        }
        (deps, sups)
    };
    for (tier, ids) in tiers(&deps).into_iter().enumerate() {
        let mut waits = Vec::new();
        for id in ids {
            if let Some(sup) = sups.get(&id) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if sup
                    .send(SupCmd::Stop {
                        reason: pons_reconciler::reason::Reason::new(
                            pons_reconciler::reason::SHUTDOWN,
                            "",
                        ),
                        tier,
                        done: Some(tx),
                    })
                    .is_ok()
                {
                    waits.push(rx);
                }
            }
        }
        for w in waits {
            let _ = w.await;
        }
    }
    sweep_all().await;
}

/// Kills what is left of every module's descendants (those that left their process groups): one
/// scan of `/proc` for the whole shutdown instead of one per module.
async fn sweep_all() {
    use crate::sandbox::tag;
    let me = std::process::id();
    let floor = tag::start_time(me as i32).unwrap_or(0);
    let swept = tokio::task::spawn_blocking(move || {
        tag::sweep(
            tag::Scope::Kernel(me),
            floor,
            super::supervisor::SWEEP_DEADLINE,
        )
    })
    .await;
    let Ok(swept) = swept else {
        return;
    };
    if !swept.killed.is_empty() {
        tracing::info!(pids = ?swept.killed, "module.descendants.killed — they had left their modules' process groups");
    }
    if !swept.survivors.is_empty() {
        tracing::warn!(pids = ?swept.survivors, "module.descendants.alive — still running after SIGKILL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_first() {
        let mut deps = BTreeMap::new();
        deps.insert("gateway".to_string(), BTreeSet::from(["agent".to_string()]));
        deps.insert("agent".to_string(), BTreeSet::from(["llm".to_string()]));
        deps.insert("llm".to_string(), BTreeSet::new());
        deps.insert("solo".to_string(), BTreeSet::new());
        assert_eq!(
            tiers(&deps),
            vec![
                vec!["gateway".to_string(), "solo".to_string()],
                vec!["agent".to_string()],
                vec!["llm".to_string()]
            ]
        );
    }
}
