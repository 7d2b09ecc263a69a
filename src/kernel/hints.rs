//! Hints about a module's stderr: when a sandboxed module says it could not import or read
//! something (python `ModuleNotFoundError`/`ImportError`/`PermissionError: [Errno 13]`, node
//! `Cannot find module`/`EACCES`, deno `Permission denied (os error 13)`), Landlock may have
//! refused the read, and the runtime's message does not say so. The kernel then logs one warning naming the module, what failed,
//! the paths the sandbox lets it read, and what to do (add the path to `permissions.read` in
//! module.json and approve the module again).
//!
//! [`import_failure`] and [`hint_text`] are pure; [`StderrHint`] is what a stderr reader holds:
//! it logs at most once per module and read-path set (a module restarting with the same
//! manifest is not hinted about again, one whose read paths changed is).

use std::path::PathBuf;
use std::sync::Arc;

use pons_reconciler::desired::SandboxPolicy;

/// What a stderr line says the runtime failed to import or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    /// `import` (a module or package was not found), `read` (a file could not be opened) or
    /// `load` (deno could not load a module).
    pub verb: &'static str,
    /// The module name or path that failed (`None` when the line does not name it).
    pub what: Option<String>,
}

/// Whether `line` (one stderr line of a module of `runtime`) reports an import or load failure.
pub fn import_failure(runtime: &str, line: &str) -> Option<ImportFailure> {
    let line = line.trim();
    match runtime {
        "python" => {
            // The last line of a traceback: `ModuleNotFoundError: No module named 'x'`, or
            // `ImportError: cannot import name 'y' from 'x' (…)`.
            // `PermissionError: [Errno 13] Permission denied: '/x/pyvenv.cfg'` is a refused read.
            if let Some(rest) = line.strip_prefix("ModuleNotFoundError:") {
                return Some(ImportFailure {
                    verb: "import",
                    what: quoted(rest, '\'').or_else(|| non_empty(rest)),
                });
            }
            if let Some(rest) = line.strip_prefix("ImportError:") {
                return Some(ImportFailure {
                    verb: "import",
                    what: non_empty(rest),
                });
            }
            line.strip_prefix("PermissionError: [Errno 13]")
                .map(|rest| ImportFailure {
                    verb: "read",
                    what: quoted(rest, '\''),
                })
        }
        "node" | "bun" => {
            // `Error: Cannot find module '/x/y.js'`, `Error [ERR_MODULE_NOT_FOUND]: Cannot find
            // module '/x/y.mjs' imported from /a.mjs`, `Cannot find package 'p' imported from …`,
            // `Error: EACCES: permission denied, open '/x/y'`.
            [
                ("Cannot find module", "import"),
                ("Cannot find package", "import"),
                ("EACCES", "read"),
            ]
            .iter()
            .find_map(|(needle, verb)| line.find(needle).map(|at| (&line[at..], *verb)))
            .map(|(rest, verb)| ImportFailure {
                verb,
                what: quoted(rest, '\'').or_else(|| quoted(rest, '"')),
            })
        }
        "deno" => {
            // `error: Permission denied (os error 13)`, often with what deno was loading:
            // `error: Unable to load /x/y.ts imported from …: Permission denied (os error 13)`.
            if !line.contains("Permission denied (os error 13)") {
                return None;
            }
            let what = line
                .split_whitespace()
                .find(|w| w.starts_with('/') || w.starts_with("file:///"))
                .map(|w| w.trim_end_matches([':', ',', '"', '\'']).to_string());
            Some(ImportFailure { verb: "load", what })
        }
        _ => None,
    }
}

