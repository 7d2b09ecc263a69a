//! pons: a declarative, reconciling microkernel for modular applications.
//!
//! The binary (`src/main.rs`) is a thin entry point into [`cli`]. The pure planning logic lives in
//! the `pons-reconciler` crate; this crate is the imperative shell around it. See ARCHITECTURE.md
//! for the code map and the invariants.

pub mod cli;
pub mod cluster;
pub mod control;
pub mod home;
pub mod kernel;
pub mod logging;
pub mod pidfile;
pub mod protocol;
pub mod safe_text;
pub mod sandbox;
pub mod snapshot_io;
pub mod store;
pub mod watch;
