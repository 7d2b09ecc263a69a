//! The file watcher: inotify (the `notify` crate) on the home directory, turning every batch of
//! relevant changes into one [`Trigger::Files`]. A batch is what arrives within the debounce time
//! (≈100 ms) after its first event; between batches the watcher thread sleeps until the next
//! event or rescan, so an idle home costs no wake-up but the rescan's (a few seconds apart, a
//! `stat` per watched directory).
//!
//! What is watched (each directory non-recursively, re-evaluated after every batch, and checked
//! every few seconds):
//! - the home directory (config.yaml, permissions.yaml, deno.json, `modules/` appearing): watching
//!   the directory, not the files, is what makes rename-saves visible;
//! - `modules/` itself (module directories and symlinks added or removed);
//! - every module directory, through its symlink if it is one (inotify follows the link, so a
//!   symlinked module's files are watched where they live), and when its `module.json` names an
//!   entry point or a config schema in a subdirectory, that subdirectory (or its nearest existing
//!   ancestor inside the module).
//!
//! Module trees are deliberately not watched recursively: a module's `node_modules/`, `.git/` or
//! build output would cost thousands of inotify watches and flood the kernel with passes, while
//! nothing a pass reads lives there. A directory replaced under the same path (a symlink
//! retargeted, a module directory deleted and re-created) is noticed by identity (device, inode)
//! and watched again, with a trigger.
//!
//! Ignored: access events (opening or reading a file) but a close after writing (the end of an
//! in-place save: a pass that met the file while it was being written kept its last good value),
//! anything under `.runtime/` and `run/`, and every entry of the home directory itself but the
//! inputs a pass reads ([`HOME_INPUTS`]): a log redirected into the home must not cost a pass per
//! line.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::Trigger;
use crate::home::Home;

/// Tuning of the watcher.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// How long after the first event of a batch the batch is reported (≈100 ms).
    pub debounce: Duration,
    /// How often the watched directories are checked without any event (catches a symlinked
    /// module's target re-created elsewhere, where no watched directory sees it).
    pub rescan: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            debounce: Duration::from_millis(100),
            rescan: Duration::from_secs(3),
        }
    }
}

/// Keeps the watcher running; dropping it stops the watcher thread.
pub struct WatchGuard {
    stop: mpsc::Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Msg {
    Event(notify::Result<Event>),
    Stop,
}

/// Starts watching `home` with the default options (100 ms debounce).
pub fn spawn_watcher(home: &Home, tx: UnboundedSender<Trigger>) -> anyhow::Result<WatchGuard> {
    spawn_watcher_with(home, tx, WatchOptions::default())
}

/// Starts watching `home`; every debounced batch with a relevant change sends one
/// [`Trigger::Files`]. Fails if the home directory itself cannot be watched.
pub fn spawn_watcher_with(
    home: &Home,
    tx: UnboundedSender<Trigger>,
    opts: WatchOptions,
) -> anyhow::Result<WatchGuard> {
    let (msg_tx, msg_rx) = mpsc::channel();
    let handler_tx = msg_tx.clone();
    let mut watcher = notify::recommended_watcher(move |res| {
        let _ = handler_tx.send(Msg::Event(res));
    })
    .map_err(|e| anyhow::anyhow!("cannot start the file watcher: {e}"))?;
    let root = home.root.clone();
    watcher
        .watch(&root, RecursiveMode::NonRecursive)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot watch the home directory {}: {e}; check that it exists and is readable",
                root.display()
            )
        })?;
    let mut set = WatchSet::new(root.clone());
    set.refresh(&mut watcher);
    let thread = std::thread::Builder::new()
        .name("pons-watch".into())
        .spawn(move || run(watcher, set, &root, &msg_rx, &tx, opts))?;
    Ok(WatchGuard {
        stop: msg_tx,
        thread: Some(thread),
    })
}

