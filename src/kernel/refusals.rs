//! Refusals and fallbacks a pass decides on — blocked modules (unapproved, tampered, unknown
//! runtime, …), notes on manifests (an unknown runtime started as deno, an unsupported schema),
//! manifest fields read leniently, a missing config.yaml — logged once at warn (a module disabled
//! in config.yaml at info), and again only when they change (a manifest's warnings again when the
//! manifest changes).

use std::collections::BTreeSet;
use std::path::Path;

use pons_reconciler::Desired;

/// What was reported by earlier passes.
#[derive(Default)]
pub struct Refusals {
    seen: BTreeSet<String>,
}

impl Refusals {
    /// Logs what is new in this pass's refusals; forgets what went away.
    pub fn report(&mut self, desired: &Desired, config_missing: Option<&Path>) {
        let mut now = BTreeSet::new();
        for b in &desired.blocked {
            let key = format!("blocked\0{}\0{}", b.id, b.reason);
            if !self.seen.contains(&key) {
                if matches!(b.reason, pons_reconciler::BlockReason::Disabled) {
                    // The operator's own `pons stop`: worth a line, not a warning.
                    tracing::info!(moduleId = %b.id, reason = b.reason.token(), "module not started: {}", b.reason);
                } else {
                    tracing::warn!(moduleId = %b.id, reason = b.reason.token(), "module not started: {}", b.reason);
                }
            }
            now.insert(key);
        }
        for m in desired.modules.values() {
            for note in &m.notes {
                let key = format!("note\0{}\0{note}", m.id);
                if !self.seen.contains(&key) {
                    tracing::warn!(moduleId = %m.id, "{note}");
                }
                now.insert(key);
            }
        }
        for w in &desired.manifest_warnings {
            for msg in &w.warnings {
                let key = format!("lenient\0{}\0{}\0{msg}", w.dir_name, w.manifest_hash);
                if !self.seen.contains(&key) {
                    tracing::warn!(module = %w.module, dir = %w.dir_name, "module.json: {msg}");
                }
                now.insert(key);
            }
        }
        if let Some(file) = config_missing {
            let key = "config-missing".to_string();
            if !self.seen.contains(&key) {
                tracing::warn!(file = %file.display(), "config.yaml not found — using defaults");
            }
            now.insert(key);
        }
        self.seen = now;
    }
}
