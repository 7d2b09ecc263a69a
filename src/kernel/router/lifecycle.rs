//! Readiness and the service directory: `ready` handling, activation (`deps_ready`,
//! `service_available`, `system:module:ready`), waiting for providers that are *ready*, and what
//! happens when a module's process leaves.

use std::sync::Arc;
use std::time::Instant;

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::Status;

use super::Core;
use crate::protocol::outbound;

impl Core {
    /// A module sent `ready`. The message content is ignored: the manifest on disk and the
    /// approved capabilities decide. A second `ready` changes nothing.
    pub(super) fn on_ready(&mut self, module: &Arc<str>) {
        let Some(e) = self.modules.get(module) else {
            return;
        };
        if !matches!(e.status, Status::Starting | Status::Restarting) {
            tracing::debug!(module = %module, "duplicate ready — ignoring");
            return;
        }
        let startup_ms = e.spawned_at.map(|t| t.elapsed().as_millis() as u64);
        tracing::info!(moduleId = %module, startupMs = startup_ms, "module.ready");

        // Subscriptions: `subscribes` plus the manifest's capability topics, each allowed by the
        // approved capabilities.
        let d = e.desired.clone();
        let mut topics: Vec<&String> = d.manifest.subscribes.iter().collect();
        if let Some(c) = &d.manifest.capabilities {
            topics.extend(c.topics.iter());
        }
        topics.sort();
        topics.dedup();
        for t in topics {
            let allowed = self.settings.enforcement == EnforcementMode::Off
                || e_topics_cover(self, module, t);
            if !allowed && !self.violation(module, &format!("subscribe:{t}")) {
                continue;
            }
            self.bus.subscribe(t, module);
        }

        let missing = self.missing_requires(&d.manifest.requires);
        if missing.is_empty() {
            self.activate(module);
        } else {
            tracing::info!(module = %module, waiting = ?missing, "Waiting for required services");
            if let Some(e) = self.modules.get_mut(module) {
                e.waiting_since = Some(Instant::now());
            }
            self.set_status(module, Status::Waiting);
        }
    }

    /// Required services whose provider is not ready (here, or on another node for an imported
    /// service).
    pub fn missing_requires(&self, requires: &[String]) -> Vec<String> {
        requires
            .iter()
            .filter(|s| !self.registered.contains_key(s.as_str()) && !self.remote_provides(s))
            .cloned()
            .collect()
    }

    /// Makes a module ready and cascades to the modules waiting for it.
    pub(super) fn activate(&mut self, first: &Arc<str>) {
        let mut queue = vec![first.clone()];
        while let Some(module) = queue.pop() {
            let Some(e) = self.modules.get_mut(&module) else {
                continue;
            };
            e.ready_at = Some(Instant::now());
            e.waiting_since = None;
            let d = e.desired.clone();
            self.set_status(&module, Status::Ready);
            for s in &d.manifest.provides {
                self.registered.insert(s.clone(), module.clone());
            }
            if !d.manifest.provides.is_empty() {
                tracing::info!(module = %module, services = ?d.manifest.provides, "Services registered");
            }
            self.send(&module, outbound::deps_ready);
            for s in &d.manifest.optional_requires {
                if self.registered.get(s).is_some_and(|p| *p != module) {
                    self.send(&module, |b| outbound::service_available(b, s));
                }
            }
            self.emit(
                "system:module:ready",
                &serde_json::json!({
                    "moduleId": &*module,
                    "provides": d.manifest.provides,
                    "version": d.version.clone().unwrap_or_else(|| "unknown".into()),
                }),
            );
            self.announce_services(&module, &d.manifest.provides);
            // Modules waiting for these services.
            for w in self.waiting_with_requires_met() {
                tracing::info!(module = %w, "All required services available — activating");
                queue.push(w);
            }
        }
    }

    /// `service_available` to every other ready module that lists one of `services` in
    /// `optionalRequires` or `requires` (a required provider that came back).
    fn announce_services(&self, provider: &Arc<str>, services: &[String]) {
        for m in self.modules.values() {
            if m.id == *provider || m.status != Status::Ready {
                continue;
            }
            let man = &m.desired.manifest;
            for s in services {
                if man.optional_requires.contains(s) || man.requires.contains(s) {
                    self.send(&m.id, |b| outbound::service_available(b, s));
                }
            }
        }
    }

    /// The current process of `module` is gone (exit, stop, failure): unregister its services,
    /// answer RPCs in flight, drop its subscriptions, close its outbox.
    pub fn on_leave(&mut self, module: &str) {
        self.registered.retain(|_, p| &**p != module);
        self.rpcs_module_left(module);
        self.bus.unsubscribe_all(module);
        if let Some(e) = self.modules.get_mut(module) {
            if let Some(ob) = e.outbox.take() {
                e.dropped_before += ob.dropped();
                e.msgs_out_before += ob.pushed();
                ob.close();
            }
            e.pid = None;
            e.ready_at = None;
            e.waiting_since = None;
        }
    }
}

fn e_topics_cover(core: &Core, module: &str, topic: &str) -> bool {
    core.modules
        .get(module)
        .is_some_and(|e| e.topics.covers(topic))
}

impl Core {
    /// Modules waiting for services whose `requires` are all met now (locally or by another node).
    pub(super) fn waiting_with_requires_met(&self) -> Vec<Arc<str>> {
        self.modules
            .values()
            .filter(|w| w.status == Status::Waiting)
            .filter(|w| {
                self.missing_requires(&w.desired.manifest.requires)
                    .is_empty()
            })
            .map(|w| w.id.clone())
            .collect()
    }
}