fn run(
    mut watcher: RecommendedWatcher,
    mut set: WatchSet,
    root: &Path,
    rx: &mpsc::Receiver<Msg>,
    tx: &UnboundedSender<Trigger>,
    opts: WatchOptions,
) {
    loop {
        let first = match rx.recv_timeout(opts.rescan) {
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Msg::Event(ev)) => ev,
            Err(RecvTimeoutError::Timeout) => {
                // Only a directory that is no longer what it was (or gone) costs a full refresh.
                if set.moved() && set.refresh(&mut watcher) && tx.send(Trigger::Files).is_err() {
                    break;
                }
                continue;
            }
        };
        // The batch: every event within `debounce` of the first.
        let mut relevant = judge(root, first);
        let until = Instant::now() + opts.debounce;
        let mut stop = false;
        loop {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Msg::Event(ev)) => relevant |= judge(root, ev),
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    stop = true;
                    break;
                }
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        if stop {
            break;
        }
        // Watch new directories before asking for the pass, so no later change is missed. A batch
        // of access events alone (modules opening their own files) changes nothing: refreshing
        // would read every module.json, whose opens are events again, in an endless loop.
        let changed = relevant && set.refresh(&mut watcher);
        if (relevant || changed) && tx.send(Trigger::Files).is_err() {
            break;
        }
    }
}

/// Whether one event (or a watcher error, which asks for a full pass) is relevant.
fn judge(root: &Path, ev: notify::Result<Event>) -> bool {
    match ev {
        Ok(e) => is_relevant(root, &e),
        Err(e) => {
            tracing::warn!(error = %e, "file watcher error; requesting a full pass");
            true
        }
    }
}

/// Whether an event can change what a pass reads.
fn is_relevant(root: &Path, e: &Event) -> bool {
    let closed_after_writing = EventKind::Access(AccessKind::Close(AccessMode::Write));
    if matches!(e.kind, EventKind::Access(_)) && e.kind != closed_after_writing {
        return false;
    }
    if e.paths.is_empty() {
        // A rescan request from the backend.
        return true;
    }
    e.paths.iter().any(|p| !is_ignored(root, p))
}

/// The entries of the home directory itself that a pass reads; any other file there (an editor's
/// swap file, a log the operator redirects into the home, the store's `*.lock` files) is ignored.
const HOME_INPUTS: [&str; 5] = [
    "config.yaml",
    "permissions.yaml",
    "deno.json",
    "deno.jsonc",
    "modules",
];

fn is_ignored(root: &Path, p: &Path) -> bool {
    if p.starts_with(root.join(".runtime")) || p.starts_with(root.join("run")) {
        return true;
    }
    p.parent() == Some(root)
        && !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| HOME_INPUTS.contains(&n))
}

/// The directories being watched, each with the identity of what it resolved to.
struct WatchSet {
    root: PathBuf,
    watched: BTreeMap<PathBuf, (u64, u64)>,
}

fn identity(p: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(p).ok()?;
    m.is_dir().then(|| (m.dev(), m.ino()))
}

impl WatchSet {
    fn new(root: PathBuf) -> WatchSet {
        WatchSet {
            root,
            watched: BTreeMap::new(),
        }
    }

    /// The directories that should be watched now (the home root is watched separately).
    fn desired(&self) -> BTreeMap<PathBuf, (u64, u64)> {
        let mut want = BTreeMap::new();
        let modules = self.root.join("modules");
        let Some(id) = identity(&modules) else {
            return want;
        };
        want.insert(modules.clone(), id);
        let Ok(entries) = std::fs::read_dir(&modules) else {
            return want;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(id) = identity(&dir) else { continue };
            want.insert(dir.clone(), id);
            for sub in manifest_dirs(&dir) {
                if let Some(id) = identity(&sub) {
                    want.insert(sub, id);
                }
            }
        }
        want
    }

    /// Whether a watched directory is gone or now another one (a `stat` each: no file is opened,
    /// so the check itself causes no event).
    fn moved(&self) -> bool {
        self.watched.iter().any(|(p, id)| identity(p) != Some(*id))
    }

    /// Brings the watches in line with [`WatchSet::desired`]; true if anything was added or
    /// dropped.
    fn refresh(&mut self, watcher: &mut RecommendedWatcher) -> bool {
        let want = self.desired();
        let mut changed = false;
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(p, id)| want.get(*p) != Some(*id))
            .map(|(p, _)| p.clone())
            .collect();
        for p in stale {
            // The backend may already have dropped it (directory deleted): ignore errors.
            let _ = watcher.unwatch(&p);
            self.watched.remove(&p);
            changed = true;
        }
        for (p, id) in want {
            if self.watched.contains_key(&p) {
                continue;
            }
            match watcher.watch(&p, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(p, id);
                    changed = true;
                }
                Err(e) => tracing::debug!(path = %p.display(), error = %e, "cannot watch"),
            }
        }
        changed
    }
}

