//! The decision log at debug: one JSON line per decision
//! (`{"kind", "request", "allowed"}`, the Kata agent's `kind`/`request`
//! shape) in `<run-dir>/policy-decisions.jsonl`, bounded: past
//! `MAX_BYTES` the file moves to `.1` (the one before is dropped).
//! StatsContainer, ReadStream and SetPolicy are not logged, as with the
//! Kata agent (frequent, or the policy itself).

use std::io::Write;
use std::path::{Path, PathBuf};

const MAX_BYTES: u64 = 8 << 20;

pub struct Log {
    path: PathBuf,
    written: Option<u64>,
}

impl Log {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("policy-decisions.jsonl"),
            written: None,
        }
    }

    pub fn record(&mut self, kind: &str, request: &serde_json::Value, allowed: bool) {
        if matches!(kind, "StatsContainerRequest" | "ReadStreamRequest" | "SetPolicyRequest") {
            return;
        }
        let line = serde_json::json!({ "kind": kind, "request": request, "allowed": allowed }).to_string() + "\n";
        let written = *self
            .written
            .get_or_insert_with(|| std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0));
        if written + line.len() as u64 > MAX_BYTES {
            let _ = std::fs::rename(&self.path, self.path.with_extension("jsonl.1"));
            self.written = Some(0);
        }
        let wrote = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if wrote.is_ok() {
            *self.written.get_or_insert(0) += line.len() as u64;
        }
    }
}
