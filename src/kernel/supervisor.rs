//! One task per module: spawn the process, feed it `install`/`init`, watch readiness, health and
//! back-pressure, and take every failure (unexpected exit, ready timeout, failed health checks,
//! hung consumer) through the one restart path: exponential backoff
//! (`restartBaseMs` base, 1 s by default, doubling, `maxRestartBackoffMs` cap, jittered),
//! `crashed` after `maxRestarts` consecutive failures, the counter reset after 60 s ready. Every
//! failure's cause is kept as the module's last error until it has been ready that long or is
//! restarted on request. A strict-mode violation stops the module instead.

use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sandbox::ModuleChild as Child;
use pons_reconciler::reason::{self, Reason};
use pons_reconciler::{DesiredModule, Status};
use tokio::sync::{mpsc, oneshot};

use crate::kernel::outbox::{self, Outbox};
use crate::kernel::{hints, stdio, Kernel, KernelEvent};
use crate::protocol::outbound;

/// Commands to a module's supervisor task.
#[derive(Debug)]
pub enum SupCmd {
    /// Stop for good (module removed, blocked, kernel shutdown); the task ends.
    Stop {
        reason: Reason,
        tier: usize,
        done: Option<oneshot::Sender<()>>,
    },
    /// Stop the current process and start a new one from `desired` (fresh restart count).
    Restart {
        desired: Arc<DesiredModule>,
        reason: Reason,
        done: Option<oneshot::Sender<()>>,
    },
    /// Go through the restart path (if `gen` is still the current process).
    Fail { gen: u64, reason: Reason },
    /// The stdout of process `gen` reached end of file.
    StdoutClosed { gen: u64 },
    /// The module's status or the lifecycle settings changed: its timed checks are due at other
    /// times ([`Supervisor::check`]).
    Recheck,
}

/// How one process ended, from the supervisor's point of view.
enum Ended {
    /// Stopped on request; the task is finished.
    Stopped,
    /// Replaced on request by a new desired state.
    Replaced(Arc<DesiredModule>, Option<oneshot::Sender<()>>),
    /// A failure: restart path (a security violation: stopped until asked again).
    Failed {
        ready_for: Duration,
        reason: Option<Reason>,
    },
}

const RESET_AFTER: Duration = Duration::from_secs(60);
/// Between SIGTERM to the process group and SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// A module's place in its pass's spawn order: its first process is spawned after the previous
/// module's (`after`), and the next module's — and the pass — learn that it was spawned (or could
/// not be) when this value is dropped (`done`). What a spawn can do ahead (the Landlock ruleset,
/// the program's support) is done before waiting, and the pass starts the next module once this
/// one has done it (`prepared`): the next sandbox is built while this process forks, one module
/// ahead (not all at once, which would delay the first modules' start), and the processes still
/// start in plan order.
#[derive(Debug, Default)]
pub struct SpawnTurn {
    pub after: Option<Arc<Turn>>,
    pub prepared: Arc<Turn>,
    pub done: Arc<Turn>,
}

impl Drop for SpawnTurn {
    fn drop(&mut self) {
        self.prepared.give();
        self.done.give();
    }
}

