//! The state journal: everything bosun owns, written atomically to
//! `<run-dir>/state.json` before each reply, reloaded after a restart.
//!
//! File format: one line with the FNV-1a 64 checksum of the JSON body (hex),
//! then the body. A torn or edited file fails the checksum or the strict
//! parse; bosun then keeps it aside, untouched, and starts empty, refusing
//! to act on anything it cannot prove it owns.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::container::Status;
use crate::mount::ledger::Ledger;
use crate::sandbox::SandboxSpec;

/// Format version; a file of another version is not trusted.
pub const VERSION: u32 = 1;

/// A process as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcRecord {
    /// Exec id (the container id for its init).
    pub exec_id: String,
    /// Pid in the agent's namespace.
    pub pid: i32,
    /// Start time (clock ticks since boot, /proc/PID/stat field 22): a pid
    /// reused by another process never matches.
    pub start_time: u64,
    /// Exit status, once known.
    pub exit: Option<i32>,
}

/// A container as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecord {
    /// Id.
    pub id: String,
    /// Run directory.
    pub dir: PathBuf,
    /// Pause container.
    pub is_pause: bool,
    /// Protected from bulk operations.
    pub protected: bool,
    /// Own pid namespace.
    pub own_pid_ns: bool,
    /// Status when written.
    pub status: Status,
    /// Digest of the create request (idempotent create).
    pub digest: String,
    /// Its cgroup.
    pub cgroup: Option<Cgroup>,
    /// Init.
    pub init: ProcRecord,
    /// Exec'd processes.
    pub execs: Vec<ProcRecord>,
}

/// Everything bosun owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// The sandbox, if created.
    pub sandbox: Option<SandboxSpec>,
    /// Containers.
    pub containers: Vec<ContainerRecord>,
    /// Ids removed (a second remove answers OK).
    pub removed: Vec<String>,
    /// The mount ledger.
    pub ledger: Ledger,
}

/// A journal failure.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Could not write the state file.
    #[error("write state file {path}: {source}")]
    WriteStateFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Could not read it.
    #[error("read state file {path}: {source}")]
    ReadStateFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is torn, edited or of another version.
    #[error("state file {path} is not trustworthy: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// FNV-1a, 64 bits: detects a torn write or an edit (not an adversary:
/// the file lives in the agent's own run dir).
pub fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The journal file of a run directory.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// `<run_dir>/state.json`.
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join("state.json"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `s`: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, s: &Snapshot) -> Result<(), JournalError> {
        let err = |source| JournalError::WriteStateFile {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(err)?;
        let body = serde_json::to_vec(s).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(format!("{:016x}\n", fnv64(&body)).as_bytes())
            .and_then(|_| f.write_all(&body))
            .and_then(|_| f.sync_all())
            .map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }

    /// Reads the state; `None` when there is no file.
    pub fn load(&self) -> Result<Option<Snapshot>, JournalError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(JournalError::ReadStateFile {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| JournalError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| corrupt("no checksum line".into()))?;
        let want = std::str::from_utf8(&bytes[..nl])
            .ok()
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| corrupt("bad checksum line".into()))?;
        let body = &bytes[nl + 1..];
        if fnv64(body) != want {
            return Err(corrupt(format!("checksum mismatch ({} bytes of body)", body.len())));
        }
        let s: Snapshot = serde_json::from_slice(body).map_err(|e| corrupt(format!("parse: {e}")))?;
        if s.version != VERSION {
            return Err(corrupt(format!("version {} (this bosun writes {VERSION})", s.version)));
        }
        Ok(Some(s))
    }

    /// Moves an untrustworthy file aside (never deletes it); returns where.
    pub fn quarantine(&self) -> std::io::Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let to = self.path.with_extension(format!("json.corrupt-{stamp}"));
        fs::rename(&self.path, &to)?;
        Ok(to)
    }

    /// Removes the file (after DestroySandbox, when nothing is owned).
    pub fn remove(&self) -> std::io::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Start time of `pid` (field 22 of /proc/PID/stat), if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        assert_eq!(j.load().unwrap(), None);
        let s = Snapshot {
            version: VERSION,
            removed: vec!["a".into()],
            ..Default::default()
        };
        j.save(&s).unwrap();
        assert_eq!(j.load().unwrap(), Some(s));
        let good = fs::read(j.path()).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 3].to_vec()),
            ("garbage", b"\x00\x01garbage".to_vec()),
            ("no checksum", good[17..].to_vec()),
            ("flipped byte", {
                let mut g = good.clone();
                let n = g.len();
                g[n - 2] ^= 1;
                g
            }),
            ("empty", Vec::new()),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            fs::write(j.path(), &bytes).unwrap();
            assert!(
                matches!(j.load(), Err(JournalError::Corrupt { .. })),
                "test[{i}]: {what}"
            );
        }
        let moved = j.quarantine().unwrap();
        assert!(moved.exists() && !j.path().exists());
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }
}
