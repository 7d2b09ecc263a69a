//! The layout of a pons home directory.

use std::path::{Path, PathBuf};

/// Paths of one home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub root: PathBuf,
}

impl Home {
    /// `--home DIR`, else `$PONS_HOME`, else `~/.pons`. A leading `~` is expanded with `$HOME`.
    pub fn resolve(flag: Option<&Path>) -> Home {
        let home_env = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
        let expand = |p: &str| -> PathBuf {
            if p == "~" {
                PathBuf::from(&home_env)
            } else if let Some(rest) = p.strip_prefix("~/") {
                Path::new(&home_env).join(rest)
            } else {
                PathBuf::from(p)
            }
        };
        let raw = match flag {
            Some(p) => expand(&p.to_string_lossy()),
            None => match std::env::var("PONS_HOME") {
                Ok(v) if !v.is_empty() => expand(&v),
                _ => Path::new(&home_env).join(".pons"),
            },
        };
        let root = if raw.is_absolute() {
            raw
        } else {
            std::env::current_dir().map(|d| d.join(&raw)).unwrap_or(raw)
        };
        Home { root }
    }

    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }
    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("modules")
    }
    pub fn config_yaml(&self) -> PathBuf {
        self.root.join("config.yaml")
    }
    pub fn permissions_yaml(&self) -> PathBuf {
        self.root.join("permissions.yaml")
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join(".runtime")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.runtime_dir().join("kernel.pid")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.runtime_dir().join("logs")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("kernel.sock")
    }
}
