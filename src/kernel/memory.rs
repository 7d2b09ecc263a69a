//! The kernel's heap: two malloc arenas, and freed memory goes back to the system after every pass.
//!
//! glibc gives each thread that allocates while another holds the arena an arena of its own (up
//! to eight per core) and keeps what is freed in it; the kernel's heap grows in bursts that it
//! then frees — the boot pass reading every module, a pass's snapshot and plan, a large
//! `pons status` reply — so megabytes stay resident though nothing uses them, spread over
//! arenas. [`configure`] caps the arenas at two (the per-thread caches still serve most small
//! allocations without a lock); after each pass [`trim`] hands every whole free page of every
//! arena back (`malloc_trim(0)`, on a blocking thread: it walks the free lists).

/// Caps the malloc arenas; call before any thread starts (glibc; elsewhere a no-op).
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the free pages of every malloc arena to the system (glibc; elsewhere a no-op).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and madvises the allocator's own free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`trim`] on a blocking thread, so no worker waits for it.
pub fn trim_soon() {
    drop(tokio::task::spawn_blocking(trim));
}
