//! [`Prepared`]: everything a module's process needs between its start and its `exec`, computed
//! in the kernel before the start, so the child only makes system calls ([`super::child`]).
//!
//! The child runs in the kernel's memory while the kernel's other threads go on ([`super::clone_vm`]):
//! any lock (the allocator's among them) may be held by one of them, so it may neither allocate
//! nor take a lock. What it needs is therefore built here: the program, argument and environment strings and their
//! pointer arrays, the working directory, the Landlock ruleset (a close-on-exec descriptor, closed
//! in the kernel as soon as the child has its copy), the rlimit values, the tag, what
//! the capability drop does, and the text of every message the child may write.

use std::ffi::{c_char, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use pons_reconciler::desired::Limits;
use rustix::process::{Resource, Rlimit};

use super::caps::CapDrop;
use super::child::EXIT_NOT_FOUND;
use super::spec::ExecSpec;

/// The rlimits a module gets, each set (soft and hard) before its `exec`, in this order; `None`
/// leaves the kernel's own limit, which the module inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimits {
    /// `RLIMIT_AS` (`limits.memoryMb`).
    pub memory: Option<Rlimit>,
    /// `RLIMIT_NOFILE` (`limits.openFiles`). Also the slot for the limit a module gets when the
    /// kernel raised its own above what modules should inherit.
    pub nofile: Option<Rlimit>,
    /// `RLIMIT_NPROC` (`limits.processes`; per user, and not enforced for root).
    pub nproc: Option<Rlimit>,
    /// `RLIMIT_CPU` (`limits.cpuSeconds`: SIGXCPU, then SIGKILL a second later).
    pub cpu: Option<Rlimit>,
}

impl Rlimits {
    /// The limits of a module's policy, never above the kernel's hard limits (which an
    /// unprivileged process cannot raise).
    /// Without an `openFiles` limit, `nofile_soft` (the kernel's soft RLIMIT_NOFILE before it
    /// raised its own) is the module's soft limit; the hard one stays.
    pub fn from_policy(limits: &Limits, nofile_soft: Option<u64>) -> Rlimits {
        let set = |res: Resource, value: Option<u64>, slack: u64| {
            let value = value?;
            let hard_now = rustix::process::getrlimit(res).maximum;
            let clamp = |v: u64| hard_now.map_or(v, |h| v.min(h));
            Some(Rlimit {
                current: Some(clamp(value)),
                maximum: Some(clamp(value.saturating_add(slack))),
            })
        };
        Rlimits {
            memory: set(
                Resource::As,
                limits.memory_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
                0,
            ),
            nofile: set(Resource::Nofile, limits.open_files, 0).or_else(|| {
                let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
                nofile_soft.map(|soft| Rlimit {
                    current: Some(hard.map_or(soft, |h| soft.min(h))),
                    maximum: hard,
                })
            }),
            nproc: set(Resource::Nproc, limits.processes, 0),
            cpu: set(Resource::Cpu, limits.cpu_seconds, 1),
        }
    }

    /// In the order they are set.
    pub(super) fn each(&self) -> [(Resource, Option<Rlimit>); 4] {
        [
            (Resource::As, self.memory),
            (Resource::Nofile, self.nofile),
            (Resource::Nproc, self.nproc),
            (Resource::Cpu, self.cpu),
        ]
    }
}

/// The Landlock step of the child.
#[derive(Debug)]
pub(super) enum LandlockStep {
    /// Not asked for (`security.enforcementMode: off`, no `"sandbox": "required"`).
    Off,
    /// Enforce the ruleset open as this descriptor (the child's copy of [`Prepared::ruleset`]).
    Restrict(RawFd),
    /// Asked for, but this Linux has no Landlock: a note, or (`required`) a refusal.
    Unavailable { required: bool },
    /// The ruleset could not be built: this sentence, and exit.
    Failed(Vec<u8>),
}

