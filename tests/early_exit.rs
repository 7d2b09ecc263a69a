//! A module that ends within a second without a word on stderr: the cause the kernel keeps says
//! how it ended (exit code or signal), so a module killed from outside is not taken for a broken
//! entry point (issue 10 point 8: "exited after 482ms with no output" could not be told apart).

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(15);

#[test]
fn a_silent_early_exit_says_its_exit_code() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}  maxRestarts: 1\n"));
    home.add(ModuleSpec::new("quitter").args(&[
        "--never-ready",
        "--crash-after-ms",
        "100",
        "--exit-code",
        "3",
    ]));
    let _k = home.start();
    let m = home.wait_status("quitter", "crashed", T);
    let cause = m["lastError"].as_str().unwrap_or_default();
    assert!(
        cause.contains("with no output (exit code 3) — check the module entry point"),
        "{m}"
    );
}

#[test]
fn a_module_killed_by_a_signal_says_so() {
    let mut home = TestHome::new();
    home.write_config(&format!("{FAST_LIFECYCLE}  maxRestarts: 1\n"));
    home.add(ModuleSpec::new("victim"));
    let _k = home.start();
    let pid = home.wait_status("victim", "ready", T)["pid"]
        .as_i64()
        .expect("a pid");
    // SAFETY: SIGKILL to the test's own module process.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let m = wait_for("victim's last error", T, || {
        home.module_status("victim")
            .filter(|m| m["lastError"].is_string())
    });
    let cause = m["lastError"].as_str().unwrap_or_default();
    assert!(cause.contains("killed by signal 9"), "{m}");
}
