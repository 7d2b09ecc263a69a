//! One module as the router sees it.

use std::sync::Arc;
use std::time::Instant;

use pons_reconciler::{DesiredModule, Status};
use tokio::sync::mpsc;

use super::topics::PatternSet;
use crate::kernel::outbox::Outbox;
use crate::kernel::supervisor::SupCmd;

pub struct Entry {
    pub id: Arc<str>,
    /// What was last applied to this module (spawned, or pushed as config).
    pub desired: Arc<DesiredModule>,
    pub status: Status,
    /// Generation of the current process; lines of older processes are ignored.
    pub gen: u64,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub outbox: Option<Arc<Outbox>>,
    /// Topic capabilities (publish and subscribe).
    pub topics: PatternSet,
    /// Service capabilities (RPC).
    pub services: super::fasthash::FastSet<String>,
    pub spawned_at: Option<Instant>,
    pub ready_at: Option<Instant>,
    pub waiting_since: Option<Instant>,
    /// Back-pressure: since when the kernel has stopped reading this module's stdout because a
    /// consumer of its messages is congested. The module is not counted unresponsive meanwhile.
    pub held_back_since: Option<Instant>,
    /// When the last such hold ended.
    pub held_back_until: Option<Instant>,
    /// Time held back, in total, for the current process (ended holds).
    pub held_back_total: std::time::Duration,
    /// Why it is not running (crashed, stopped, …).
    pub reason: Option<String>,
    /// The cause of the last failure (`pons status --json` `lastError`), set on every failure and
    /// kept while it restarts or is crashed; cleared once it has been ready for the reset period
    /// or is restarted on request.
    pub last_error: Option<String>,
    pub pongs: u64,
    pub acks: u64,
    pub nacks: u64,
    pub invalid_lines: u64,
    /// Lines read from the module's processes, and messages queued for their earlier processes
    /// (`msgsIn` / `msgsOut` of `pons status`, see [`Entry::msgs_out`]).
    pub msgs_in: u64,
    pub msgs_out_before: u64,
    /// Messages dropped by outboxes of earlier processes.
    pub dropped_before: u64,
    pub sup: mpsc::UnboundedSender<SupCmd>,
    /// Kernel calls in flight (capped, [`super::MAX_CALLS_IN_FLIGHT`]).
    pub calls: Arc<super::CallSlots>,
}

impl Entry {
    pub fn new(desired: Arc<DesiredModule>, sup: mpsc::UnboundedSender<SupCmd>) -> Entry {
        let mut e = Entry {
            id: Arc::from(desired.id.as_str()),
            desired: desired.clone(),
            status: Status::Starting,
            gen: 0,
            pid: None,
            restarts: 0,
            outbox: None,
            topics: PatternSet::default(),
            services: Default::default(),
            spawned_at: None,
            ready_at: None,
            waiting_since: None,
            held_back_since: None,
            held_back_until: None,
            held_back_total: std::time::Duration::ZERO,
            reason: None,
            last_error: None,
            pongs: 0,
            acks: 0,
            nacks: 0,
            invalid_lines: 0,
            msgs_in: 0,
            msgs_out_before: 0,
            dropped_before: 0,
            sup,
            calls: Default::default(),
        };
        e.set_capabilities(&desired);
        e
    }

    /// Applies the approved capabilities (in place, no restart).
    pub fn set_capabilities(&mut self, d: &DesiredModule) {
        self.topics = PatternSet::new(d.capabilities.topics.iter());
        self.services = d.capabilities.services.iter().cloned().collect();
    }

    /// How long the kernel has held this process back, including a hold going on now.
    pub fn held_back_for(&self) -> std::time::Duration {
        self.held_back_total
            + self
                .held_back_since
                .map_or_else(Default::default, |t| t.elapsed())
    }

    pub fn dropped(&self) -> u64 {
        self.dropped_before + self.outbox.as_ref().map_or(0, |o| o.dropped())
    }

    /// Messages queued for this module's processes, the current one included.
    pub fn msgs_out(&self) -> u64 {
        self.msgs_out_before + self.outbox.as_ref().map_or(0, |o| o.pushed())
    }
}