/// What a module's process does between its start and its `exec` (see the module docs).
pub struct Prepared {
    pub(super) program: CString,
    /// The program as the messages name it.
    pub(super) program_text: Vec<u8>,
    pub(super) cwd: CString,
    pub(super) cwd_text: Vec<u8>,
    /// Keep the strings `argv` / `envp` point into.
    _strings: Vec<CString>,
    /// `argv` and `envp`, each ending with a null pointer.
    pub(super) argv: Vec<*const c_char>,
    pub(super) envp: Vec<*const c_char>,
    /// Exit at once with this code and message (the program is no absolute path).
    pub(super) refused: Option<(i32, Vec<u8>)>,
    /// The exec is bound to fail with this message (a NUL byte in an argument or variable).
    pub(super) unexecutable: Option<Vec<u8>>,
    pub(super) kernel_pid: u32,
    pub(super) landlock: LandlockStep,
    /// The kernel's descriptor of the ruleset [`LandlockStep::Restrict`] names. The spawn takes
    /// it out and closes it as soon as the child has its own copy (its descriptor table is a
    /// copy made by `clone`), so the kernel holds no ruleset while the child prepares its `exec`.
    pub(super) ruleset: Option<OwnedFd>,
    /// Notes written before the Landlock step (policy paths that do not exist).
    pub(super) notes: Vec<u8>,
    pub rlimits: Rlimits,
    pub(super) tag: Option<u64>,
    pub(super) caps: CapDrop,
}

// SAFETY: the raw pointers point into `_strings`, owned by the same value and never changed after
// construction; nothing else is shared.
unsafe impl Send for Prepared {}
// SAFETY: as for `Send`: the child only reads.
unsafe impl Sync for Prepared {}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .field("cwd", &self.cwd)
            .field("landlock", &self.landlock)
            .field("rlimits", &self.rlimits)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// `bytes` as a C string; an empty one, with `nul` set, when they hold a NUL byte.
fn cstring(bytes: &[u8], nul: &mut bool) -> CString {
    CString::new(bytes).unwrap_or_else(|_| {
        *nul = true;
        CString::default()
    })
}

/// `pons sandbox: <what>\n` as bytes.
pub(super) fn line(what: &str) -> Vec<u8> {
    format!("pons sandbox: {what}\n").into_bytes()
}

impl Prepared {
    /// Prepares the start of `spec` (runs in the kernel, before the start).
    pub fn new(spec: &ExecSpec) -> Prepared {
        let program_str = spec.program.display().to_string();
        let refused = (!spec.program.is_absolute()).then(|| {
            (
                EXIT_NOT_FOUND,
                line(&format!(
                    "program `{program_str}` is not an absolute path; the kernel must resolve it"
                )),
            )
        });
        use std::os::unix::ffi::OsStrExt;
        let mut nul = false;
        let program = cstring(spec.program.as_os_str().as_bytes(), &mut nul);
        let mut cwd_nul = false;
        let cwd = cstring(spec.cwd.as_os_str().as_bytes(), &mut cwd_nul);
        let mut strings = Vec::with_capacity(1 + spec.args.len() + spec.env.len());
        strings.push(program.clone());
        for a in &spec.args {
            strings.push(cstring(a.as_bytes(), &mut nul));
        }
        for (k, v) in &spec.env {
            strings.push(cstring(format!("{k}={v}").as_bytes(), &mut nul));
        }
        let argc = 1 + spec.args.len();
        let argv: Vec<*const c_char> = strings[..argc]
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp: Vec<*const c_char> = strings[argc..]
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let unexecutable = nul.then(|| {
            line(&format!(
                "cannot execute `{program_str}`: nul byte found in provided data"
            ))
        });

        let mut ruleset = None;
        let (landlock, notes) = if !(spec.landlock || spec.policy.required) {
            (LandlockStep::Off, Vec::new())
        } else if cwd_nul {
            // The child cannot enter this directory and stops before the Landlock step.
            (LandlockStep::Off, Vec::new())
        } else {
            match super::ruleset::build(&spec.policy, &spec.program, &spec.cwd) {
                Ok(built) => {
                    let notes = built
                        .notes
                        .iter()
                        .flat_map(|n| line(&format!("note: {n}")))
                        .collect();
                    let step = match built.fd {
                        Some(fd) => {
                            let step = LandlockStep::Restrict(fd.as_raw_fd());
                            ruleset = Some(fd);
                            step
                        }
                        None => LandlockStep::Unavailable {
                            required: spec.policy.required,
                        },
                    };
                    (step, notes)
                }
                Err(e) => (
                    LandlockStep::Failed(line(&format!(
                        "cannot apply the Landlock ruleset for `{program_str}`: {e}"
                    ))),
                    Vec::new(),
                ),
            }
        };

        Prepared {
            program,
            program_text: program_str.into_bytes(),
            cwd_text: spec.cwd.display().to_string().into_bytes(),
            cwd,
            _strings: strings,
            argv,
            envp,
            refused,
            unexecutable,
            kernel_pid: spec.kernel_pid,
            landlock,
            ruleset,
            notes,
            rlimits: Rlimits::from_policy(&spec.policy.limits, spec.nofile_soft),
            tag: spec.tag,
            caps: CapDrop::prepare(),
        }
    }

