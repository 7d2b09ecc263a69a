//! The reconcile loop: every trigger only *requests* a pass; exactly one pass runs at a time and
//! requests that arrive during a pass coalesce into one more. A pass reads one snapshot of the
//! home, builds the desired state, plans against what the supervisor observes, and — unless the
//! kernel is in manual mode and nobody asked — applies the plan.
//!
//! A pass reads the files at once, never waiting for a quiet window: a file another process is
//! still writing keeps its last good value (`snapshot_io::read_inputs`), and the pass that follows
//! the writer's close (a watcher trigger) reads it; when the pass that met it was to apply (a
//! signal, `pons apply`), that next pass applies too, whatever the mode.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pons_reconciler::config::ReconcileMode;
use pons_reconciler::reason::Reason;
use pons_reconciler::{build_desired, plan, ActionKind, Desired, Plan, PlanOptions};
use tokio::sync::{mpsc, oneshot};

use super::router::{Entry, RouterEvent};
use super::supervisor::{SpawnTurn, SupCmd, Supervisor, Turn};
use super::{Kernel, KernelEvent, StartOptions};
use crate::watch::Trigger;

/// How long the first pass waits for a writer to finish an input it is writing (there is no last
/// good value to keep yet). Later passes never wait.
const BOOT_WRITER_WAIT: Duration = Duration::from_secs(1);

/// What the loop remembers between passes.
#[derive(Default)]
pub struct State {
    pub desired: Option<Arc<Desired>>,
    /// The plan of the last pass (pending when it was not applied).
    pub plan: Option<Plan>,
    /// Whether `plan` still waits for `pons apply` (manual mode).
    pub pending: bool,
    pub mode: ReconcileMode,
    /// Input errors already logged (so a broken file is reported once, not every pass).
    logged_errors: Vec<String>,
    /// Refusals and fallbacks already logged.
    refusals: super::refusals::Refusals,
    /// Inputs found being written by the last pass (logged once while they stay so).
    being_written: Vec<std::path::PathBuf>,
    /// A pass that was to apply met an input being written: the next pass applies, whatever
    /// asked for it, so a signal or `pons apply` sent during a save takes effect once it is done.
    owed_apply: bool,
    /// Config schemas and deno configuration files as last read complete.
    read_cache: crate::snapshot_io::ReadCache,
}

/// How a pass was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Watcher or periodic resync: applied in auto mode, only detected in manual mode.
    Auto,
    /// A signal: applied in both modes.
    Signal,
    /// `pons apply`: applied, crashed modules retried.
    Apply,
    /// `pons plan`: computed, never applied.
    PlanOnly,
    /// The first pass at boot.
    Boot,
}

pub struct PassRequest {
    pub kind: PassKind,
    pub progress: Option<mpsc::UnboundedSender<String>>,
    pub reply: Option<oneshot::Sender<PassOutcome>>,
}

/// What a pass did.
#[derive(Clone)]
pub struct PassOutcome {
    pub desired: Arc<Desired>,
    pub plan: Plan,
    pub applied: bool,
    /// Inputs that another process was writing (kept at their last good value).
    pub being_written: Vec<std::path::PathBuf>,
}

