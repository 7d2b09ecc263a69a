//! [`ExecSpec`]: everything the exec trampoline needs to start one module, and how it travels from
//! the kernel to the trampoline.
//!
//! The spec is JSON, passed in the trampoline's environment (never on its command line, which any
//! user can read in `/proc/<pid>/cmdline`; a process's environment is readable only by its owner).
//! One environment string is limited to 128 KiB by Linux, so the JSON is cut into chunks of at most
//! [`CHUNK_BYTES`] named `PONS_EXEC_SPEC_0`, `PONS_EXEC_SPEC_1`, … with their count in
//! `PONS_EXEC_SPEC_PARTS`. The trampoline's own environment holds nothing else, and the module's
//! environment is exactly [`ExecSpec::env`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use pons_reconciler::desired::{Limits, SandboxPolicy};
use serde::{Deserialize, Deserializer, Serialize};

/// Name of the variable holding the number of spec chunks.
pub const PARTS_VAR: &str = "PONS_EXEC_SPEC_PARTS";
/// Prefix of the variables holding the spec chunks (`PONS_EXEC_SPEC_0`, …).
pub const CHUNK_VAR_PREFIX: &str = "PONS_EXEC_SPEC_";
/// Largest chunk, in bytes: under Linux's 128 KiB limit for one `NAME=value` string.
pub const CHUNK_BYTES: usize = 120 * 1024;
/// Upper bound on the number of chunks the trampoline accepts (≈ 12 MiB of spec).
const MAX_PARTS: usize = 100;

/// What the trampoline needs to start one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecSpec {
    /// Absolute path of the program to `execve`.
    pub program: PathBuf,
    /// Arguments after `argv[0]` (which is `program`).
    pub args: Vec<String>,
    /// The complete environment of the module: exactly these pairs, nothing inherited.
    pub env: Vec<(String, String)>,
    /// Working directory of the module.
    pub cwd: PathBuf,
    /// Filesystem and resource policy.
    #[serde(deserialize_with = "deserialize_policy")]
    pub policy: SandboxPolicy,
    /// The pid the trampoline's parent must have after `PR_SET_PDEATHSIG` (the kernel's).
    pub kernel_pid: u32,
    /// Apply the Landlock ruleset (false: rlimits and hygiene only).
    pub landlock: bool,
    /// The module's tag ([`super::tag`]), so the kernel finds its descendants; `None`: untagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<u64>,
    /// The soft RLIMIT_NOFILE of a module whose policy sets no `openFiles`: the kernel's own
    /// before it raised it ([`set_module_nofile`]); `None`: inherited as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile_soft: Option<u64>,
}

/// The soft RLIMIT_NOFILE modules start with, recorded by the kernel before it raises its own.
static MODULE_NOFILE: OnceLock<u64> = OnceLock::new();

/// Records the soft RLIMIT_NOFILE modules start with (the first value recorded stays).
pub fn set_module_nofile(soft: u64) {
    let _ = MODULE_NOFILE.set(soft);
}

/// The soft RLIMIT_NOFILE modules start with, if the kernel recorded one.
pub fn module_nofile() -> Option<u64> {
    MODULE_NOFILE.get().copied()
}

/// Mirror of [`SandboxPolicy`] for deserialization (the reconciler type only serializes).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyWire {
    #[serde(default)]
    read: Vec<PathBuf>,
    #[serde(default)]
    write: Vec<PathBuf>,
    #[serde(default)]
    exec: Vec<PathBuf>,
    #[serde(default)]
    runtime_read: Vec<PathBuf>,
    #[serde(default)]
    runtime_write: Vec<PathBuf>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    required: bool,
}

fn deserialize_policy<'de, D: Deserializer<'de>>(d: D) -> Result<SandboxPolicy, D::Error> {
    let w = PolicyWire::deserialize(d)?;
    Ok(SandboxPolicy {
        read: w.read,
        write: w.write,
        exec: w.exec,
        runtime_read: w.runtime_read,
        runtime_write: w.runtime_write,
        limits: w.limits,
        required: w.required,
    })
}

