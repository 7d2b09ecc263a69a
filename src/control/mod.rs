//! Control socket `run/kernel.sock`: NDJSON requests `{"cmd":…}` answered by
//! `{"ok":true,"data":…}` / `{"ok":false,"error":…}`.
//!
//! - [`api`]: the request/response types and the stable JSON reports (status, plan).
//! - `peer`: refuses module processes (no_new_privs, or started by the kernel) as peers.
//! - `server`: accepts connections (0600, same uid only, no modules) and hands each request to the kernel as a
//!   [`api::ControlCommand`] over an mpsc channel (pueue-style daemon/CLI split).
//! - `client`: what the CLI uses to talk to a running kernel.

pub mod api;
pub mod client;
pub mod peer;
pub mod server;

#[cfg(test)]
mod tests;