/// Boots the kernel and runs until shutdown.
pub async fn main(opts: StartOptions, log: crate::logging::LogGuard) -> anyhow::Result<()> {
    let home = opts.home.clone();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<KernelEvent>();
    let (router_tx, router_rx) = mpsc::unbounded_channel::<RouterEvent>();
    let (pass_tx, pass_rx) = mpsc::unbounded_channel::<PassRequest>();
    let (trigger_tx, mut trigger_rx) = mpsc::unbounded_channel::<Trigger>();
    let (ctl_tx, mut ctl_rx) = mpsc::channel(64);
    let changed = Arc::new(tokio::sync::Notify::new());

    let watchdog = match crate::sandbox::Watchdog::start() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "watchdog unavailable — module process groups are not cleaned up if the kernel is killed");
            None
        }
    };
    let kernel = Arc::new(Kernel {
        home: home.clone(),
        core: parking_lot::Mutex::new(super::new_core(&home, router_tx, changed.clone())),
        changed,
        lifecycle: parking_lot::RwLock::new(Default::default()),
        events: events_tx,
        watchdog: parking_lot::Mutex::new(watchdog),
        started: Instant::now(),
        started_wall: std::time::SystemTime::now(),
        installed: Default::default(),
        state: parking_lot::Mutex::new(State {
            mode: if opts.manual {
                ReconcileMode::Manual
            } else {
                ReconcileMode::Auto
            },
            ..Default::default()
        }),
        passes: pass_tx,
        shutting_down: Default::default(),
        manual_flag: opts.manual,
        log: Some(log),
        forced_log_level: opts.log_level.clone(),
        prepare_locks: Default::default(),
        notify: super::notify::Notifier::from_env(),
        sandbox_reports: Default::default(),
    });

    crate::watch::spawn_signals(trigger_tx.clone())?;
    let mut server = crate::control::server::serve(home.socket(), ctl_tx).await?;
    crate::pidfile::write(&home)?;

    tokio::spawn(router_events(kernel.clone(), router_rx));
    tokio::spawn(rpc_timeouts(kernel.clone()));
    tokio::spawn(pass_loop(kernel.clone(), pass_rx));
    tokio::spawn(resync(kernel.clone()));
    super::notify::start(&kernel);

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        home = %home.root.display(),
        pid = std::process::id(),
        "kernel.boot"
    );
    let boot = request_pass(&kernel, PassKind::Boot, None);
    // The watcher (a read of every module.json, a watch per directory) is set up once the boot
    // pass has spawned, off its way; then one more pass reads the files, so an edit made since the
    // boot pass's read is not missed. A watcher set up earlier would not apply an edit sooner:
    // passes run one at a time, its pass would wait for the boot pass.
    let watcher = {
        let (home, tx) = (home.clone(), trigger_tx.clone());
        tokio::spawn(async move {
            let _ = boot.await;
            let setup = move || match crate::watch::spawn_watcher(&home, tx.clone()) {
                Ok(w) => {
                    let _ = tx.send(Trigger::Files);
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "file watcher unavailable — use `pons apply` or SIGHUP after edits");
                    None
                }
            };
            tokio::task::spawn_blocking(setup).await.ok().flatten()
        })
    };
    // Ids waiting to be recorded as `firstSpawnAt`, and whether a writer is running.
    let first_spawns: Arc<parking_lot::Mutex<(Vec<String>, bool)>> = Default::default();

    loop {
        tokio::select! {
            t = trigger_rx.recv() => match t {
                Some(Trigger::Shutdown) | None => break,
                Some(Trigger::Files) => ask_pass(&kernel, PassKind::Auto),
                Some(Trigger::Sighup | Trigger::Sigusr1 | Trigger::Sigusr2) => {
                    tracing::info!(signal = ?t, "signal received — reconciling");
                    ask_pass(&kernel, PassKind::Signal);
                }
            },
            cmd = ctl_rx.recv() => if let Some(cmd) = cmd {
                tokio::spawn(super::control::handle(kernel.clone(), cmd));
            },
            ev = events_rx.recv() => match ev {
                Some(KernelEvent::Shutdown) | None => break,
                Some(KernelEvent::ModuleDown) => ask_pass(&kernel, PassKind::Auto),
                Some(KernelEvent::FirstSpawn(id)) => {
                    // One blocking writer at a time, taking every id queued meanwhile: 100 modules
                    // spawned at once are a few rewrites of permissions.yaml, not 100 threads.
                    let mut q = first_spawns.lock();
                    q.0.push(id);
                    if !q.1 {
                        q.1 = true;
                        let (home, queue) = (kernel.home.clone(), first_spawns.clone());
                        tokio::task::spawn_blocking(move || persist_first_spawns(&home, &queue));
                    }
                }
            },
        }
    }
    kernel.shutting_down.store(true, Ordering::Release);
    // Stopped during boot: no watcher needed any more.
    watcher.abort();
    let _watcher = watcher.await.ok().flatten();
    tracing::info!(
        reason = "signal",
        uptime = kernel.started.elapsed().as_millis() as u64,
        "kernel.shutdown"
    );
    kernel.notify.stopping();
    server.shutdown();
    crate::cluster::shutdown(&kernel).await;
    super::shutdown::stop_all(&kernel).await;
    if let Some(w) = kernel.watchdog.lock().take() {
        w.disarm();
    }
    let _ = std::fs::remove_file(home.pid_file());
    tracing::info!("kernel stopped");
    Ok(())
}