/// A one-time signal that any number of tasks may wait for.
#[derive(Debug, Default)]
pub struct Turn {
    given: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Turn {
    pub fn give(&self) {
        self.given.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_given(&self) -> bool {
        self.given.load(std::sync::atomic::Ordering::Acquire)
    }

    pub async fn notified(&self) {
        loop {
            let wait = self.notify.notified();
            if self.given.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            wait.await;
        }
    }
}

pub struct Supervisor {
    kernel: Arc<Kernel>,
    id: Arc<str>,
    desired: Arc<DesiredModule>,
    rx: mpsc::UnboundedReceiver<SupCmd>,
    gen: u64,
    /// The place of the first spawn in its pass's order (see [`SpawnTurn`]).
    turn: Option<SpawnTurn>,
    /// The read paths an import-failure hint was last logged for ([`hints::StderrHint`]).
    import_hint: Arc<parking_lot::Mutex<Option<Vec<std::path::PathBuf>>>>,
}

impl Supervisor {
    pub fn new(
        kernel: Arc<Kernel>,
        desired: Arc<DesiredModule>,
        rx: mpsc::UnboundedReceiver<SupCmd>,
        turn: SpawnTurn,
    ) -> Supervisor {
        Supervisor {
            kernel,
            id: Arc::from(desired.id.as_str()),
            desired,
            rx,
            gen: 0,
            turn: Some(turn),
            import_hint: Arc::default(),
        }
    }

    pub async fn run(mut self) {
        let mut next_spawn = Some(tokio::time::Instant::now());
        loop {
            // Waiting for the next spawn (backoff), or crashed (no spawn until asked).
            let deadline = next_spawn;
            let cmd = match deadline {
                // Due now: spawn at once, unless a command is already queued. A timer would not
                // fire before the runtime's next timer tick (≈ 1 ms, and only once a worker
                // parks), which cost every spawn of a boot about that much.
                Some(at) if at <= tokio::time::Instant::now() => match self.rx.try_recv() {
                    Ok(cmd) => Some(Some(cmd)),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
                },
                Some(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => None,
                    cmd = self.rx.recv() => Some(cmd),
                },
                None => Some(self.rx.recv().await),
            };
            match cmd {
                None => {}
                Some(None) => return,
                Some(Some(SupCmd::Stop { reason, done, .. })) => {
                    self.finish_stopped(&reason);
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    return;
                }
                Some(Some(SupCmd::Restart { desired, done, .. })) => {
                    self.replace_desired(desired);
                    self.reset_for_restart();
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    next_spawn = Some(tokio::time::Instant::now());
                    continue;
                }
                Some(Some(SupCmd::Fail { .. } | SupCmd::StdoutClosed { .. } | SupCmd::Recheck)) => {
                    continue
                }
            }
            match self.run_process().await {
                Ended::Stopped => return,
                Ended::Replaced(desired, done) => {
                    self.replace_desired(desired);
                    self.reset_for_restart();
                    if let Some(d) = done {
                        let _ = d.send(());
                    }
                    next_spawn = Some(tokio::time::Instant::now());
                }
                Ended::Failed {
                    reason: Some(r), ..
                } if r.token == reason::SECURITY_VIOLATION => {
                    // As the reference: a module that broke its grant is stopped, not restarted;
                    // `pons modules restart` or a changed approval revives it.
                    self.finish_stopped(&r);
                    self.kernel.event(KernelEvent::ModuleDown);
                    next_spawn = None;
                }
                Ended::Failed { ready_for, .. } => {
                    next_spawn = self.after_failure(ready_for);
                }
            }
        }
    }

    /// The router entry holds the desired state a respawn uses (config pushes update it too).
    fn replace_desired(&mut self, desired: Arc<DesiredModule>) {
        if let Some(e) = self.kernel.core.lock().modules.get_mut(&self.id) {
            e.desired = desired.clone();
        }
        self.desired = desired;
    }

    fn current_desired(&self) -> Arc<DesiredModule> {
        self.kernel
            .core
            .lock()
            .modules
            .get(&self.id)
            .map_or_else(|| self.desired.clone(), |e| e.desired.clone())
    }

    /// A restart on request (operator, or a pass): a fresh restart count, no failure kept, and
    /// `restarting` until the new process starts, so a waiter never mistakes the old state (ready,
    /// crashed) for the outcome of the restart.
    fn reset_for_restart(&self) {
        let mut core = self.kernel.core.lock();
        if let Some(e) = core.modules.get_mut(&self.id) {
            e.restarts = 0;
            e.reason = None;
            e.last_error = None;
        }
        core.set_status(&self.id, Status::Restarting);
    }

    /// Counts a failure; returns when to respawn, or `None` when the module is now crashed.
    fn after_failure(&mut self, ready_for: Duration) -> Option<tokio::time::Instant> {
        let lc = self.kernel.lifecycle();
        let mut core = self.kernel.core.lock();
        let e = core.modules.get_mut(&self.id)?;
        if ready_for >= RESET_AFTER {
            e.restarts = 0;
        }
        e.restarts += 1;
        let n = e.restarts;
        if n >= lc.max_restarts {
            e.reason = Some(format!(
                "crashed after {} consecutive failures; `pons apply` or `pons modules restart {}` retries it",
                n, self.id
            ));
            core.set_status(&self.id, Status::Crashed);
            tracing::error!(moduleId = %self.id, restartCount = n, "Module crashed — max restarts reached");
            core.emit(
                "system:module:crashed",
                &serde_json::json!({"moduleId": &*self.id, "restartCount": n}),
            );
            drop(core);
            self.kernel.event(KernelEvent::ModuleDown);
            return None;
        }
        let exp = lc.restart_base_ms.saturating_mul(1u64 << (n - 1).min(30));
        let delay = exp.min(lc.max_restart_backoff_ms);
        // ±10 % jitter so modules that failed together do not restart in lockstep.
        let jitter = (delay / 10) as i64;
        let offset = if jitter > 0 {
            (fastrand_u64() % (2 * jitter as u64 + 1)) as i64 - jitter
        } else {
            0
        };
        let delay = Duration::from_millis((delay as i64 + offset).max(0) as u64);
        tracing::info!(moduleId = %self.id, restartCount = n, delayMs = delay.as_millis() as u64, "module.restart scheduled");
        core.set_status(&self.id, Status::Restarting);
        Some(tokio::time::Instant::now() + delay)
    }

    fn finish_stopped(&self, reason: &Reason) {
        let mut core = self.kernel.core.lock();
        core.on_leave(&self.id);
        core.set_status(&self.id, Status::Stopped);
        if let Some(e) = core.modules.get_mut(&self.id) {
            e.reason = Some(reason.to_string());
        }
    }

    /// Runs one process from spawn to its end.
    async fn run_process(&mut self) -> Ended {
        let lc = self.kernel.lifecycle();
        let desired = self.current_desired();
        self.desired = desired.clone();
        // Dropped (the next module's turn) once this one spawned, failed to, or returned early.
        let turn = self.turn.take();
        let after = turn.as_ref().and_then(|t| t.after.clone());
        if let Some(prep) = &desired.spawn.prepare {
            // Runtime preparations (which may write the home's files) run one at a time.
            if let Some(after) = &after {
                after.notified().await;
            }
            if let Some(ended) = self.prepare(prep, &lc).await {
                return ended;
            }
        }
        let tag = crate::sandbox::tag::next();
        let mut command = crate::sandbox::command(&desired.spawn, tag);
        let prepared = command.prepare();
        if let Some(t) = &turn {
            t.prepared.give();
        }
        if let Some(after) = &after {
            after.notified().await;
        }
        // Every descendant starts after this instant.
        let floor = crate::sandbox::tag::ticks_now();
        let spawned = command.spawn_prepared(prepared);
        // The next module of the pass may start now (it waited for this one, spawned or not).
        drop(turn);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(moduleId = %self.id, program = %desired.spawn.program.display(), error = %e, "module.spawn failed");
                self.set_failure(&format!(
                    "cannot start {}: {e}",
                    desired.spawn.program.display()
                ));
                return Ended::Failed {
                    ready_for: Duration::ZERO,
                    reason: None,
                };
            }
        };
        self.gen += 1;
        let gen = self.gen;
        let pid = child.id();
        let pgid = pid.map(|p| p as i32);
        if let Some(pg) = pgid {
            self.kernel.watchdog_add(pg);
        }
        let sandbox = crate::sandbox::support();
        tracing::info!(moduleId = %self.id, pid = pid, runtime = %desired.spawn.runtime, sandbox = sandbox.state.as_str(), abi = sandbox.landlock_abi, "module.spawn");
        let spawned = Instant::now();

        let outbox = Outbox::new();
        if let Some(stdin) = child.stdin.take() {
            tokio::spawn(outbox::writer_task(outbox.clone(), stdin));
        }
        let last_stderr = Arc::new(parking_lot::Mutex::new(None::<String>));
        let hint = hints::StderrHint::new(
            self.id.clone(),
            &desired.spawn.runtime,
            &desired.spawn.sandbox,
            sandbox.state != crate::sandbox::SandboxState::Unavailable,
            self.import_hint.clone(),
        );
        let stderr_task = child.stderr.take().map(|stderr| {
            tokio::spawn(stdio::stderr_task(
                self.id.clone(),
                stderr,
                last_stderr.clone(),
                hint,
            ))
        });
        {
            let mut core = self.kernel.core.lock();
            if let Some(e) = core.modules.get_mut(&self.id) {
                e.gen = gen;
                e.pid = pid;
                e.outbox = Some(outbox.clone());
                e.spawned_at = Some(spawned);
                e.ready_at = None;
                e.waiting_since = None;
                e.held_back_since = None;
                e.held_back_until = None;
                e.held_back_total = Duration::ZERO;
                e.pongs = 0;
                e.desired = desired.clone();
                e.set_capabilities(&desired);
            }
            core.set_status(&self.id, Status::Starting);
            if !desired.installed && self.kernel.first_spawn(&self.id) {
                outbox.push_with(outbound::install);
            }
            let config = init_config(&desired);
            let home = core.settings.home.clone();
            outbox.push_with(|b| outbound::init(b, &config, &home));
        }
        let mut proc = Proc {
            child,
            pgid,
            stdout: None,
            tag,
            started: floor,
            stderr: stderr_task,
        };
        if let Some(stdout) = proc.child.stdout.take() {
            proc.stdout = Some(tokio::spawn(stdio::stdout_task(
                self.kernel.clone(),
                self.id.clone(),
                gen,
                stdout,
                lc.max_message_bytes as usize,
            )));
        }

        let mut health = Health::default();
        loop {
            // Nothing wakes this task but the process, a command, the next due check (ready or
            // requires timeout, health ping, pong timeout, counter reset, a stall reaching
            // `slowConsumerMs`) and a write that has to wait for the module.
            let due = match self.check(&mut health, &outbox) {
                Ok(due) => due,
                Err(reason) => return self.failed(&mut proc, reason).await,
            };
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                status = proc.child.wait() => {
                    return self.exited(status.ok(), &last_stderr, spawned, &mut proc).await;
                }
                cmd = self.rx.recv() => match cmd {
                    None => {
                        let r = Reason::new(reason::SHUTDOWN, "");
                        self.terminate(&mut proc, &r, 0).await;
                        return Ended::Stopped;
                    }
                    Some(SupCmd::Stop { reason, tier, done }) => {
                        self.terminate(&mut proc, &reason, tier).await;
                        self.finish_stopped(&reason);
                        if let Some(d) = done { let _ = d.send(()); }
                        return Ended::Stopped;
                    }
                    Some(SupCmd::Restart { desired, reason, done }) => {
                        self.terminate(&mut proc, &reason, 0).await;
                        return Ended::Replaced(desired, done);
                    }
                    Some(SupCmd::Fail { gen: g, reason }) if g == gen => {
                        return self.failed(&mut proc, reason).await;
                    }
                    Some(SupCmd::StdoutClosed { gen: g }) if g == gen => {
                        // Usually the process is exiting; give it a moment to report how.
                        if let Ok(status) = tokio::time::timeout(Duration::from_millis(500), proc.child.wait()).await {
                            return self.exited(status.ok(), &last_stderr, spawned, &mut proc).await;
                        }
                        let r = Reason::new(reason::STDOUT_CLOSED, "stdout closed while the process lives on");
                        return self.failed(&mut proc, r).await;
                    }
                    Some(_) => {}
                },
                () = sleep => {}
                () = outbox.write_waited() => {}
            }
        }
    }

    /// Runs the module's prepare step (deno's lock file, [`crate::kernel::prepare`]) while still
    /// answering stop and restart requests; `Some` when one came first.
    async fn prepare(
        &mut self,
        prep: &pons_reconciler::desired::Prepare,
        lc: &pons_reconciler::config::Lifecycle,
    ) -> Option<Ended> {
        self.kernel
            .core
            .lock()
            .set_status(&self.id, Status::Starting);
        let kernel = self.kernel.clone();
        let timeout = Duration::from_millis(lc.ready_timeout_ms);
        let step = crate::kernel::prepare::run(&kernel, &self.id, prep, timeout);
        tokio::pin!(step);
        loop {
            tokio::select! {
                () = &mut step => return None,
                cmd = self.rx.recv() => match cmd {
                    None => return Some(Ended::Stopped),
                    Some(SupCmd::Stop { reason, done, .. }) => {
                        self.finish_stopped(&reason);
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                        return Some(Ended::Stopped);
                    }
                    Some(SupCmd::Restart { desired, done, .. }) => {
                        return Some(Ended::Replaced(desired, done));
                    }
                    // Reports about an earlier process.
                    Some(SupCmd::Fail { .. } | SupCmd::StdoutClosed { .. } | SupCmd::Recheck) => {}
                },
            }
        }
    }

    /// How often a state that gives no event to wait for is looked at again: a ping queued behind
    /// bytes not yet written, a module held back (100 ms–1 s, as the checks were once paced).
    fn poll_step(lc: &pons_reconciler::config::Lifecycle) -> Duration {
        Duration::from_millis(lc.ping_timeout_ms.min(lc.health_interval_ms))
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn ready_for(&self) -> Duration {
        self.kernel
            .core
            .lock()
            .modules
            .get(&self.id)
            .and_then(|e| e.ready_at)
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    /// A failure detected while the process runs: stop it and take the restart path (or, for a
    /// security violation, stop it for good).
    async fn failed(&mut self, proc: &mut Proc, reason: Reason) -> Ended {
        if reason.token == reason::SECURITY_VIOLATION {
            tracing::warn!(moduleId = %self.id, reason = reason.token, detail = %reason.detail, "module stopped: security violation");
        } else {
            tracing::warn!(moduleId = %self.id, reason = reason.token, detail = %reason.detail, "module failed — restarting");
        }
        let ready_for = self.ready_for();
        self.terminate(proc, &reason, 0).await;
        self.set_failure(&reason.to_string());
        Ended::Failed {
            ready_for,
            reason: Some(reason),
        }
    }

    /// Records a failure: the reason shown while it restarts, and its last error (kept when it
    /// is crashed and the reason says so).
    fn set_failure(&self, cause: &str) {
        if let Some(e) = self.kernel.core.lock().modules.get_mut(&self.id) {
            e.reason = Some(cause.to_string());
            e.last_error = Some(cause.to_string());
        }
    }

    /// The timed checks: ready timeout, requires timeout, health, hung consumer, counter reset.
    /// Returns the failure, or when the next check is due (`None`: only an event can make one
    /// due — a status change or a new setting, told with [`SupCmd::Recheck`], or a write that has
    /// to wait for the module).
    fn check(&self, health: &mut Health, outbox: &Outbox) -> Result<Option<Instant>, Reason> {
        let lc = self.kernel.lifecycle();
        let mut core = self.kernel.core.lock();
        let Some(e) = core.modules.get_mut(&self.id) else {
            return Ok(None);
        };
        let now = Instant::now();
        let ms = Duration::from_millis;
        let step = now + Self::poll_step(&lc);
        let mut due = Due::default();
        match e.status {
            Status::Starting | Status::Restarting => {
                // Time the kernel held the module back (not reading its stdout) is not its own.
                let since = e
                    .spawned_at
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
                    .saturating_sub(e.held_back_for());
                let timeout = ms(lc.ready_timeout_ms);
                if since >= timeout {
                    return Err(Reason::new(
                        reason::READY_TIMEOUT,
                        format!("no `ready` within {} ms", lc.ready_timeout_ms),
                    ));
                }
                // While held back the deadline moves on with the hold.
                due.at(if e.held_back_since.is_some() {
                    step
                } else {
                    now + (timeout - since)
                });
            }
            Status::Waiting => {
                let since = e
                    .waiting_since
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let timeout = ms(lc.requires_timeout_ms);
                if since >= timeout {
                    let missing = core.missing_requires(&self.desired.manifest.requires);
                    return Err(Reason::new(
                        reason::REQUIRES_TIMEOUT,
                        format!(
                            "required services {} not ready within {} ms",
                            missing.join(", "),
                            lc.requires_timeout_ms
                        ),
                    ));
                }
                due.at(now + (timeout - since));
            }
            Status::Ready => {
                let ready_at = e.ready_at.unwrap_or(now);
                if e.restarts > 0 || e.last_error.is_some() {
                    if now.saturating_duration_since(ready_at) >= RESET_AFTER {
                        tracing::debug!(moduleId = %self.id, "restart counter reset");
                        e.restarts = 0;
                        e.reason = None;
                        e.last_error = None;
                    } else {
                        due.at(ready_at + RESET_AFTER);
                    }
                }
                // Health: one ping per interval; a ping unanswered within the timeout is a failure.
                // The timeout runs only while the module can answer and be heard: from when the
                // ping was written to its stdin (not while it waits behind unread deliveries —
                // that is the slow-consumer check's business), and never while the kernel holds
                // the module's stdout back; it starts over when such a hold ends.
                if let Some(ping) = &mut health.outstanding {
                    if ping.reached.is_none() && outbox.reached(ping.mark) {
                        ping.reached = Some(now);
                    }
                    let running_since = ping
                        .reached
                        .map(|r| e.held_back_until.map_or(r, |u| u.max(r)));
                    let held = e.held_back_since.is_some();
                    let timed_out = !held
                        && running_since.is_some_and(|t| {
                            now.saturating_duration_since(t) >= ms(lc.ping_timeout_ms)
                        });
                    if e.pongs > ping.pongs_then {
                        health.outstanding = None;
                        health.failures = 0;
                    } else if timed_out {
                        health.outstanding = None;
                        health.failures += 1;
                        tracing::debug!(moduleId = %self.id, failures = health.failures, "Health check failed — retrying");
                        if health.failures >= lc.health_max_failures {
                            return Err(Reason::new(
                                reason::HEALTH_CHECK_FAILED,
                                format!("{} pings unanswered", health.failures),
                            ));
                        }
                    } else {
                        // Not written yet, or held back: looked at again; else its timeout.
                        due.at(match running_since {
                            Some(t) if !held => t + ms(lc.ping_timeout_ms),
                            _ => step,
                        });
                    }
                }
                let last = health.last_ping.unwrap_or(ready_at);
                if health.outstanding.is_none() {
                    if now.saturating_duration_since(last) >= ms(lc.health_interval_ms) {
                        health.last_ping = Some(now);
                        // Nothing queued: the writer sends the ping at once.
                        let idle = outbox.queued() == 0;
                        if outbox.push_with(outbound::ping) {
                            health.outstanding = Some(Ping {
                                pongs_then: e.pongs,
                                mark: outbox.mark(),
                                reached: idle.then_some(now),
                            });
                            due.at(if idle {
                                now + ms(lc.ping_timeout_ms)
                            } else {
                                step
                            });
                        }
                        due.at(now + ms(lc.health_interval_ms));
                    } else {
                        due.at(last + ms(lc.health_interval_ms));
                    }
                }
                // Hung consumer: timed only while bytes wait (a write that has to wait for the
                // module wakes this task when it is not timing one already).
                if outbox.watch_stall() {
                    let stalled = outbox.stalled_for();
                    let limit = ms(lc.slow_consumer_ms);
                    if stalled >= limit {
                        return Err(Reason::new(
                            reason::SLOW_CONSUMER,
                            format!(
                                "{} bytes unread for {} ms",
                                outbox.queued(),
                                stalled.as_millis()
                            ),
                        ));
                    }
                    due.at(now + (limit - stalled));
                }
            }
            _ => {}
        }
        Ok(due.0)
    }

    /// The process exited by itself: log it and take the restart path.
    async fn exited(
        &mut self,
        status: Option<ExitStatus>,
        last_stderr: &parking_lot::Mutex<Option<String>>,
        spawned: Instant,
        proc: &mut Proc,
    ) -> Ended {
        let ready_for = self.ready_for();
        if let Some(pg) = proc.pgid {
            let _ = crate::sandbox::kill::kill_group(pg);
            self.kernel.watchdog_remove(pg);
        }
        self.sweep_descendants(proc).await;
        // What the process wrote before it died is still routed (its last logs, its answers),
        // and its last stderr line read: it is the cause the failure is reported with.
        proc.drain_stdout().await;
        proc.drain_stderr().await;
        let alive = spawned.elapsed();
        let code = status.and_then(|s| s.code());
        let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
        let stderr = last_stderr.lock().clone();
        let how = match (code, signal) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "exited".into(),
        };
        let detail = match (&stderr, alive < Duration::from_secs(1)) {
            (Some(line), _) => line.clone(),
            // How it ended is said too: a module killed from outside (signal 9) is no broken
            // entry point.
            (None, true) => format!(
                "exited after {}ms with no output ({how}) — check the module entry point (runner) and its dependencies",
                alive.as_millis()
            ),
            (None, false) => how,
        };
        let restarts = {
            let mut core = self.kernel.core.lock();
            core.on_leave(&self.id);
            core.modules.get(&self.id).map_or(0, |e| e.restarts) + 1
        };
        if alive < Duration::from_secs(1) {
            tracing::warn!(moduleId = %self.id, exitCode = code, signal = signal, restartCount = restarts, aliveMs = alive.as_millis() as u64, stderr = stderr.as_deref(), "Module exited unexpectedly — {detail}");
        } else {
            tracing::error!(moduleId = %self.id, exitCode = code, signal = signal, restartCount = restarts, aliveMs = alive.as_millis() as u64, stderr = stderr.as_deref(), "Module exited unexpectedly — {detail}");
        }
        self.set_failure(&format!("exited unexpectedly: {detail}"));
        Ended::Failed {
            ready_for,
            reason: None,
        }
    }

    /// Stops the current process: `system:module:stopping`, `shutdown`, grace, SIGTERM to the
    /// group, SIGKILL; then, once what it wrote until its exit is routed (answers to RPCs in
    /// flight, shutdown logs), the module's routing state is cleaned up.
    async fn terminate(&mut self, proc: &mut Proc, reason: &Reason, tier: usize) {
        let (child, pgid) = (&mut proc.child, proc.pgid);
        let grace = Duration::from_millis(self.kernel.lifecycle().shutdown_grace_ms);
        {
            let mut core = self.kernel.core.lock();
            core.emit(
                "system:module:stopping",
                &serde_json::json!({"moduleId": &*self.id, "tier": tier}),
            );
            core.set_status(&self.id, Status::Stopping);
            core.send(&self.id, outbound::shutdown);
        }
        let exited = tokio::time::timeout(grace, child.wait()).await.is_ok();
        if !exited {
            if let Some(pg) = pgid {
                let _ = crate::sandbox::kill::terminate_group(pg);
            }
            if tokio::time::timeout(TERM_GRACE, child.wait())
                .await
                .is_err()
            {
                if let Some(pg) = pgid {
                    let _ = crate::sandbox::kill::kill_group(pg);
                }
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        if let Some(pg) = pgid {
            // Grandchildren left in the group go too.
            let _ = crate::sandbox::kill::kill_group(pg);
            self.kernel.watchdog_remove(pg);
        }
        self.sweep_descendants(proc).await;
        proc.drain_stdout().await;
        let mut core = self.kernel.core.lock();
        core.on_leave(&self.id);
        core.emit(
            "system:module:stopped",
            &serde_json::json!({"moduleId": &*self.id, "reason": reason.token, "detail": reason.detail}),
        );
        if reason.detail.is_empty() {
            tracing::info!(moduleId = %self.id, reason = reason.token, "module.killed");
        } else {
            tracing::info!(moduleId = %self.id, reason = reason.token, detail = %reason.detail, "module.killed");
        }
    }

    /// Kills the descendants of the ended process that left its group (`setsid`, double fork):
    /// every live process carrying its tag ([`crate::sandbox::tag`]).
    /// During a kernel shutdown, [`super::shutdown::stop_all`] sweeps once for every module.
    async fn sweep_descendants(&self, proc: &Proc) {
        use crate::sandbox::tag;
        if self.kernel.is_shutting_down() {
            return;
        }
        let floor = proc.started;
        let scope = tag::Scope::Module(proc.tag);
        let swept =
            tokio::task::spawn_blocking(move || tag::sweep(scope, floor, SWEEP_DEADLINE)).await;
        let Ok(swept) = swept else {
            return;
        };
        if !swept.killed.is_empty() {
            tracing::info!(moduleId = %self.id, pids = ?swept.killed, "module.descendants.killed — they had left its process group");
        }
        if !swept.survivors.is_empty() {
            tracing::warn!(moduleId = %self.id, pids = ?swept.survivors, "module.descendants.alive — still running {} s after SIGKILL", SWEEP_DEADLINE.as_secs());
        }
    }
}

/// How long a sweep of a module's descendants keeps killing.
pub(super) const SWEEP_DEADLINE: Duration = Duration::from_secs(5);

/// The running process of one module and the tasks that read its stdout and stderr.
struct Proc {
    child: Child,
    pgid: Option<i32>,
    stdout: Option<tokio::task::JoinHandle<()>>,
    /// The process's tag: its descendants carry it wherever they went.
    tag: u64,
    /// Its start time (clock ticks since boot; 0 when it could not be read).
    started: u64,
    stderr: Option<tokio::task::JoinHandle<()>>,
}

/// How long the lines a process wrote before it exited may take to be routed.
const DRAIN_STDOUT: Duration = Duration::from_secs(2);

impl Proc {
    /// Waits (bounded) until the stdout reader has routed everything the process wrote: its
    /// group is gone, so the pipe reaches end of file.
    async fn drain_stdout(&mut self) {
        if let Some(task) = self.stdout.take() {
            let _ = tokio::time::timeout(DRAIN_STDOUT, task).await;
        }
    }

    /// Waits (bounded, as [`Proc::drain_stdout`]) until the stderr reader has read everything.
    async fn drain_stderr(&mut self) {
        if let Some(task) = self.stderr.take() {
            let _ = tokio::time::timeout(DRAIN_STDOUT, task).await;
        }
    }
}

#[derive(Default)]
struct Health {
    last_ping: Option<Instant>,
    outstanding: Option<Ping>,
    failures: u32,
}

/// The earliest of the instants a timed check is due at.
#[derive(Default)]
struct Due(Option<Instant>);

impl Due {
    fn at(&mut self, t: Instant) {
        self.0 = Some(self.0.map_or(t, |d| d.min(t)));
    }
}

/// A health ping waiting for its pong.
struct Ping {
    /// Pongs counted when it was sent.
    pongs_then: u64,
    /// The outbox mark just after it was queued ([`Outbox::mark`]).
    mark: u64,
    /// When the supervisor saw it written to the module's stdin.
    reached: Option<Instant>,
}

/// `init.config`: `{"<configKey>": section}` or `{}`.
pub fn init_config(d: &DesiredModule) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let (Some(key), Some(section)) = (&d.manifest.config_key, &d.config_section) {
        map.insert(key.clone(), section.clone());
    }
    serde_json::Value::Object(map)
}

/// A small non-cryptographic random number for jitter.
fn fastrand_u64() -> u64 {
    let b = uuid::Uuid::new_v4();
    let bytes = b.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

impl Kernel {
    /// Sends a [`KernelEvent`] to the main loop.
    pub fn event(&self, ev: KernelEvent) {
        let _ = self.events.send(ev);
    }
}
