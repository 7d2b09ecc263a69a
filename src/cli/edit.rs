//! `pons config edit`: config.yaml is copied to a private draft (a 0700 directory under the
//! system temp directory, the file 0600), opened in `$VISUAL`, else `$EDITOR`, else `vi` (the
//! variable is split on whitespace into the program and its arguments, run without a shell), then
//! checked. It is written back — under the config.yaml lock, atomically, 0600 — only when it is
//! valid YAML, adds no error (the checks of `pons config doctor`: kernel keys, and the section of
//! every module present, approved or not) and config.yaml did not change
//! while the editor was open. Otherwise nothing is applied: the problem is named with file, line
//! and column; on a terminal the operator may edit the draft again, else the draft is kept and its
//! path printed. A running kernel picks up the written file by itself.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::config::{read_text, require_home};
use super::doctor::{added_errors, errors_in};
use super::{offline, output};
use crate::home::Home;

pub(super) fn run(home: &Home) -> anyhow::Result<ExitCode> {
    require_home(home)?;
    let path = home.config_yaml();
    let original = read_text(home)?;
    let editor = Editor::from_env();
    let mut draft = Draft::create(&original)?;
    loop {
        let ran = editor.run(&draft);
        let edited = std::fs::read_to_string(&draft.file).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the edited draft {} ({e}); nothing was applied",
                draft.file.display()
            )
        });
        if let Err(e) = ran {
            if edited.is_ok_and(|t| t != original) {
                draft.keep = true;
                anyhow::bail!("{e:#} (your edit is kept in {})", draft.file.display());
            }
            return Err(e);
        }
        let edited = edited?;
        if edited == original {
            println!("No changes; {} is left as it was.", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let problems = check(home, &original, &edited, &draft.file)?;
        if problems.is_empty() {
            write_back(home, &original, &edited, &mut draft)?;
            println!(
                "{} updated; a running kernel applies it by itself.",
                path.display()
            );
            for (_, p) in errors_in(home, &edited)? {
                eprintln!("warning: {p} (already so before this edit; see `pons config doctor`)");
            }
            return Ok(ExitCode::SUCCESS);
        }
        if output::stdin_is_tty() {
            for p in &problems {
                eprintln!("error: {p}");
            }
            if output::confirm("The edit was not applied. Edit again?")? {
                continue;
            }
        }
        draft.keep = true;
        anyhow::bail!(
            "the edited config.yaml is invalid ({}); nothing was applied — your edit is kept in {}, fix it with `pons config edit` or copy it over {} once it is valid",
            problems.join("; "),
            draft.file.display(),
            path.display()
        );
    }
}

/// What is wrong with the edit: a YAML error, or the errors it adds to config.yaml, each with the
/// draft's path, line and column where it can be located. Empty when it may be written.
fn check(home: &Home, original: &str, edited: &str, draft: &Path) -> anyhow::Result<Vec<String>> {
    if let Err(e) = offline::parse_config_text(edited) {
        return Ok(vec![format!("{}: {e}", draft.display())]);
    }
    Ok(added_errors(home, original, edited)?
        .into_iter()
        .map(
            |(key, e)| match key.and_then(|k| crate::store::locate_key(edited, &k)) {
                Some((line, col)) => format!("{}: line {line}, column {col}: {e}", draft.display()),
                None => format!("{}: {e}", draft.display()),
            },
        )
        .collect())
}

/// Writes the edit over config.yaml under its lock, unless the file changed since it was copied.
fn write_back(home: &Home, original: &str, edited: &str, draft: &mut Draft) -> anyhow::Result<()> {
    let path = home.config_yaml();
    let result = crate::store::update_config_text(home, |current| {
        if current != original {
            anyhow::bail!(
                "{} changed while the editor was open (another command or the kernel wrote it)",
                path.display()
            );
        }
        Ok(edited.to_string())
    });
    result.map_err(|e| {
        draft.keep = true;
        anyhow::anyhow!(
            "{e:#}; nothing was applied — your edit is kept in {}, run `pons config edit` again",
            draft.file.display()
        )
    })
}

/// The editor command: `$VISUAL`, else `$EDITOR`, else `vi`.
struct Editor {
    /// The variable it came from (for messages), `None` for the `vi` fallback.
    var: Option<&'static str>,
    words: Vec<String>,
}

impl Editor {
    fn from_env() -> Editor {
        for var in ["VISUAL", "EDITOR"] {
            let words: Vec<String> = std::env::var(var)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !words.is_empty() {
                return Editor {
                    var: Some(var),
                    words,
                };
            }
        }
        Editor {
            var: None,
            words: vec!["vi".into()],
        }
    }

    fn describe(&self) -> String {
        match self.var {
            Some(v) => format!("`{}` (${v})", self.words.join(" ")),
            None => "`vi` (neither $VISUAL nor $EDITOR is set)".into(),
        }
    }

    /// Runs the editor on the draft, with the terminal inherited; a failure is an error.
    fn run(&self, draft: &Draft) -> anyhow::Result<()> {
        let Some((program, args)) = self.words.split_first() else {
            anyhow::bail!("no editor is set; set $EDITOR");
        };
        let status = std::process::Command::new(program)
            .args(args)
            .arg(&draft.file)
            .status()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start the editor {} ({e}); set $EDITOR to an installed editor; nothing was applied",
                    self.describe()
                )
            })?;
        if !status.success() {
            let how = match status.code() {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".into(),
            };
            anyhow::bail!("the editor {} {how}; nothing was applied", self.describe());
        }
        Ok(())
    }
}

/// The private copy being edited; removed when dropped unless `keep`.
struct Draft {
    dir: PathBuf,
    file: PathBuf,
    keep: bool,
}

impl Draft {
    fn create(text: &str) -> anyhow::Result<Draft> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!(
            "pons-config-edit-{}-{nanos:09}",
            std::process::id()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create a draft directory in {} ({e}); set TMPDIR to a writable directory",
                    base.display()
                )
            })?;
        let draft = Draft {
            file: dir.join("config.yaml"),
            dir,
            keep: false,
        };
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&draft.file)?;
            f.write_all(text.as_bytes())
        };
        write().map_err(|e| {
            anyhow::anyhow!("cannot write the draft {} ({e})", draft.file.display())
        })?;
        Ok(draft)
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = Draft::create("a: 1\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d.dir), 0o700);
        assert_eq!(mode(&d.file), 0o600);
        assert_eq!(std::fs::read_to_string(&d.file).unwrap(), "a: 1\n");
        let dir = d.dir.clone();
        drop(d);
        assert!(!dir.exists());
        let mut kept = Draft::create("").unwrap();
        kept.keep = true;
        let dir = kept.dir.clone();
        drop(kept);
        assert!(dir.exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
