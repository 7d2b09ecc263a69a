//! The daily log files `kernel-YYYY-MM-DD.log` as `pons logs` reads them: the last matching lines
//! (read backwards, so `-n` costs what it shows, not the size of the file), every matching line,
//! and following the newest file across the daily rotation, truncation and replacement.
//!
//! The kernel writes whole lines, but a reader can meet the newest file in the middle of one: a
//! trailing line without its newline is left to the follower, which starts exactly where the
//! history stopped ([`Position::at_end`]), so no line is lost or shown twice.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::filter::{Filter, Selected};
use crate::logging::LocalTime;

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// `kernel-YYYY-MM-DD.log` files of `dir`, oldest first (none when `dir` does not exist).
pub fn daily_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(with_path(e, dir)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| date_of_name(&e.file_name().to_string_lossy()).is_some())
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// `YYYY-MM-DD` of a daily file name.
fn date_of_name(name: &str) -> Option<&str> {
    let date = name.strip_prefix("kernel-")?.strip_suffix(".log")?;
    let ok = date.len() == 10
        && date.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    ok.then_some(date)
}

fn date_of(path: &Path) -> Option<String> {
    date_of_name(&path.file_name()?.to_string_lossy()).map(str::to_string)
}

/// The files that can hold records from `since_ms` on: a file holds the records of its local
/// date, so older dates are skipped (with a day of margin for a changed time zone).
pub fn from(files: &[PathBuf], since_ms: Option<i64>) -> Vec<PathBuf> {
    let Some(since) = since_ms else {
        return files.to_vec();
    };
    let first = LocalTime::from_unix_millis(since - 86_400_000).date();
    files
        .iter()
        .filter(|f| date_of(f).is_none_or(|d| d >= first))
        .cloned()
        .collect()
}

/// An IO error that names its file.
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
}

/// Where reading a file stopped: the end of its last complete line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub path: PathBuf,
    /// The file's inode when known (a new inode: the file was replaced, read it from the start).
    pub ino: Option<u64>,
    pub offset: u64,
}

impl Position {
    /// The end of the last complete line of `path`.
    pub fn at_end(path: &Path) -> io::Result<Position> {
        let mut f = File::open(path).map_err(|e| with_path(e, path))?;
        let meta = f.metadata().map_err(|e| with_path(e, path))?;
        let mut end = meta.len();
        let mut buf = vec![0u8; CHUNK];
        let offset = loop {
            if end == 0 {
                break 0;
            }
            let n = (end as usize).min(CHUNK);
            f.seek(SeekFrom::Start(end - n as u64))
                .and_then(|_| f.read_exact(&mut buf[..n]))
                .map_err(|e| with_path(e, path))?;
            if let Some(i) = memchr::memrchr(b'\n', &buf[..n]) {
                break end - n as u64 + i as u64 + 1;
            }
            end -= n as u64;
        };
        Ok(Position {
            path: path.to_path_buf(),
            ino: Some(meta.ino()),
            offset,
        })
    }
}

/// The lines of `file` before byte `end`, last first (without their newlines).
struct Backwards {
    file: File,
    /// Bytes before `pos` are still to read.
    pos: u64,
    /// Read bytes not yet returned: the start of the line being assembled and what follows it.
    carry: Vec<u8>,
    done: bool,
}

impl Backwards {
    fn new(file: File, end: u64) -> Backwards {
        Backwards {
            file,
            pos: end,
            carry: Vec::new(),
            done: false,
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some(i) = memchr::memrchr(b'\n', &self.carry) {
                let line = self.carry.split_off(i + 1);
                self.carry.truncate(i);
                return Ok(Some(line));
            }
            if self.pos == 0 {
                self.done = true;
                return Ok(Some(std::mem::take(&mut self.carry)));
            }
            let n = (self.pos as usize).min(CHUNK);
            self.pos -= n as u64;
            let mut chunk = vec![0u8; n];
            self.file.seek(SeekFrom::Start(self.pos))?;
            self.file.read_exact(&mut chunk)?;
            chunk.extend_from_slice(&self.carry);
            self.carry = chunk;
        }
    }
}

/// How far to read `file`: to the follower's start for the newest file, else to its end.
fn end_of(file: &Path, f: &File, newest: Option<&Position>) -> io::Result<u64> {
    match newest {
        Some(p) if p.path == file => Ok(p.offset),
        _ => f
            .metadata()
            .map(|m| m.len())
            .map_err(|e| with_path(e, file)),
    }
}

