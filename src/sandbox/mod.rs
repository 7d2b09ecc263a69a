//! Exec trampoline and process hygiene: landlock, rlimits, environment, watchdog.