/// Records `firstSpawnAt` for the queued ids, batch by batch, until the queue is empty.
fn persist_first_spawns(home: &crate::home::Home, queue: &parking_lot::Mutex<(Vec<String>, bool)>) {
    loop {
        let ids = {
            let mut q = queue.lock();
            if q.0.is_empty() {
                q.1 = false;
                return;
            }
            std::mem::take(&mut q.0)
        };
        let now = crate::kernel::calls::now_iso();
        let res = crate::store::update_permissions(home, |file| {
            let mut changed = false;
            for id in &ids {
                changed |= file.set_first_spawn(id, &now);
            }
            Ok(changed)
        });
        if let Err(e) = res {
            tracing::warn!(modules = %ids.join(", "), error = %e, "could not record firstSpawnAt in permissions.yaml");
        }
    }
}

/// Asks for a pass; the returned receiver yields its outcome.
pub fn request_pass(
    kernel: &Kernel,
    kind: PassKind,
    progress: Option<mpsc::UnboundedSender<String>>,
) -> oneshot::Receiver<PassOutcome> {
    let (tx, rx) = oneshot::channel();
    let _ = kernel.passes.send(PassRequest {
        kind,
        progress,
        reply: Some(tx),
    });
    rx
}

/// Asks for a pass without waiting for it.
pub fn ask_pass(kernel: &Kernel, kind: PassKind) {
    let _ = kernel.passes.send(PassRequest {
        kind,
        progress: None,
        reply: None,
    });
}

/// Runs passes one at a time, coalescing the requests queued during a pass into the next one.
async fn pass_loop(kernel: Arc<Kernel>, mut rx: mpsc::UnboundedReceiver<PassRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(r) = rx.try_recv() {
            batch.push(r);
        }
        if kernel.is_shutting_down() {
            return;
        }
        // `pons plan` requests are answered by a planning-only pass of their own.
        let (plans, applies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|r| r.kind == PassKind::PlanOnly);
        if !plans.is_empty() {
            let outcome = pass(&kernel, false, true, None).await;
            for r in plans {
                if let Some(reply) = r.reply {
                    let _ = reply.send(outcome.clone());
                }
            }
        }
        if applies.is_empty() {
            continue;
        }
        let (manual, owed) = {
            let st = kernel.state.lock();
            (st.mode == ReconcileMode::Manual, st.owed_apply)
        };
        let apply = owed || applies.iter().any(|r| r.kind != PassKind::Auto || !manual);
        let retry = applies.iter().any(|r| r.kind == PassKind::Apply);
        let progress = applies.iter().find_map(|r| r.progress.clone());
        let signalled = applies.iter().any(|r| r.kind == PassKind::Signal);
        let boot = applies.iter().any(|r| r.kind == PassKind::Boot);
        if signalled {
            kernel.notify.reloading();
        }
        let outcome = pass(&kernel, apply, retry, progress).await;
        super::memory::trim_soon();
        super::memory::release_code_when_quiet();
        if boot || signalled {
            kernel.notify.settle(outcome.desired.clone());
        }
        if signalled
            && outcome.being_written.is_empty()
            && !outcome
                .plan
                .actions
                .iter()
                .any(|a| a.action == ActionKind::Config)
        {
            tracing::warn!(
                "config unchanged: no module's config section differs from what it was sent"
            );
        }
        for r in applies {
            if let Some(reply) = r.reply {
                let _ = reply.send(outcome.clone());
            }
        }
    }
}

