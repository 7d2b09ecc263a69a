//! Build script of the `pons` package: how the `pons` executable is linked.
//!
//! On Linux with glibc, the executable is linked with `-z pack-relative-relocs` (DT_RELR): its
//! relative relocations (≈ 16,000, one per pointer in the read-only data of a position-independent
//! executable) take a few KiB instead of ≈ 380 KiB of `.rela.dyn`, which the dynamic loader reads
//! whole at every start and which then stays resident in the kernel (README, *Performance*). The
//! executable stays position-independent. GNU ld ≥ 2.38 and lld ≥ 15 know the flag; the linker
//! uses DT_RELR only when the C library it links against provides `GLIBC_ABI_DT_RELR` (glibc ≥
//! 2.36) and otherwise links as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