/// The last `n` lines of `files` (oldest first) that `filter` keeps, oldest first.
pub fn last_matching(
    files: &[PathBuf],
    n: usize,
    filter: &Filter,
    newest: Option<&Position>,
) -> io::Result<Vec<Selected>> {
    let mut out = Vec::new();
    for path in files.iter().rev() {
        if out.len() >= n {
            break;
        }
        let f = File::open(path).map_err(|e| with_path(e, path))?;
        let end = end_of(path, &f, newest)?;
        let mut lines = Backwards::new(f, end);
        while out.len() < n {
            let Some(line) = lines.next_line().map_err(|e| with_path(e, path))? else {
                break;
            };
            if let Some(s) = filter.select(&line) {
                out.push(s);
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// Every line of `files` that `filter` keeps, oldest first, to `emit`.
pub fn all_matching(
    files: &[PathBuf],
    filter: &Filter,
    newest: Option<&Position>,
    emit: &mut dyn FnMut(Selected) -> io::Result<()>,
) -> io::Result<()> {
    for path in files {
        let f = File::open(path).map_err(|e| with_path(e, path))?;
        let end = end_of(path, &f, newest)?;
        let mut reader = BufReader::with_capacity(CHUNK, f.take(end));
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| with_path(e, path))?
                == 0
            {
                break;
            }
            if let Some(s) = filter.select(&line) {
                emit(s)?;
            }
        }
    }
    Ok(())
}

/// Follows the newest daily file: new complete lines as they are appended; the next day's file
/// once it appears (after the last lines of the previous one); the file from its start when it
/// was truncated or replaced. Waits for a first file when there is none.
pub struct Follower {
    dir: PathBuf,
    pos: Option<Position>,
    /// The start of a line whose newline is not written yet.
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at `pos` (where the history stopped), or at the first file to appear.
    pub fn new(dir: &Path, pos: Option<Position>) -> Follower {
        Follower {
            dir: dir.to_path_buf(),
            pos,
            partial: Vec::new(),
        }
    }

    /// Emits what was appended since the last call.
    pub fn poll(
        &mut self,
        filter: &Filter,
        emit: &mut dyn FnMut(Selected) -> io::Result<()>,
    ) -> io::Result<()> {
        self.drain(filter, emit)?;
        let newest = daily_files(&self.dir)?.pop();
        if let Some(newest) = newest {
            let newer = self
                .pos
                .as_ref()
                .is_none_or(|p| newest.file_name() > p.path.file_name());
            if newer {
                // Lines written to the old file just before the new one was created.
                self.drain(filter, emit)?;
                self.pos = Some(Position {
                    path: newest,
                    ino: None,
                    offset: 0,
                });
                self.partial.clear();
                self.drain(filter, emit)?;
            }
        }
        Ok(())
    }

    fn drain(
        &mut self,
        filter: &Filter,
        emit: &mut dyn FnMut(Selected) -> io::Result<()>,
    ) -> io::Result<()> {
        let Some(pos) = &mut self.pos else {
            return Ok(());
        };
        let path = pos.path.clone();
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(with_path(e, &path)),
        };
        let meta = f.metadata().map_err(|e| with_path(e, &path))?;
        let replaced = pos.ino.is_some_and(|ino| ino != meta.ino());
        if replaced || meta.len() < pos.offset {
            pos.offset = 0;
            self.partial.clear();
        }
        pos.ino = Some(meta.ino());
        if meta.len() == pos.offset {
            return Ok(());
        }
        f.seek(SeekFrom::Start(pos.offset))
            .map_err(|e| with_path(e, &path))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).map_err(|e| with_path(e, &path))?;
            if n == 0 {
                return Ok(());
            }
            pos.offset += n as u64;
            let mut data = &buf[..n];
            while let Some(i) = memchr::memchr(b'\n', data) {
                let (line, rest) = data.split_at(i + 1);
                data = rest;
                let selected = if self.partial.is_empty() {
                    filter.select(line)
                } else {
                    self.partial.extend_from_slice(line);
                    let s = filter.select(&self.partial);
                    self.partial.clear();
                    s
                };
                if let Some(s) = selected {
                    emit(s)?;
                }
            }
            self.partial.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_filter() -> Filter {
        Filter {
            keep_text: true,
            ..Filter::default()
        }
    }

    fn texts(v: Vec<Selected>) -> Vec<String> {
        v.into_iter()
            .map(|s| match s {
                Selected::Text(t) => t,
                Selected::Record { raw, .. } => raw,
            })
            .collect()
    }

    fn collect(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        f.poll(&text_filter(), &mut |s| {
            out.push(s);
            Ok(())
        })
        .unwrap();
        texts(out)
    }

    #[test]
    fn names_and_order() {
        assert_eq!(date_of_name("kernel-2026-01-15.log"), Some("2026-01-15"));
        assert_eq!(date_of_name("kernel-stdout.log"), None);
        assert_eq!(date_of_name("kernel-2026-01-15.log.1"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kernel-2026-01-15.log"), "c\n").unwrap();
        std::fs::write(dir.path().join("kernel-2026-01-14.log"), "a\n").unwrap();
        std::fs::write(dir.path().join("kernel-stdout.log"), "x\n").unwrap();
        let files = daily_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        assert!(files[0].ends_with("kernel-2026-01-14.log"));
        assert!(daily_files(&dir.path().join("none")).unwrap().is_empty());
        // Noon, local time (file dates are local dates).
        let since = LocalTime::local_to_unix(2026, 1, 15, 12, 0, 0).unwrap() * 1000;
        assert_eq!(from(&files, Some(since)).len(), 2); // a day of margin
        assert_eq!(from(&files, Some(since + 86_400_000)).len(), 1);
    }

    #[test]
    fn last_lines_span_files_and_stop_at_the_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("kernel-2026-01-14.log");
        let new = dir.path().join("kernel-2026-01-15.log");
        std::fs::write(&old, "a\nb").unwrap(); // a last line without newline is complete here
        std::fs::write(&new, "c\n\nd\npart").unwrap();
        let files = daily_files(dir.path()).unwrap();
        let pos = Position::at_end(&new).unwrap();
        assert_eq!(pos.offset, 5);
        let last = |n| texts(last_matching(&files, n, &text_filter(), Some(&pos)).unwrap());
        assert_eq!(last(3), ["b", "c", "d"]);
        assert_eq!(last(10), ["a", "b", "c", "d"]);
        assert_eq!(last(1), ["d"]);
        assert!(last(0).is_empty());
        let mut all = Vec::new();
        all_matching(&files, &text_filter(), Some(&pos), &mut |s| {
            all.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!(texts(all), ["a", "b", "c", "d"]);
        // The follower finishes the partial line.
        let mut f = Follower::new(dir.path(), Some(pos));
        assert!(collect(&mut f).is_empty());
        append(&new, "ial\ne\n");
        assert_eq!(collect(&mut f), ["partial", "e"]);
    }

    #[test]
    fn long_lines_are_read_backwards_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kernel-2026-01-15.log");
        let long = "x".repeat(3 * CHUNK + 17);
        std::fs::write(&p, format!("first\n{long}\nlast\n")).unwrap();
        let pos = Position::at_end(&p).unwrap();
        let got = texts(last_matching(&[p], 3, &text_filter(), Some(&pos)).unwrap());
        assert_eq!(got, ["first".to_string(), long, "last".to_string()]);
    }

    fn append(p: &Path, s: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    #[test]
    fn follower_waits_rotates_and_survives_truncation_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let mut f = Follower::new(&logs, None);
        assert!(collect(&mut f).is_empty()); // no directory yet
        std::fs::create_dir(&logs).unwrap();
        let day1 = logs.join("kernel-2026-01-14.log");
        std::fs::write(&day1, "one\n").unwrap();
        assert_eq!(collect(&mut f), ["one"]);
        append(&day1, "two\n");
        assert_eq!(collect(&mut f), ["two"]);
        // The last line of the old day and the first of the new one, written between two polls.
        append(&day1, "three\n");
        let day2 = logs.join("kernel-2026-01-15.log");
        std::fs::write(&day2, "four\n").unwrap();
        assert_eq!(collect(&mut f), ["three", "four"]);
        // An older file appearing is not followed.
        std::fs::write(logs.join("kernel-2026-01-13.log"), "old\n").unwrap();
        append(&day2, "five\n");
        assert_eq!(collect(&mut f), ["five"]);
        // Truncated.
        std::fs::write(&day2, "six\n").unwrap();
        assert_eq!(collect(&mut f), ["six"]);
        // Replaced by a longer file (new inode).
        let tmp = logs.join("tmp");
        std::fs::write(&tmp, "seven\neight\nnine\n").unwrap();
        std::fs::rename(&tmp, &day2).unwrap();
        assert_eq!(collect(&mut f), ["seven", "eight", "nine"]);
        // Deleted: nothing, then recreated.
        std::fs::remove_file(&day2).unwrap();
        assert!(collect(&mut f).is_empty());
        std::fs::write(&day2, "ten\n").unwrap();
        assert_eq!(collect(&mut f), ["ten"]);
    }
}
