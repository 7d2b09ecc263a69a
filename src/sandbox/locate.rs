//! Which binary the kernel starts modules through: `pons-exec`, the trampoline alone, when it lies
//! next to the running `pons` and was built from the same trampoline sources; otherwise the
//! kernel's own binary (`/proc/self/exe __exec`).
//!
//! Both run the same [`trampoline_main`](super::trampoline::trampoline_main); `pons-exec` only
//! avoids loading, relocating and faulting in the 14 MiB kernel binary for every module start.
//! The choice is made once per kernel process:
//! - the file is opened once and executed as `/proc/self/fd/N`, so (like `/proc/self/exe`) a
//!   binary replaced on disk while the kernel runs does not change what starts the modules;
//! - it must answer `pons-exec __identity` with [`identity`], a hash of the sources that define
//!   what the trampoline reads and enforces, so a stale `pons-exec` left by an earlier build
//!   (e.g. `cargo run` relinks only `pons`) is never used: the kernel falls back to its own binary.

use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// File name of the dedicated trampoline binary, looked up next to the running executable.
pub const EXEC_BINARY: &str = "pons-exec";
/// The argument `pons-exec` answers with [`identity`].
pub const IDENTITY_ARG: &str = "__identity";
/// The fallback: the running kernel's own binary, started as `__exec`.
pub const SELF_EXE: &str = "/proc/self/exe";

/// FNV-1a over the sources that define the trampoline's behaviour and its input format.
const TRAMPOLINE_ID: u64 = fnv1a(&[
    include_bytes!("trampoline.rs"),
    include_bytes!("rules.rs"),
    include_bytes!("spec.rs"),
    include_bytes!("pons_exec.rs"),
    include_bytes!("locate.rs"),
    include_bytes!("../../reconciler/src/desired.rs"),
    env!("CARGO_PKG_VERSION").as_bytes(),
]);

const fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p];
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
        p += 1;
    }
    h
}

/// What `pons-exec __identity` prints: the trampoline build it holds.
pub fn identity() -> String {
    format!("pons-exec trampoline {TRAMPOLINE_ID:016x}")
}

/// The binary that starts modules when [`ExecOptions::trampoline`](super::ExecOptions) is `None`:
/// the pinned `pons-exec` (`/proc/self/fd/N`) or [`SELF_EXE`]. Decided on first use.
pub fn default_trampoline() -> &'static Path {
    static CHOSEN: OnceLock<PathBuf> = OnceLock::new();
    CHOSEN.get_or_init(|| match pinned_exec_binary() {
        Ok(path) => path,
        Err(why) => {
            tracing::debug!(reason = %why, "sandbox.trampoline: modules start through `pons __exec`");
            PathBuf::from(SELF_EXE)
        }
    })
}

/// Opens `pons-exec` next to the running executable, checks its identity and keeps the descriptor
/// open for the life of the process.
fn pinned_exec_binary() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the running executable: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    let candidate = dir.join(EXEC_BINARY);
    // Opened close-on-exec: modules never inherit it, yet `execve("/proc/self/fd/N")` works for
    // an ELF binary (the file is opened before the descriptors are closed).
    let file = std::fs::File::open(&candidate)
        .map_err(|e| format!("no usable {}: {e}", candidate.display()))?;
    let pinned = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let out = Command::new(&pinned)
        .arg(IDENTITY_ARG)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", candidate.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || said.trim() != identity() {
        return Err(format!(
            "{} is from another build (it answered {:?}, this kernel expects {:?}); rebuild it \
             with `cargo build`",
            candidate.display(),
            said.trim(),
            identity()
        ));
    }
    tracing::debug!(path = %candidate.display(), "sandbox.trampoline: modules start through pons-exec");
    // Kept open for the life of the kernel: the path above names it.
    let _ = file.into_raw_fd();
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_names_the_build() {
        assert!(identity().starts_with("pons-exec trampoline "));
        assert_eq!(identity().len(), "pons-exec trampoline ".len() + 16);
        assert_ne!(fnv1a(&[b"a"]), fnv1a(&[b"b"]));
    }
}
