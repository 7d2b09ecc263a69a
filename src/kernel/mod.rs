//! Kernel daemon: boot, the reconcile loop, the supervisor and the router.
//!
//! - [`run`] builds the runtime and wires everything: signals and the file watcher request passes
//!   ([`reconcile`]), the control socket hands commands to [`control`], every module is driven by
//!   its [`supervisor`] task, and every line a module prints is routed by the [`router`].
//! - [`Kernel`] is the shared state: the router core behind one mutex, the kernel settings from
//!   config.yaml, the last desired state and plan.

pub mod calls;
pub mod control;
pub mod hints;
pub mod memory;
pub mod notify;
pub mod observe;
pub mod operator;
pub mod outbox;
pub mod prepare;
pub mod reconcile;
pub mod refusals;
pub mod router;
pub mod shutdown;
pub mod stdio;
pub mod supervisor;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};
use pons_reconciler::config::Lifecycle;
use tokio::sync::{mpsc, Notify};

use crate::home::Home;
use router::{Core, RouterEvent, Settings};

/// Options of `pons kernel start`.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub home: Home,
    /// `--log-level`; `None` means config.yaml `logging.level`, else `info`.
    pub log_level: Option<String>,
    /// `--manual`: reconcile only on `pons apply` or a signal.
    pub manual: bool,
}

/// Things the main loop does on behalf of other tasks.
#[derive(Debug)]
pub enum KernelEvent {
    /// Persist `firstSpawnAt` for a module that was just sent `install`.
    FirstSpawn(String),
    /// Begin the ordered shutdown.
    Shutdown,
    /// A module went down for good (crashed, stopped by a violation): a pass lets another
    /// provider take over its services.
    ModuleDown,
}

/// The kernel's shared state.
pub struct Kernel {
    pub home: Home,
    pub core: Mutex<Core>,
    pub changed: Arc<Notify>,
    lifecycle: RwLock<Lifecycle>,
    pub events: mpsc::UnboundedSender<KernelEvent>,
    pub watchdog: Mutex<Option<crate::sandbox::Watchdog>>,
    pub started: Instant,
    pub started_wall: std::time::SystemTime,
    /// Modules sent `install` during this run (until permissions.yaml records it).
    installed: Mutex<HashSet<String>>,
    pub state: Mutex<reconcile::State>,
    pub passes: mpsc::UnboundedSender<reconcile::PassRequest>,
    pub shutting_down: AtomicBool,
    pub manual_flag: bool,
    pub log: Option<crate::logging::LogGuard>,
    pub forced_log_level: Option<String>,
    /// One deno lock file step at a time per lock file ([`prepare`]).
    pub prepare_locks: prepare::PrepareLocks,
    /// sd_notify to systemd ([`notify`]; a no-op outside a `Type=notify` service).
    pub notify: notify::Notifier,
    /// Each module's sandbox block of `pons status --json`, made once per spawn.
    pub sandbox_reports: observe::SandboxReports,
}

impl Kernel {
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.read()
    }

    /// New lifecycle settings; when they differ, every supervisor times its checks anew.
    pub fn set_lifecycle(&self, lc: Lifecycle) {
        let changed = std::mem::replace(&mut *self.lifecycle.write(), lc) != lc;
        if changed {
            for e in self.core.lock().modules.values() {
                let _ = e.sup.send(supervisor::SupCmd::Recheck);
            }
        }
    }

    /// Whether `install` must be sent to a module spawned now (first spawn ever); records it.
    pub fn first_spawn(&self, id: &str) -> bool {
        let fresh = self.installed.lock().insert(id.to_string());
        if fresh {
            let _ = self.events.send(KernelEvent::FirstSpawn(id.to_string()));
        }
        fresh
    }

    pub fn watchdog_add(&self, pgid: i32) {
        if let Some(w) = &*self.watchdog.lock() {
            w.add(pgid);
        }
    }

    pub fn watchdog_remove(&self, pgid: i32) {
        if let Some(w) = &*self.watchdog.lock() {
            w.remove(pgid);
        }
    }

    /// Sends a command to a module's supervisor; false when the module has none (or it ended).
    pub fn tell(&self, module: &str, cmd: supervisor::SupCmd) -> bool {
        let sup = self.core.lock().modules.get(module).map(|e| e.sup.clone());
        sup.is_some_and(|s| s.send(cmd).is_ok())
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// Runs the kernel in the foreground until SIGTERM/SIGINT or a `stop` command; builds its own
/// tokio runtime. Returns after an ordered shutdown.
pub fn run(opts: StartOptions) -> anyhow::Result<()> {
    let home = opts.home.clone();
    prepare_home(&home)?;
    if let Some(pid) = running_pid(&home) {
        anyhow::bail!(
            "a kernel is already running for {} (pid {pid}); stop it with `pons kernel stop`",
            home.root.display()
        );
    }
    raise_open_files_limit();
    memory::configure();
    // While this process has one thread: the watchdog as a small fork (else `pons __watchdog`).
    let _ = crate::sandbox::Watchdog::fork_early();
    let level = opts.log_level.clone().unwrap_or_else(|| "info".into());
    let log = crate::logging::init(Some(&home), &level)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("pons")
        .build()?;
    let result = rt.block_on(reconcile::main(opts, log));
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// Raises the kernel's soft RLIMIT_NOFILE to its hard limit: it holds three pipes (and a pidfd where
/// the system has them) per module process, plus a few dozen of its own. Modules start with the
/// soft limit the kernel had ([`crate::sandbox::spec::set_module_nofile`]).
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let Some(soft) = lim.current else {
        return;
    };
    crate::sandbox::spec::set_module_nofile(soft);
    // An unlimited hard limit is not a valid soft one for descriptors: the system's ceiling is.
    let hard = lim.maximum.or_else(|| {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    });
    if let Some(hard) = hard.filter(|h| *h > soft) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: lim.maximum,
            },
        );
    }
}

/// Creates the home's runtime directories (0700; existing ones are tightened to 0700).
fn prepare_home(home: &Home) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !home.root.is_dir() {
        anyhow::bail!(
            "home directory {} does not exist; create it (with a modules/ folder) or pass --home",
            home.root.display()
        );
    }
    for dir in [home.runtime_dir(), home.logs_dir(), home.run_dir()] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            anyhow::anyhow!("cannot make {} private (mode 0700): {e}", dir.display())
        })?;
    }
    Ok(())
}

/// The pid in `.runtime/kernel.pid` if that process is alive.
pub fn running_pid(home: &Home) -> Option<u32> {
    let pid = crate::pidfile::read_pid(home)?;
    crate::pidfile::is_alive(pid).then_some(pid as u32)
}

pub(crate) fn new_core(
    home: &Home,
    events: mpsc::UnboundedSender<RouterEvent>,
    changed: Arc<Notify>,
) -> Core {
    Core::new(
        Settings {
            enforcement: Default::default(),
            rpc_timeout: std::time::Duration::from_millis(Lifecycle::default().rpc_timeout_ms),
            max_pending_rpcs: Lifecycle::default().max_pending_rpcs as usize,
            home: home.root.to_string_lossy().into_owned(),
        },
        events,
        changed,
    )
}