/// One pass: snapshot → desired → plan → (apply).
pub async fn pass(
    kernel: &Arc<Kernel>,
    apply: bool,
    retry_crashed: bool,
    progress: Option<mpsc::UnboundedSender<String>>,
) -> PassOutcome {
    let home = kernel.home.clone();
    let (previous, mut cache) = {
        let mut st = kernel.state.lock();
        (st.desired.clone(), std::mem::take(&mut st.read_cache))
    };
    let read = tokio::task::spawn_blocking(move || {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let read = |cache: &mut _| {
            crate::snapshot_io::read_inputs(&home, &env, cache, previous.as_deref())
        };
        let mut inputs = read(&mut cache);
        // The first pass has no last good value to keep: it waits for the writer, boundedly.
        let deadline = Instant::now() + BOOT_WRITER_WAIT;
        while previous.is_none() && !inputs.being_written.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            inputs = read(&mut cache);
        }
        (inputs, cache)
    })
    .await;
    let inputs = match read {
        Ok((inputs, cache)) => {
            kernel.state.lock().read_cache = cache;
            inputs
        }
        Err(_) => Default::default(),
    };
    let being_written = inputs.being_written;
    if !being_written.is_empty() {
        if let Some(p) = &progress {
            for f in &being_written {
                let _ = p.send(format!(
                    "! {}: being written by another process — applied once it is closed",
                    f.display()
                ));
            }
        }
    }
    let mut snapshot = inputs.snapshot;
    snapshot.down = super::observe::down(kernel);
    let config_missing = matches!(
        snapshot.config_yaml,
        pons_reconciler::snapshot::FileRead::Missing
    )
    .then(|| kernel.home.config_yaml());
    let previous = kernel.state.lock().desired.clone();
    let previous = previous.as_deref().or(inputs.seed.as_ref());
    let desired = Arc::new(build_desired(&snapshot, previous));
    apply_settings(kernel, &desired);
    {
        // Once permissions.yaml records the first spawn, forget it here: a later re-approval
        // (which clears firstSpawnAt) gets `install` again.
        let mut sent = kernel.installed.lock();
        sent.retain(|id| !desired.modules.get(id).is_some_and(|m| m.installed));
    }
    let observed = super::observe::observed(kernel);
    let plan = plan(&desired, &observed, PlanOptions { retry_crashed });
    let changes = plan.has_changes();
    {
        let mut st = kernel.state.lock();
        let errors: Vec<String> = desired
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.file.display(), e.error))
            .collect();
        for e in &errors {
            if !st.logged_errors.contains(e) && !e.contains(crate::snapshot_io::BEING_WRITTEN) {
                tracing::error!(error = %e, "invalid input — keeping the last good value");
            }
        }
        st.logged_errors = errors;
        if being_written != st.being_written && !being_written.is_empty() {
            let files: Vec<String> = being_written
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            tracing::info!(
                files = %files.join(", "),
                "input being written by another process — its last good value stays in use until the writer closes it"
            );
        }
        st.being_written = being_written.clone();
        if apply {
            st.owed_apply = !being_written.is_empty();
        }
        st.refusals.report(&desired, config_missing.as_deref());
        st.desired = Some(desired.clone());
        if apply || !st.pending || changes {
            st.plan = Some(plan.clone());
            st.pending = changes && !apply;
        }
    }
    if apply && changes {
        apply_plan(kernel, &desired, &plan, progress.as_ref()).await;
    } else if apply {
        sync_in_place(kernel, &desired, &plan);
    }
    kernel.changed.notify_waiters();
    PassOutcome {
        desired,
        plan,
        applied: apply,
        being_written,
    }
}

/// Kernel settings from config.yaml take effect at once.
fn apply_settings(kernel: &Kernel, desired: &Desired) {
    let cfg = &desired.kernel;
    kernel.set_lifecycle(cfg.lifecycle);
    {
        let mut core = kernel.core.lock();
        core.settings.enforcement = cfg.enforcement_mode;
        core.settings.rpc_timeout = Duration::from_millis(cfg.lifecycle.rpc_timeout_ms);
        core.settings.max_pending_rpcs =
            usize::try_from(cfg.lifecycle.max_pending_rpcs).unwrap_or(usize::MAX);
    }
    {
        let mut st = kernel.state.lock();
        st.mode = if kernel.manual_flag {
            ReconcileMode::Manual
        } else {
            cfg.reconcile
        };
    }
    if let Some(log) = &kernel.log {
        let level = kernel
            .forced_log_level
            .clone()
            .unwrap_or_else(|| cfg.logging.level.clone());
        log.set_levels(&level, &cfg.logging.levels);
    }
}

