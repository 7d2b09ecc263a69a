//! The event record: one JSON object per line appended to the `--record` file, each written
//! with a single `write` on an `O_APPEND` file, so lines are whole and visible at once.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Appends events to the record file; does nothing without `--record`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Recorder {
    file: Option<Arc<Mutex<File>>>,
}

impl Recorder {
    /// Opens (creating) `path` for appending.
    pub fn open(path: Option<&str>) -> Result<Recorder, String> {
        let Some(path) = path else {
            return Ok(Recorder::default());
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open the record file {path}: {e}"))?;
        Ok(Recorder {
            file: Some(Arc::new(Mutex::new(file))),
        })
    }

    /// True when events are being recorded.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Records one event object.
    pub fn event(&self, event: &Value) {
        if self.enabled() {
            let mut event = event.clone();
            if let Some(obj) = event.as_object_mut() {
                obj.insert("t".into(), Value::from(now_ms()));
            }
            self.line(&event.to_string());
        }
    }

    /// Records `{"event":"recv","msg":<line>}` for a line that is valid JSON, without
    /// re-encoding it.
    pub fn recv(&self, json_line: &str) {
        if self.enabled() {
            self.line(&format!(
                "{{\"event\":\"recv\",\"t\":{},\"msg\":{json_line}}}",
                now_ms()
            ));
        }
    }

    fn line(&self, text: &str) {
        if let Some(file) = &self.file {
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f.write_all(&bytes) {
                eprintln!("pons-test-module: writing the record file failed: {e}");
            }
        }
    }
}

/// Milliseconds since the Unix epoch (every event carries it as `t`).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