    /// Whether a Landlock ruleset descriptor is held (closed when this is dropped).
    pub fn holds_ruleset(&self) -> bool {
        self.ruleset.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pons_reconciler::desired::SandboxPolicy;

    fn spec() -> ExecSpec {
        ExecSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "true".into()],
            env: vec![("A".into(), "b".into())],
            cwd: "/".into(),
            policy: SandboxPolicy::default(),
            kernel_pid: 1,
            landlock: false,
            tag: None,
            nofile_soft: None,
        }
    }

    #[test]
    fn argv_and_envp_end_with_null() {
        let p = Prepared::new(&spec());
        assert_eq!(p.argv.len(), 4);
        assert!(p.argv[3].is_null());
        assert_eq!(p.envp.len(), 2);
        assert!(p.envp[1].is_null());
        // SAFETY: the pointers point into strings `p` owns.
        let env0 = unsafe { std::ffi::CStr::from_ptr(p.envp[0]) };
        assert_eq!(env0.to_bytes(), b"A=b");
        assert!(p.unexecutable.is_none() && p.refused.is_none());
        assert!(matches!(p.landlock, LandlockStep::Off));
    }

    #[test]
    fn nul_bytes_and_relative_programs_are_refused_up_front() {
        let mut s = spec();
        s.env.push(("B".into(), "x\0y".into()));
        let p = Prepared::new(&s);
        let msg = String::from_utf8(p.unexecutable.unwrap()).unwrap();
        assert_eq!(
            msg,
            "pons sandbox: cannot execute `/bin/sh`: nul byte found in provided data\n"
        );
        let mut s = spec();
        s.program = "sh".into();
        let (code, msg) = Prepared::new(&s).refused.unwrap();
        assert_eq!(code, EXIT_NOT_FOUND);
        assert!(String::from_utf8(msg)
            .unwrap()
            .contains("not an absolute path"));
    }

    #[test]
    fn rlimits_are_clamped_to_the_hard_limit() {
        let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
        let r = Rlimits::from_policy(
            &Limits {
                open_files: Some(u64::MAX - 1),
                cpu_seconds: Some(5),
                ..Limits::default()
            },
            Some(7),
        );
        let nofile = r.nofile.unwrap();
        assert_eq!(
            nofile.current,
            Some(hard.map_or(u64::MAX - 1, |h| h.min(u64::MAX - 1)))
        );
        let cpu = r.cpu.unwrap();
        assert!(cpu.maximum >= cpu.current);
        assert!(r.memory.is_none() && r.nproc.is_none());
    }

    #[test]
    fn without_open_files_a_module_gets_the_kernels_original_soft_nofile() {
        let hard = rustix::process::getrlimit(Resource::Nofile).maximum;
        let r = Rlimits::from_policy(&Limits::default(), Some(1024));
        let nofile = r.nofile.expect("the nofile slot is set");
        assert_eq!(nofile.current, Some(hard.map_or(1024, |h| h.min(1024))));
        assert_eq!(nofile.maximum, hard);
        assert!(Rlimits::from_policy(&Limits::default(), None)
            .nofile
            .is_none());
    }
}
