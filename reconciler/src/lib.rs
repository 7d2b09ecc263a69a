//! `pons-reconciler`: the pure core of pons.
//!
//! Given the bytes of the three inputs (module manifests, `config.yaml`, `permissions.yaml`) as
//! read by the shell ([`snapshot::Snapshot`]) and what the supervisor reports
//! ([`observed::Observed`]), it decides what should run ([`desired::Desired`]) and what to do
//! about it ([`plan::Plan`]).
//!
//! Invariant: this crate does no IO, reads no clock, spawns nothing and has no async runtime.
//! Everything here is deterministic and tested table-driven from `specs/`.

pub mod build;
pub mod cluster;
pub mod config;
pub mod deno;
pub mod desired;
pub mod digest;
pub mod graph;
pub mod manifest;
pub mod observed;
pub mod permissions;
pub mod plan;
pub mod reason;
pub mod render;
pub mod snapshot;
pub mod spawn;
pub mod yaml;

pub use desired::{build_desired, BlockReason, Desired, DesiredModule};
pub use observed::{Observed, ObservedCluster, ObservedModule, Status};
pub use plan::{plan, Action, ActionKind, Plan, PlanOptions};
pub use render::{plan_json, plan_text};
pub use snapshot::Snapshot;
