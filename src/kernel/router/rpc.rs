//! RPC between modules: capability check, provider lookup, kernel-owned ids
//! towards the provider, the caller's id restored on the way back, timeouts, cleanup when either
//! side leaves.
//!
//! In-flight RPCs are capped per caller (`lifecycle.maxPendingRpcs`, the design): past the cap
//! a request is answered at once with `too_many_pending: …`, never queued, so a module firing
//! requests at a provider that never answers costs the kernel a bounded amount of memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::Status;
use serde_json::value::RawValue;

use super::Core;
use crate::kernel::outbox::Outbox;
use crate::protocol::outbound;

/// An RPC forwarded to a provider and not answered yet.
#[derive(Debug)]
pub struct PendingRpc {
    pub caller: Arc<str>,
    pub caller_gen: u64,
    pub target: Arc<str>,
    pub original_id: String,
    pub service: String,
    pub method: String,
}

/// The RPCs in flight, keyed by the kernel's own id. Timeouts are kept in a queue ordered by
/// deadline (all RPCs share one timeout, so insertion order is deadline order).
#[derive(Debug, Default)]
pub struct PendingRpcs {
    next: u64,
    live: super::fasthash::FastMap<u64, PendingRpc>,
    deadlines: VecDeque<(Instant, u64)>,
    /// RPCs in flight per caller, and whether a refusal was logged since it last had none in
    /// flight (one warning per flood, not one per refused request).
    per_caller: super::fasthash::FastMap<Arc<str>, (usize, bool)>,
}

const ID_PREFIX: &str = "k-";

impl PendingRpcs {
    fn insert(&mut self, rpc: PendingRpc, deadline: Instant) -> u64 {
        self.next += 1;
        let id = self.next;
        self.per_caller.entry(rpc.caller.clone()).or_default().0 += 1;
        self.live.insert(id, rpc);
        // A shorter timeout set later could break the ordering; keep the queue sorted.
        let pos = self
            .deadlines
            .iter()
            .rposition(|(d, _)| *d <= deadline)
            .map_or(0, |p| p + 1);
        self.deadlines.insert(pos, (deadline, id));
        if self.deadlines.len() > 1024 && self.deadlines.len() > 2 * self.live.len() {
            let live = &self.live;
            self.deadlines.retain(|(_, id)| live.contains_key(id));
        }
        id
    }

    /// Removes an RPC from the table (answered, timed out, a side left).
    fn take(&mut self, kid: u64) -> Option<PendingRpc> {
        let p = self.live.remove(&kid)?;
        if let Some(n) = self.per_caller.get_mut(&p.caller) {
            n.0 -= 1;
            if n.0 == 0 {
                self.per_caller.remove(&p.caller);
            }
        }
        Some(p)
    }

    /// RPCs of `caller` in flight.
    pub fn in_flight(&self, caller: &str) -> usize {
        self.per_caller.get(caller).map_or(0, |n| n.0)
    }

    /// Whether a refusal of `caller` at the cap is the first since it reached it (to log once).
    fn first_refusal(&mut self, caller: &str) -> bool {
        match self.per_caller.get_mut(caller) {
            Some(n) if !n.1 => {
                n.1 = true;
                true
            }
            _ => false,
        }
    }

    fn parse_id(id: &str) -> Option<u64> {
        id.strip_prefix(ID_PREFIX)?.parse().ok()
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The earliest deadline still queued.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.front().map(|(d, _)| *d)
    }
}