/// The text between the first pair of `q` in `s`.
fn quoted(s: &str, q: char) -> Option<String> {
    let start = s.find(q)? + q.len_utf8();
    let len = s[start..].find(q)?;
    non_empty(&s[start..start + len])
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The paths a module of `policy` may read beyond the system defaults: its directory and
/// approved `read` paths, its `write` paths, and what its runtime's configuration reaches.
pub fn readable_paths(policy: &SandboxPolicy) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let all = policy
        .read
        .iter()
        .chain(&policy.write)
        .chain(&policy.runtime_read)
        .chain(&policy.runtime_write);
    for p in all {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// The warning for module `id` whose stderr reported `failure` while it may read `paths`.
pub fn hint_text(id: &str, line: &str, failure: &ImportFailure, paths: &[PathBuf]) -> String {
    let what = failure
        .what
        .as_deref()
        .map_or_else(|| "something".to_string(), |w| format!("`{w}`"));
    let list = if paths.is_empty() {
        "nothing of its own".to_string()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "module `{id}` could not {} {what} (stderr: {}); the sandbox lets it read only {list} \
         (plus system paths and its interpreter's own libraries, see `pons status --json`): if \
         what it needs lives elsewhere, add that directory to permissions.read in module.json \
         and approve the module again (`pons modules approve {id}`)",
        failure.verb,
        line.trim()
    )
}

/// What a module's stderr reader needs to hint about import failures; one per process.
pub struct StderrHint {
    module: Arc<str>,
    runtime: String,
    paths: Vec<PathBuf>,
    /// Landlock confines the module (else nothing to hint about).
    enforced: bool,
    /// The read-path set last hinted about, shared by every process of the module.
    said: Arc<parking_lot::Mutex<Option<Vec<PathBuf>>>>,
}

impl StderrHint {
    pub fn new(
        module: Arc<str>,
        runtime: &str,
        policy: &SandboxPolicy,
        enforced: bool,
        said: Arc<parking_lot::Mutex<Option<Vec<PathBuf>>>>,
    ) -> StderrHint {
        StderrHint {
            module,
            runtime: runtime.to_string(),
            paths: readable_paths(policy),
            enforced,
            said,
        }
    }

    /// The warning to log for `line`, at most once per module and read-path set.
    pub fn check(&self, line: &str) -> Option<String> {
        if !self.enforced {
            return None;
        }
        let failure = import_failure(&self.runtime, line)?;
        let mut said = self.said.lock();
        if said.as_ref() == Some(&self.paths) {
            return None;
        }
        *said = Some(self.paths.clone());
        Some(hint_text(&self.module, line, &failure, &self.paths))
    }

    /// Logs the warning for `line`, if any (see [`StderrHint::check`]).
    pub fn observe(&self, line: &str) {
        if let Some(text) = self.check(line) {
            tracing::warn!(moduleId = %self.module, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(runtime: &str, line: &str) -> Option<Option<String>> {
        import_failure(runtime, line).map(|f| f.what)
    }

    fn verb(runtime: &str, line: &str) -> Option<&'static str> {
        import_failure(runtime, line).map(|f| f.verb)
    }

    #[test]
    fn python_import_errors() {
        assert_eq!(
            what(
                "python",
                "ModuleNotFoundError: No module named 'shared_lib'"
            ),
            Some(Some("shared_lib".into()))
        );
        assert_eq!(
            what("python", "ModuleNotFoundError: No module named 'a.b'  "),
            Some(Some("a.b".into()))
        );
        assert_eq!(
            what(
                "python",
                "ImportError: cannot import name 'x' from 'y' (/m/y.py)"
            ),
            Some(Some("cannot import name 'x' from 'y' (/m/y.py)".into()))
        );
        assert_eq!(
            what(
                "python",
                "PermissionError: [Errno 13] Permission denied: '/venv/pyvenv.cfg'"
            ),
            Some(Some("/venv/pyvenv.cfg".into()))
        );
        assert_eq!(
            verb(
                "python",
                "PermissionError: [Errno 13] Permission denied: '/x'"
            ),
            Some("read")
        );
        assert_eq!(
            verb("python", "ModuleNotFoundError: No module named 'x'"),
            Some("import")
        );
        assert_eq!(
            what(
                "python",
                "PermissionError: [Errno 1] Operation not permitted"
            ),
            None
        );
        // Traceback lines before the last one, and prose that mentions the error, are not it.
        assert_eq!(
            what("python", "  File \"/m/main.py\", line 3, in <module>"),
            None
        );
        assert_eq!(
            what("python", "retrying after ModuleNotFoundError: x"),
            None
        );
        assert_eq!(what("python", "import shared_lib"), None);
        // Another runtime's message is not python's.
        assert_eq!(what("python", "Error: Cannot find module '/x'"), None);
    }

    #[test]
    fn node_import_errors() {
        assert_eq!(
            what("node", "Error: Cannot find module '/srv/lib/x.js'"),
            Some(Some("/srv/lib/x.js".into()))
        );
        assert_eq!(
            what(
                "node",
                "Error [ERR_MODULE_NOT_FOUND]: Cannot find package 'left-pad' imported from /m/main.mjs"
            ),
            Some(Some("left-pad".into()))
        );
        assert_eq!(
            what(
                "node",
                "Error: EACCES: permission denied, open '/srv/lib/x.js'"
            ),
            Some(Some("/srv/lib/x.js".into()))
        );
        assert_eq!(
            what("bun", "error: Cannot find module \"y\""),
            Some(Some("y".into()))
        );
        assert_eq!(what("node", "Require stack:"), None);
        assert_eq!(
            verb("node", "Error: EACCES: permission denied, open '/x'"),
            Some("read")
        );
        assert_eq!(
            verb("node", "Error: Cannot find module '/x'"),
            Some("import")
        );
    }

    #[test]
    fn deno_permission_denied() {
        assert_eq!(
            what(
                "deno",
                "error: Unable to load /srv/lib/x.ts imported from file:///m/main.ts: Permission denied (os error 13)"
            ),
            Some(Some("/srv/lib/x.ts".into()))
        );
        assert_eq!(
            what("deno", "error: Permission denied (os error 13)"),
            Some(None)
        );
        assert_eq!(what("deno", "error: Module not found"), None);
        assert_eq!(what("binary", "Permission denied (os error 13)"), None);
    }

    #[test]
    fn readable_paths_are_the_module_specific_ones_without_duplicates() {
        let policy = SandboxPolicy {
            read: vec!["/m".into(), "/lib/shared".into()],
            write: vec!["/data".into(), "/m".into()],
            exec: vec!["/usr/bin/python3".into()],
            runtime_read: vec!["/h/deno.json".into()],
            ..SandboxPolicy::default()
        };
        assert_eq!(
            readable_paths(&policy),
            [
                PathBuf::from("/m"),
                PathBuf::from("/lib/shared"),
                PathBuf::from("/data"),
                PathBuf::from("/h/deno.json")
            ]
        );
    }

    #[test]
    fn the_hint_names_module_failure_paths_and_the_fix() {
        let failure = ImportFailure {
            verb: "import",
            what: Some("shared_lib".into()),
        };
        let text = hint_text(
            "worker",
            "ModuleNotFoundError: No module named 'shared_lib'\n",
            &failure,
            &[PathBuf::from("/m/worker"), PathBuf::from("/srv/lib")],
        );
        assert_eq!(
            text,
            "module `worker` could not import `shared_lib` (stderr: ModuleNotFoundError: No module \
             named 'shared_lib'); the sandbox lets it read only /m/worker, /srv/lib (plus system \
             paths and its interpreter's own libraries, see `pons status --json`): if what it \
             needs lives elsewhere, add that directory to permissions.read in module.json and \
             approve the module again (`pons modules approve worker`)"
        );
    }

    #[test]
    fn once_per_module_and_read_paths_and_only_when_enforced() {
        let said = Arc::new(parking_lot::Mutex::new(None));
        let policy = SandboxPolicy {
            read: vec!["/m".into()],
            ..SandboxPolicy::default()
        };
        let line = "ModuleNotFoundError: No module named 'x'";
        let off = StderrHint::new("m".into(), "python", &policy, false, said.clone());
        assert_eq!(off.check(line), None);
        let first = StderrHint::new("m".into(), "python", &policy, true, said.clone());
        assert!(first.check("Traceback (most recent call last):").is_none());
        assert!(first.check(line).is_some());
        assert!(first.check(line).is_none(), "once per process");
        let restarted = StderrHint::new("m".into(), "python", &policy, true, said.clone());
        assert!(restarted.check(line).is_none(), "and once across restarts");
        let widened = SandboxPolicy {
            read: vec!["/m".into(), "/srv/lib".into()],
            ..SandboxPolicy::default()
        };
        let approved_again = StderrHint::new("m".into(), "python", &widened, true, said);
        assert!(
            approved_again.check(line).is_some(),
            "new read paths: hinted again"
        );
    }
}