/// Subdirectories of a module named by its manifest (entry point, config schema): the directory
/// holding each, or its nearest existing ancestor inside the module directory.
fn manifest_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(bytes) = std::fs::read(dir.join("module.json")) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Vec::new();
    };
    let Ok(real_dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["entrypoint", "entry", "configSchema"] {
        let Some(rel) = m.get(key).and_then(|v| v.as_str()) else {
            continue;
        };
        let rel = Path::new(rel);
        if rel.is_absolute() {
            continue;
        }
        let mut cur = dir.join(rel);
        while cur.pop() && cur != dir {
            match std::fs::canonicalize(&cur) {
                Ok(real) if real.starts_with(&real_dir) && real != real_dir => {
                    if real.is_dir() {
                        out.push(cur.clone());
                    }
                    break;
                }
                Ok(_) => break,
                Err(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::*;

    struct Fixture {
        _tmp: tempfile::TempDir,
        home: Home,
        rx: UnboundedReceiver<Trigger>,
        _guard: WatchGuard,
    }

    fn fixture(setup: impl FnOnce(&Path)) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path().join("home"));
        std::fs::create_dir_all(&home.root).unwrap();
        setup(tmp.path());
        let (tx, rx) = unbounded_channel();
        let guard = spawn_watcher(&home, tx).unwrap();
        Fixture {
            _tmp: tmp,
            home,
            rx,
            _guard: guard,
        }
    }

    impl Fixture {
        /// Waits for a `Files` trigger (3 s deadline), then for 300 ms of quiet.
        async fn expect_files(&mut self, what: &str) {
            let got = tokio::time::timeout(Duration::from_secs(3), self.rx.recv()).await;
            assert_eq!(
                got.ok().flatten(),
                Some(Trigger::Files),
                "no trigger for {what}"
            );
            self.quiet().await;
        }

        async fn quiet(&mut self) {
            let end = Instant::now() + Duration::from_secs(5);
            while tokio::time::timeout(Duration::from_millis(300), self.rx.recv())
                .await
                .is_ok()
            {
                assert!(Instant::now() < end, "triggers never stop");
            }
        }

        async fn expect_none(&mut self, what: &str) {
            let got = tokio::time::timeout(Duration::from_millis(500), self.rx.recv()).await;
            assert!(got.is_err(), "unexpected trigger for {what}: {got:?}");
        }
    }

    #[tokio::test]
    async fn config_write_and_rename_save() {
        let mut f = fixture(|_| {});
        std::fs::write(f.home.config_yaml(), "a: 1\n").unwrap();
        f.expect_files("config.yaml written").await;
        let tmp = f.home.root.join(".config.yaml.swp");
        std::fs::write(&tmp, "a: 2\n").unwrap();
        std::fs::rename(&tmp, f.home.config_yaml()).unwrap();
        f.expect_files("config.yaml saved by rename").await;
        // Writes in place keep working after the rename replaced the file.
        std::fs::write(f.home.config_yaml(), "a: 3\n").unwrap();
        f.expect_files("config.yaml rewritten").await;
    }

    #[tokio::test]
    async fn closing_a_file_after_writing_triggers_again() {
        use std::io::Write;
        let mut f = fixture(|_| {});
        std::fs::write(f.home.config_yaml(), "a: 1\n").unwrap();
        f.expect_files("config.yaml written").await;
        // An in-place save that stays open: its first chunk triggers a pass (which finds it being
        // written), and its close must trigger the pass that reads it complete.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(f.home.config_yaml())
            .unwrap();
        w.write_all(b"a: ").unwrap();
        f.expect_files("first chunk").await;
        w.write_all(b"2\n").unwrap();
        f.expect_files("second chunk").await;
        drop(w);
        f.expect_files("closed after writing").await;
        // Reading it (open, close without writing) stays ignored.
        let _ = std::fs::read(f.home.config_yaml()).unwrap();
        f.expect_none("config.yaml read").await;
    }

    #[tokio::test]
    async fn new_module_dir_with_manifest_then_edit() {
        let mut f = fixture(|_| {});
        std::fs::create_dir(f.home.modules_dir()).unwrap();
        f.expect_files("modules/ created").await;
        let dir = f.home.modules_dir().join("echo");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("module.json"), "{}").unwrap();
        f.expect_files("module dir + module.json").await;
        std::fs::write(dir.join("module.json"), "{\"id\":\"echo\"}").unwrap();
        f.expect_files("module.json edited").await;
        std::fs::remove_dir_all(&dir).unwrap();
        f.expect_files("module dir removed").await;
    }

    #[tokio::test]
    async fn symlinked_module_edits_are_seen() {
        let mut f = fixture(|tmp| {
            let ext = tmp.join("src/linked");
            std::fs::create_dir_all(&ext).unwrap();
            std::fs::write(ext.join("module.json"), "{}").unwrap();
            std::fs::create_dir_all(tmp.join("home/modules")).unwrap();
            std::os::unix::fs::symlink(&ext, tmp.join("home/modules/linked")).unwrap();
        });
        let ext = f.home.root.parent().unwrap().join("src/linked");
        std::fs::write(ext.join("module.json"), "{\"id\":\"linked\"}").unwrap();
        f.expect_files("edit inside a symlinked module").await;

        // A symlink added while running is followed too.
        let ext2 = f.home.root.parent().unwrap().join("src/later");
        std::fs::create_dir_all(&ext2).unwrap();
        std::fs::write(ext2.join("module.json"), "{}").unwrap();
        std::os::unix::fs::symlink(&ext2, f.home.modules_dir().join("later")).unwrap();
        f.expect_files("symlink added").await;
        let tmp = ext2.join(".module.json.tmp");
        std::fs::write(&tmp, "{\"id\":\"later\"}").unwrap();
        std::fs::rename(&tmp, ext2.join("module.json")).unwrap();
        f.expect_files("rename-save inside the new symlinked module")
            .await;
    }

    #[tokio::test]
    async fn schema_subdirectory_is_watched() {
        let mut f = fixture(|tmp| {
            let dir = tmp.join("home/modules/gw/schema");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("config.json"), "{}").unwrap();
            std::fs::write(
                tmp.join("home/modules/gw/module.json"),
                "{\"configSchema\":\"./schema/config.json\"}",
            )
            .unwrap();
        });
        let schema = f.home.modules_dir().join("gw/schema/config.json");
        std::fs::write(&schema, "{\"type\":\"object\"}").unwrap();
        f.expect_files("schema edited").await;
    }

    #[tokio::test]
    async fn runtime_and_run_are_ignored() {
        let mut f = fixture(|tmp| {
            std::fs::create_dir_all(tmp.join("home/.runtime/logs")).unwrap();
            std::fs::create_dir_all(tmp.join("home/run")).unwrap();
        });
        std::fs::write(f.home.runtime_dir().join("x"), "1").unwrap();
        std::fs::write(f.home.logs_dir().join("kernel.log"), "1").unwrap();
        std::fs::write(f.home.run_dir().join("kernel.sock"), "1").unwrap();
        std::fs::write(f.home.root.join("config.yaml.lock"), "").unwrap();
        let _ = std::fs::read(f.home.root.join("config.yaml.lock"));
        f.expect_none("changes under .runtime/ and run/").await;
        // The watcher is alive: a real change still triggers.
        std::fs::write(f.home.permissions_yaml(), "modules: {}\n").unwrap();
        f.expect_files("permissions.yaml written").await;
    }

    #[test]
    fn ignore_rules() {
        let root = Path::new("/h");
        assert!(is_ignored(root, Path::new("/h/.runtime/x")));
        assert!(is_ignored(root, Path::new("/h/run/kernel.sock")));
        assert!(is_ignored(root, Path::new("/h/config.yaml.lock")));
        assert!(is_ignored(root, Path::new("/h/kernel.stderr")));
        assert!(is_ignored(root, Path::new("/h/.config.yaml.swp")));
        assert!(!is_ignored(root, Path::new("/h/config.yaml")));
        assert!(!is_ignored(root, Path::new("/h/permissions.yaml")));
        assert!(!is_ignored(root, Path::new("/h/deno.jsonc")));
        assert!(!is_ignored(root, Path::new("/h/modules")));
        assert!(!is_ignored(root, Path::new("/h/config.yaml")));
        assert!(!is_ignored(root, Path::new("/h/modules/x/a.lock")));
        assert!(!is_ignored(root, Path::new("/h/modules/runner")));
    }
}