impl Core {
    pub(super) fn rpc_request(
        &mut self,
        caller: &Arc<str>,
        id: &str,
        service: &str,
        method: &str,
        params: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(c) = self.modules.get(caller) else {
            return;
        };
        if c.status != Status::Ready {
            let error = if c.status == Status::Stopping {
                "Module is stopping: no new RPCs"
            } else {
                "Module not ready"
            };
            tracing::warn!(module = %caller, service = %service, status = c.status.as_str(), "Rejected RPC from module not in ready state");
            self.send(caller, |b| outbound::rpc_error(b, id, error));
            return;
        }
        let caller_gen = c.gen;
        if self.settings.enforcement != EnforcementMode::Off && !c.services.contains(service) {
            let target = format!("rpc:{service}");
            if !self.violation(caller, &target) {
                self.send(caller, |b| outbound::rpc_error(b, id, "forbidden"));
                self.fail_violation(caller, target);
                return;
            }
        }
        let max = self.settings.max_pending_rpcs;
        if self.rpcs.in_flight(caller) >= max {
            if self.rpcs.first_refusal(caller) {
                tracing::warn!(moduleId = %caller, limit = max, service = %service, "rpc.too_many_pending: further RPCs are refused until replies arrive (lifecycle.maxPendingRpcs)");
            }
            // Short: a flooding caller may get many of these before it reads them.
            let error = format!("too_many_pending: {max} RPCs in flight");
            self.send(caller, |b| outbound::rpc_error(b, id, &error));
            return;
        }
        let Some(provider) = self.declared.get(service).cloned() else {
            self.send(caller, |b| outbound::rpc_error(b, id, "service_not_found"));
            return;
        };
        let outbox = match self.modules.get(&provider) {
            Some(p) if p.status == Status::Ready => Ok(p.outbox.clone()),
            // Down for good: it owns no service (another provider may take it over).
            Some(p) if matches!(p.status, Status::Crashed | Status::Stopped) => {
                Err("service_not_found")
            }
            _ => Ok(None),
        };
        let outbox = match outbox {
            Ok(Some(ob)) => ob,
            Ok(None) => {
                self.send(caller, |b| outbound::rpc_error(b, id, "module_not_ready"));
                return;
            }
            Err(error) => {
                self.send(caller, |b| outbound::rpc_error(b, id, error));
                return;
            }
        };
        let deadline = Instant::now() + self.settings.rpc_timeout;
        let kid = self.rpcs.insert(
            PendingRpc {
                caller: caller.clone(),
                caller_gen,
                target: provider.clone(),
                original_id: id.to_string(),
                service: service.to_string(),
                method: method.to_string(),
            },
            deadline,
        );
        let kid_str = format!("{ID_PREFIX}{kid}");
        if self.bus_has_rpc_monitors() {
            let ts = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.emit(
                "system:rpc",
                &serde_json::json!({"from": &**caller, "service": service, "method": method, "ts": ts}),
            );
        }
        outbox.push_with(|b| outbound::rpc_request(b, &kid_str, caller, service, method, params));
        if outbox.is_congested() {
            congested.push(outbox);
        }
    }

    fn bus_has_rpc_monitors(&self) -> bool {
        let mut any = false;
        self.bus.for_each_subscriber("system:rpc", |_| any = true);
        any
    }

    pub(super) fn rpc_response(
        &mut self,
        from: &Arc<str>,
        id: &str,
        result: Option<&RawValue>,
        error: Option<&RawValue>,
        congested: &mut Vec<Arc<Outbox>>,
    ) {
        let Some(kid) = PendingRpcs::parse_id(id) else {
            return;
        };
        let Some(p) = self.rpcs.live.get(&kid) else {
            return;
        };
        if p.target != *from {
            tracing::warn!(module = %from, id = %id, "RPC response from unexpected module — ignoring");
            return;
        }
        let Some(p) = self.rpcs.take(kid) else {
            return;
        };
        if let Some(c) = self.modules.get(&p.caller) {
            if c.gen == p.caller_gen {
                if let Some(ob) = &c.outbox {
                    ob.push_with(|b| outbound::rpc_response(b, &p.original_id, result, error));
                    if ob.is_congested() {
                        congested.push(ob.clone());
                    }
                }
            }
        }
    }

    /// Answers every RPC whose deadline passed with `timeout`. Returns the next deadline.
    pub fn expire_rpcs(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&(deadline, kid)) = self.rpcs.deadlines.front() {
            if deadline > now {
                break;
            }
            self.rpcs.deadlines.pop_front();
            if let Some(p) = self.rpcs.take(kid) {
                tracing::warn!(
                    callerId = %p.caller,
                    targetService = %p.service,
                    method = %p.method,
                    timeoutMs = self.settings.rpc_timeout.as_millis() as u64,
                    "rpc.timeout"
                );
                if let Some(c) = self.modules.get(&p.caller) {
                    if c.gen == p.caller_gen {
                        self.send(&p.caller, |b| {
                            outbound::rpc_error(b, &p.original_id, "timeout")
                        });
                    }
                }
            }
        }
        self.rpcs.next_deadline()
    }

    /// A module's process left: callers waiting on it get an error, its own calls are dropped.
    pub(super) fn rpcs_module_left(&mut self, module: &str) {
        let ids: Vec<u64> = self
            .rpcs
            .live
            .iter()
            .filter(|(_, p)| &*p.target == module || &*p.caller == module)
            .map(|(id, _)| *id)
            .collect();
        for kid in ids {
            let Some(p) = self.rpcs.take(kid) else {
                continue;
            };
            if &*p.target == module && &*p.caller != module {
                let msg = format!("Module {module} stopped while processing RPC");
                if let Some(c) = self.modules.get(&p.caller) {
                    if c.gen == p.caller_gen {
                        self.send(&p.caller, |b| outbound::rpc_error(b, &p.original_id, &msg));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(PendingRpcs::parse_id(&format!("{ID_PREFIX}{n}")), Some(n));
        }
        assert_eq!(PendingRpcs::parse_id("x-1"), None);
    }
}