impl ExecSpec {
    /// The environment variables that carry this spec to the trampoline.
    pub fn to_env(&self) -> Result<Vec<(String, String)>, serde_json::Error> {
        let json = serde_json::to_string(self)?;
        let chunks = split_chunks(&json, CHUNK_BYTES);
        let mut vars = Vec::with_capacity(chunks.len() + 1);
        vars.push((PARTS_VAR.to_string(), chunks.len().to_string()));
        for (i, c) in chunks.into_iter().enumerate() {
            vars.push((format!("{CHUNK_VAR_PREFIX}{i}"), c.to_string()));
        }
        Ok(vars)
    }

    /// Reads the spec back from environment variables (`get` looks one up by name).
    pub fn from_env(get: impl Fn(&str) -> Option<OsString>) -> Result<ExecSpec, String> {
        let parts = get(PARTS_VAR).ok_or_else(|| {
            format!("{PARTS_VAR} is not set (this mode is started by the kernel)")
        })?;
        let parts: usize = parts
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|n| (1..=MAX_PARTS).contains(n))
            .ok_or_else(|| format!("{PARTS_VAR} is not a number from 1 to {MAX_PARTS}"))?;
        let mut json = String::new();
        for i in 0..parts {
            let name = format!("{CHUNK_VAR_PREFIX}{i}");
            let chunk = get(&name).ok_or_else(|| format!("{name} is missing"))?;
            let chunk = chunk
                .into_string()
                .map_err(|_| format!("{name} is not valid UTF-8"))?;
            json.push_str(&chunk);
        }
        serde_json::from_str(&json).map_err(|e| format!("the exec spec is invalid JSON: {e}"))
    }
}

/// Cuts `s` into pieces of at most `max` bytes, on character boundaries.
fn split_chunks(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sample() -> ExecSpec {
        ExecSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo hi".into()],
            env: vec![
                ("A".into(), "é\u{0}x".into()),
                ("PATH".into(), "/usr/bin".into()),
            ],
            cwd: "/tmp".into(),
            policy: SandboxPolicy {
                read: vec!["/r".into()],
                write: vec!["/w".into()],
                exec: vec!["/usr/bin/env".into()],
                runtime_read: vec!["/srv/sdk".into()],
                runtime_write: vec!["/srv/node_modules".into()],
                limits: Limits {
                    open_files: Some(16),
                    ..Limits::default()
                },
                required: true,
            },
            kernel_pid: 42,
            landlock: true,
            tag: Some(super::super::tag::tag(42, 7)),
            nofile_soft: Some(1024),
        }
    }

    fn roundtrip(spec: &ExecSpec) -> ExecSpec {
        let vars: HashMap<String, String> = spec.to_env().unwrap().into_iter().collect();
        for (k, v) in &vars {
            assert!(k.len() + v.len() + 2 <= 128 * 1024, "{k} too long");
            assert!(!v.contains('\0'));
        }
        ExecSpec::from_env(|k| vars.get(k).map(OsString::from)).unwrap()
    }

    #[test]
    fn spec_roundtrips_through_the_environment() {
        let spec = sample();
        assert_eq!(roundtrip(&spec), spec);
    }

    #[test]
    fn large_specs_are_chunked_on_char_boundaries() {
        let mut spec = sample();
        for i in 0..40 {
            spec.env.push((format!("V{i}"), "ü€".repeat(5000)));
        }
        let vars = spec.to_env().unwrap();
        assert!(vars.len() > 3);
        assert_eq!(roundtrip(&spec), spec);
    }

    #[test]
    fn split_never_cuts_a_character() {
        let s = "aé€😀".repeat(100);
        for max in 4..20 {
            let parts = split_chunks(&s, max);
            assert!(parts.iter().all(|p| p.len() <= max));
            assert_eq!(parts.concat(), s);
        }
    }

    #[test]
    fn missing_or_bad_parts_are_clear_errors() {
        let e = ExecSpec::from_env(|_| None).unwrap_err();
        assert!(e.contains(PARTS_VAR), "{e}");
        let e = ExecSpec::from_env(|k| (k == PARTS_VAR).then(|| "0".into())).unwrap_err();
        assert!(e.contains("1 to"), "{e}");
        let e = ExecSpec::from_env(|k| (k == PARTS_VAR).then(|| "2".into())).unwrap_err();
        assert!(e.contains("PONS_EXEC_SPEC_0 is missing"), "{e}");
    }

    #[test]
    fn policy_json_matches_the_reconciler_serialization() {
        let spec = sample();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["policy"]["limits"]["openFiles"], 16);
        assert_eq!(v["kernelPid"], 42);
    }
}
