//! pons-sdk: write pons modules in Rust.
//!
//! A module is a process that speaks newline-delimited JSON with the kernel over
//! stdin/stdout. This crate mimics the reference client (usepons/sdk `ModuleRunner`): it
//! answers `init` with `ready`, `ping` with `pong`, `deliver` with `ack`/`nack`, and
//! `rpc_request`/`call` with `rpc_response`/`call:response`; it exits 0 on `shutdown` and when
//! stdin closes. Synchronous std IO, no async runtime.
//!
//! ```no_run
//! use pons_sdk::{Ctx, Handler, Module, Reply, Request};
//! use serde_json::json;
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn on_deps_ready(&mut self, ctx: &Ctx) {
//!         let _ = ctx.publish("echo.started", &json!({"ok": true}));
//!     }
//!     fn on_request(&mut self, _ctx: &Ctx, req: &Request<'_>) -> Reply {
//!         Reply::Ok(json!({"method": req.method, "params": req.params_value()}))
//!     }
//! }
//!
//! fn main() {
//!     Module::new(Echo).run_and_exit()
//! }
//! ```
//!
//! Modules: [`module`] (the run loop and its threads), [`handler`] (the callbacks), [`ctx`]
//! (sending, RPC, kernel calls), [`wire`] (line builders for every module → kernel message).

pub mod ctx;
pub mod handler;
pub mod module;
pub mod wire;

pub use ctx::{Batch, Ctx, RequestKind, Responder};
pub use handler::{Handler, Reply, Request};
pub use module::{Module, Tap};
pub use serde_json::value::RawValue;
pub use serde_json::{json, Value};

/// The protocol version this SDK speaks.
pub const PROTOCOL_VERSION: &str = "1.0";

#[cfg(test)]
mod tests;
