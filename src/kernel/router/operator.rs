//! The operator as a caller (`pons call`, `pons publish` on the control socket): RPCs and publishes
//! from someone who is not a module. The operator is trusted (the control socket is 0600 and takes
//! same-uid peers only), so nothing checks its own capabilities; everything else is as for a
//! module: the provider sees an ordinary `rpc_request` with `from` = [`OPERATOR`], subscribers get
//! an ordinary `deliver`, and `system:` topics stay the kernel's.

use std::time::{Duration, Instant};

use pons_reconciler::config::EnforcementMode;
use pons_reconciler::Status;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::rpc::{Caller, OperatorAnswer};
use super::{Core, SYSTEM_PREFIX};
use crate::protocol::outbound;

/// The caller name a provider sees in `from` for an RPC made by the operator.
pub const OPERATOR: &str = "operator";

impl Core {
    /// Sends an RPC as the operator. The answer (or `timeout`, or the provider leaving) arrives on
    /// the returned channel; `service_not_found` and `module_not_ready` are returned at once.
    /// `timeout`: the kernel's RPC timeout when `None`.
    pub fn operator_rpc(
        &mut self,
        service: &str,
        method: &str,
        params: Option<&RawValue>,
        timeout: Option<Duration>,
    ) -> Result<oneshot::Receiver<OperatorAnswer>, &'static str> {
        // No local provider: another node's, if one is there (local wins).
        let target = match self.provider_for(service) {
            Ok(t) => Some(t),
            Err(_) if self.remote_provides(service) => None,
            Err(e) => return Err(e),
        };
        let timeout = timeout.unwrap_or(self.settings.rpc_timeout);
        let now = Instant::now();
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let (reply, rx) = oneshot::channel();
        let Some(target) = target else {
            let caller = Caller::Operator { reply, timeout };
            let call = (service, method, params);
            self.forward_remote(caller, OPERATOR, call, deadline, &mut Vec::new());
            return Ok(rx);
        };
        // The operator waits on its channel, not on the provider's outbox: a congested provider
        // only delays the answer (the outbox's hard cap still bounds it).
        self.forward(
            Caller::Operator { reply, timeout },
            OPERATOR,
            target,
            (service, method, params),
            deadline,
        );
        Ok(rx)
    }

    /// Publishes as the operator: delivered to every ready subscriber of `topic` whose capabilities
    /// allow it (under `warn`/`off` enforcement, to every subscriber, as a subscription the
    /// capabilities do not cover is kept there). Returns how many got it. `system:` topics are
    /// refused.
    pub fn operator_publish(
        &mut self,
        topic: &str,
        payload: Option<&RawValue>,
    ) -> Result<usize, String> {
        if topic.starts_with(SYSTEM_PREFIX) {
            return Err(format!(
                "topic {topic} is refused: `{SYSTEM_PREFIX}` topics belong to the kernel and nobody else publishes to them"
            ));
        }
        let strict = self.settings.enforcement == EnforcementMode::Strict;
        let modules = &self.modules;
        let mut delivered = 0usize;
        self.bus.for_each_subscriber(topic, |sub| {
            let Some(e) = modules.get(sub) else {
                return;
            };
            if e.status != Status::Ready || (strict && !e.topics.matches(topic)) {
                return;
            }
            if let Some(ob) = &e.outbox {
                let id = uuid::Uuid::new_v4();
                let mut idbuf = [0u8; 36];
                let id = id.hyphenated().encode_lower(&mut idbuf);
                if ob.push_with(|b| outbound::deliver(b, id, topic, payload)) {
                    delivered += 1;
                }
            }
        });
        if let Some(c) = &self.cluster {
            c.link.export_topic(topic, payload, &mut Vec::new());
        }
        tracing::info!(subscribers = delivered, "operator.publish topic={topic}");
        Ok(delivered)
    }
}