/// Updates what needs no action: the service directory's declared providers, and capabilities
/// and desired state of modules the plan leaves alone.
fn sync_in_place(kernel: &Kernel, desired: &Desired, plan: &Plan) {
    let mut core = kernel.core.lock();
    core.declared = desired
        .modules
        .values()
        .flat_map(|m| {
            m.manifest
                .provides
                .iter()
                .map(move |s| (s.clone(), Arc::<str>::from(m.id.as_str())))
        })
        .collect();
    let touched: std::collections::HashSet<&str> = plan
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a.action,
                ActionKind::Restart | ActionKind::Stop | ActionKind::Spawn
            )
        })
        .map(|a| a.module.as_str())
        .collect();
    for (id, d) in &desired.modules {
        if touched.contains(id.as_str()) {
            continue;
        }
        if let Some(e) = core.modules.get_mut(id.as_str()) {
            if e.desired.capabilities != d.capabilities {
                tracing::info!(moduleId = %id, "capabilities updated in place");
            }
            e.set_capabilities(d);
            // An unchanged module keeps its `Arc` (shared with its supervisor): a copy per pass
            // would keep two of each module's desired state resident and churn the heap.
            if e.desired.spawn_fingerprint == d.spawn_fingerprint && *e.desired != *d {
                e.desired = Arc::new(d.clone());
            }
        }
    }
}

async fn apply_plan(
    kernel: &Arc<Kernel>,
    desired: &Arc<Desired>,
    plan: &Plan,
    progress: Option<&mpsc::UnboundedSender<String>>,
) {
    let say = |msg: String| {
        tracing::info!("{msg}");
        if let Some(p) = progress {
            let _ = p.send(msg);
        }
    };
    sync_in_place(kernel, desired, plan);
    let mut spawns = Spawns::default();
    for action in &plan.actions {
        let id = action.module.as_str();
        if !matches!(action.action, ActionKind::Restart | ActionKind::Spawn) {
            spawns.flush(&say).await;
        }
        match action.action {
            ActionKind::Stop => {
                let (tx, rx) = oneshot::channel();
                let stop = SupCmd::Stop {
                    reason: Reason::new(action.token, action.reason.clone()),
                    tier: 0,
                    done: Some(tx),
                };
                if kernel.tell(id, stop) {
                    let _ = rx.await;
                }
                {
                    let mut core = kernel.core.lock();
                    if let Some(e) = core.modules.remove(id) {
                        let departed = super::router::Departed {
                            provides: e.desired.manifest.provides.clone(),
                        };
                        core.departed.insert(e.id, departed);
                    }
                }
                say(format!("- {id}: stopped ({})", action.reason));
            }
            ActionKind::Restart | ActionKind::Spawn => {
                let Some(d) = desired.modules.get(id) else {
                    continue;
                };
                let d = Arc::new(d.clone());
                let (tx, rx) = oneshot::channel();
                let restart = SupCmd::Restart {
                    desired: d.clone(),
                    reason: Reason::new(action.token, action.reason.clone()),
                    done: Some(tx),
                };
                if kernel.tell(id, restart) {
                    spawns.flush(&say).await;
                    let _ = rx.await;
                    say(format!("~ {id}: restarted ({})", action.reason));
                } else {
                    // Processes start in plan order (providers first, then priority, then id);
                    // each module's sandbox is built while the one before it starts.
                    spawns.start(kernel, d, &action.reason, &say).await;
                }
            }
            ActionKind::Config => {
                let Some(d) = desired.modules.get(id) else {
                    continue;
                };
                let d = Arc::new(d.clone());
                let sections = action.sections.clone().unwrap_or_default();
                let config = super::supervisor::init_config(&d);
                let mut core = kernel.core.lock();
                let sent = core.send(id, |b| {
                    crate::protocol::outbound::config_update(b, &config, &sections)
                });
                if let Some(e) = core.modules.get_mut(id) {
                    e.desired = d;
                }
                drop(core);
                tracing::info!(changedSections = ?sections, affectedModules = ?[id], delivered = sent, "config.reload");
                say(format!("~ {id}: config updated ({})", sections.join(", ")));
            }
            ActionKind::Cluster => {
                crate::cluster::apply(kernel, desired.cluster.as_ref());
                say(format!("~ {}: {}", action.module, action.reason));
            }
            ActionKind::Blocked => {}
        }
    }
    spawns.flush(&say).await;
}

