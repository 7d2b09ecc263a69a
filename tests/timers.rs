//! The supervisor's timers sleep until the next check is due (no tick): what changes a due time
//! while a module runs must wake them — here, new lifecycle settings. A module that ignores pings,
//! ready under a 10-minute health interval, is restarted within seconds once config.yaml lowers
//! the interval, while a module that answers is left alone.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_shorter_health_interval_applies_to_modules_already_waiting() {
    let mut home = TestHome::new();
    home.write_config("lifecycle:\n  healthIntervalMs: 600000\n  shutdownGraceMs: 1000\n");
    home.add(ModuleSpec::new("deaf").args(&["--ignore-ping"]));
    home.add(ModuleSpec::new("hearing"));
    let _k = home.start();
    home.wait_status("deaf", "ready", Duration::from_secs(30));
    home.wait_status("hearing", "ready", Duration::from_secs(30));
    // Both supervisors now sleep until their first ping, ten minutes away.
    home.write_config(
        "lifecycle:\n  healthIntervalMs: 1000\n  pingTimeoutMs: 3000\n  healthMaxFailures: 1\n  \
         shutdownGraceMs: 1000\n",
    );
    wait_for(
        "deaf restarted for unanswered pings after the interval was lowered",
        Duration::from_secs(30),
        || (home.starts("deaf").len() >= 2).then_some(()),
    );
    home.wait_log("health-check-failed", Duration::from_secs(10));
    assert_eq!(
        home.starts("hearing").len(),
        1,
        "a module that answers pings is left alone"
    );
    assert!(home.received_types("hearing").contains(&"ping".to_string()));
}
