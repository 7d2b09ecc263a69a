//! The daily log file `<dir>/kernel-YYYY-MM-DD.log` (local date): opened in append mode with mode
//! 0600, switched on the first write after the date changes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::clock::LocalTime;

/// A writer that appends to today's file. Each `write` is expected to carry whole lines.
pub struct DailyFile {
    dir: PathBuf,
    current: Option<(String, File)>,
}

impl DailyFile {
    /// Creates the directory (mode 0700) if missing; files are opened on first write.
    pub fn new(dir: &Path) -> io::Result<DailyFile> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(DailyFile {
            dir: dir.to_path_buf(),
            current: None,
        })
    }

    /// Path of the file for a date `YYYY-MM-DD`.
    pub fn path_for(dir: &Path, date: &str) -> PathBuf {
        dir.join(format!("kernel-{date}.log"))
    }

    fn file(&mut self) -> io::Result<&mut File> {
        let today = LocalTime::now().date();
        let stale = !matches!(&self.current, Some((d, _)) if *d == today);
        if stale {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(Self::path_for(&self.dir, &today))?;
            self.current = Some((today, f));
        }
        match &mut self.current {
            Some((_, f)) => Ok(f),
            None => Err(io::Error::other("log file not open")),
        }
    }
}

impl Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((_, f)) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_dir_0700_and_file_0600_and_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".runtime/logs");
        let mut w = DailyFile::new(&dir).unwrap();
        w.write_all(b"{\"a\":1}\n").unwrap();
        w.write_all(b"{\"a\":2}\n").unwrap();
        w.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let file = DailyFile::path_for(&dir, &LocalTime::now().date());
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        // A second writer appends.
        let mut w2 = DailyFile::new(&dir).unwrap();
        w2.write_all(b"x\n").unwrap();
        assert!(std::fs::read_to_string(&file).unwrap().ends_with("}\nx\n"));
    }
}