/// The new modules of a pass being started in plan order (see [`SpawnTurn`]).
#[derive(Default)]
struct Spawns {
    /// The last one's turn: the next one spawns after it.
    last: Option<Arc<Turn>>,
    /// Started, not yet said: id, reason, the turn given once it spawned.
    pending: Vec<(String, String, Arc<Turn>)>,
}

impl Spawns {
    /// Starts a module's supervisor; returns once its sandbox is prepared (or it gave up).
    async fn start(
        &mut self,
        kernel: &Arc<Kernel>,
        d: Arc<pons_reconciler::DesiredModule>,
        reason: &str,
        say: &impl Fn(String),
    ) {
        let done = Arc::new(Turn::default());
        let prepared = Arc::new(Turn::default());
        let turn = SpawnTurn {
            after: self.last.replace(done.clone()),
            prepared: prepared.clone(),
            done: done.clone(),
        };
        self.pending.push((d.id.clone(), reason.to_string(), done));
        spawn_module(kernel, d, turn);
        prepared.notified().await;
        // Those spawned meanwhile are said now, in order.
        let spawned = self.pending.iter().take_while(|p| p.2.is_given()).count();
        for (id, reason, _) in self.pending.drain(..spawned) {
            say(format!("+ {id}: spawned ({reason})"));
        }
    }

    /// Waits until every module started so far spawned (or failed to), saying each in order.
    async fn flush(&mut self, say: &impl Fn(String)) {
        for (id, reason, done) in self.pending.drain(..) {
            done.notified().await;
            say(format!("+ {id}: spawned ({reason})"));
        }
        self.last = None;
    }
}

/// Creates the router entry and the supervisor task of a module, which spawns its first process
/// in its `turn`.
pub fn spawn_module(
    kernel: &Arc<Kernel>,
    desired: Arc<pons_reconciler::DesiredModule>,
    turn: SpawnTurn,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut core = kernel.core.lock();
        let id: Arc<str> = Arc::from(desired.id.as_str());
        core.departed.remove(&id);
        core.modules.insert(id, Entry::new(desired.clone(), tx));
    }
    let sup = Supervisor::new(kernel.clone(), desired, rx, turn);
    tokio::spawn(sup.run());
}

/// Forwards router requests: failures to the supervisors, kernel calls to their handler.
async fn router_events(kernel: Arc<Kernel>, mut rx: mpsc::UnboundedReceiver<RouterEvent>) {
    while let Some(ev) = rx.recv().await {
        match ev {
            RouterEvent::Fail {
                module,
                gen,
                reason,
            } => {
                kernel.tell(&module, SupCmd::Fail { gen, reason });
            }
            RouterEvent::Call {
                module,
                gen,
                id,
                method,
                params,
                slot,
            } => {
                tokio::spawn(super::calls::handle(
                    kernel.clone(),
                    module,
                    gen,
                    id,
                    method,
                    params,
                    slot,
                ));
            }
        }
    }
}

/// Answers timed-out RPCs: sleeps until the earliest deadline of an RPC in flight (woken when an
/// earlier one is added, [`super::router::PendingRpcs`]), and not at all while none is.
async fn rpc_timeouts(kernel: Arc<Kernel>) {
    let timer = kernel.core.lock().rpcs.timer.clone();
    loop {
        let next = kernel.core.lock().expire_rpcs(Instant::now());
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = timer.notified() => {}
                }
            }
            None => timer.notified().await,
        }
    }
}

/// A periodic resync pass catches anything the watcher missed.
async fn resync(kernel: Arc<Kernel>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.tick().await;
    loop {
        tick.tick().await;
        if kernel.is_shutting_down() {
            return;
        }
        ask_pass(&kernel, PassKind::Auto);
    }
}
