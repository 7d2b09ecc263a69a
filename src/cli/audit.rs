//! The advisory static audit run at install time: Node built-in imports and
//! `createRequire` in a module's JavaScript/TypeScript sources. It never blocks an install.

use std::path::{Path, PathBuf};

/// One flagged use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Path relative to the module directory.
    pub file: String,
    /// `node:fs`, `import("node:…")` or `createRequire`.
    pub what: String,
    /// What it can bypass.
    pub bypasses: String,
}

/// The audit result.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    pub findings: Vec<Finding>,
    /// Files or directories that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
}

const NODE_MODULES: [&str; 16] = [
    "fs",
    "fs/promises",
    "child_process",
    "net",
    "http",
    "https",
    "tls",
    "process",
    "dgram",
    "worker_threads",
    "os",
    "vm",
    "module",
    "dns",
    "cluster",
    "inspector",
];

fn bypasses(module: &str) -> &'static str {
    match module {
        "fs" | "fs/promises" => "file access outside the approved read/write paths",
        "child_process" | "worker_threads" | "cluster" => "running processes outside `run`",
        "net" | "http" | "https" | "tls" | "dgram" | "dns" => "network access outside `net`",
        "process" | "os" => "environment and system information outside `env`/`sys`",
        _ => "loading or evaluating code outside the sandbox",
    }
}

/// Scans `dir` recursively (skipping `node_modules` and `.git`).
pub fn scan(dir: &Path) -> Audit {
    let mut audit = Audit::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                audit.incomplete.push(format!("{}: {e}", d.display()));
                continue;
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for p in paths.into_iter().rev() {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name == "node_modules" || name == ".git" {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && is_source(&name) {
                match std::fs::read_to_string(&p) {
                    Ok(text) => {
                        let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                        audit.findings.extend(scan_text(&rel, &text));
                    }
                    Err(e) => audit.incomplete.push(format!("{}: {e}", p.display())),
                }
            }
        }
    }
    audit
}

fn is_source(name: &str) -> bool {
    [".ts", ".js", ".mts", ".mjs"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Findings in one file's text.
pub fn scan_text(file: &str, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in NODE_MODULES {
        let static_import = ["\"", "'"]
            .iter()
            .any(|q| text.contains(&format!("from {q}node:{m}{q}")));
        if static_import {
            out.push(Finding {
                file: file.into(),
                what: format!("node:{m}"),
                bypasses: bypasses(m).into(),
            });
        }
    }
    let dynamic = text.match_indices("import(").any(|(i, _)| {
        let rest = text.get(i + 7..).unwrap_or("").trim_start();
        rest.starts_with("\"node:") || rest.starts_with("'node:") || rest.starts_with("`node:")
    });
    if dynamic {
        out.push(Finding {
            file: file.into(),
            what: "import(\"node:…\")".into(),
            bypasses: "loading Node built-ins at run time".into(),
        });
    }
    if text.contains("createRequire") {
        out.push(Finding {
            file: file.into(),
            what: "createRequire".into(),
            bypasses: "loading CommonJS modules outside the sandbox".into(),
        });
    }
    out
}

/// The printed block (empty when nothing was found).
pub fn render(audit: &Audit) -> String {
    let mut out = String::new();
    if !audit.findings.is_empty() {
        out.push_str("⚠ Sandbox notice: this module uses APIs that bypass the permission flags:\n");
        for f in &audit.findings {
            out.push_str(&format!("    {}: {} ({})\n", f.file, f.what, f.bypasses));
        }
    }
    if !audit.incomplete.is_empty() {
        out.push_str("⚠ Scan incomplete:\n");
        for e in &audit.incomplete {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_node_imports_dynamic_imports_and_create_require() {
        let text = "import fs from \"node:fs\";\nimport { x } from 'node:child_process';\nconst m = await import( 'node:os');\nimport {createRequire} from \"node:module\";";
        let whats: Vec<String> = scan_text("a.ts", text)
            .into_iter()
            .map(|f| f.what)
            .collect();
        assert_eq!(
            whats,
            vec![
                "node:fs",
                "node:child_process",
                "node:module",
                "import(\"node:…\")",
                "createRequire"
            ]
        );
        assert!(scan_text("b.ts", "import x from \"npm:fs\"").is_empty());
    }

    #[test]
    fn scan_walks_sources_and_skips_node_modules() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("node_modules/x")).unwrap();
        std::fs::write(dir.path().join("src/a.mjs"), "import n from 'node:net'").unwrap();
        std::fs::write(
            dir.path().join("node_modules/x/b.js"),
            "import n from 'node:fs'",
        )
        .unwrap();
        std::fs::write(dir.path().join("readme.md"), "from 'node:fs'").unwrap();
        let audit = scan(dir.path());
        assert_eq!(audit.findings.len(), 1);
        assert_eq!(audit.findings[0].file, "src/a.mjs");
        assert!(render(&audit).starts_with("⚠ Sandbox notice"));
        assert_eq!(render(&Audit::default()), "");
    }
}
