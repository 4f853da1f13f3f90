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

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A state the journal keeps: any serde type that names its format
/// version. The journal knows files, checksums and versions, nothing of
/// what the state means (the sandbox owns its record types).
pub trait Versioned: Serialize + DeserializeOwned {
    /// The version this build writes; a file of another is not trusted.
    const VERSION: u32;
    /// The version a loaded state carries.
    fn version(&self) -> u32;
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
    /// Held across taking a snapshot and writing it: with requests served
    /// on several threads, two writers would share the temp file, and an
    /// older snapshot could land after a newer one.
    write: std::sync::Mutex<()>,
}

impl Journal {
    /// `<run_dir>/state.json`.
    pub fn new(run_dir: &Path) -> Self {
        Self::at(run_dir.join("state.json"))
    }

    /// A journal in the file `path` (another state than the sandbox's).
    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            write: std::sync::Mutex::new(()),
        }
    }

    /// The writers' lock: hold it from the snapshot to the end of `save`
    /// or `remove`.
    pub fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `s`: temp file, fsync, rename, fsync of the directory.
    pub fn save<T: Versioned>(&self, s: &T) -> Result<(), JournalError> {
        let err = |source| JournalError::WriteStateFile {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let body = serde_json::to_vec(s).map_err(|e| err(std::io::Error::other(e)))?;
        // The checksum line, then the body, written at once.
        let mut text = format!("{:016x}\n", fnv64(&body)).into_bytes();
        text.extend_from_slice(&body);
        let tmp = self.path.with_extension("json.tmp");
        // The directory is made only when missing (the first write, or after
        // someone removed it), not checked on every write.
        let mut f = match File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(err)?;
                File::create(&tmp).map_err(err)?
            }
            r => r.map_err(err)?,
        };
        f.write_all(&text).and_then(|_| f.sync_all()).map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }

    /// Reads the state; `None` when there is no file.
    pub fn load<T: Versioned>(&self) -> Result<Option<T>, JournalError> {
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
        let s: T = serde_json::from_slice(body).map_err(|e| corrupt(format!("parse: {e}")))?;
        if s.version() != T::VERSION {
            return Err(corrupt(format!(
                "version {} (this bosun writes {})",
                s.version(),
                T::VERSION
            )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct State {
        version: u32,
        removed: Vec<String>,
    }

    impl Versioned for State {
        const VERSION: u32 = 7;
        fn version(&self) -> u32 {
            self.version
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(d.path());
        assert_eq!(j.load::<State>().unwrap(), None);
        let s = State {
            version: 7,
            removed: vec!["a".into()],
        };
        j.save(&s).unwrap();
        assert_eq!(j.load::<State>().unwrap(), Some(s));
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
            ("another version", {
                let body = br#"{"version":8,"removed":[]}"#;
                let mut g = format!("{:016x}\n", fnv64(body)).into_bytes();
                g.extend_from_slice(body);
                g
            }),
            ("another shape", {
                let body = br#"{"version":7,"removed":[],"extra":1}"#;
                let mut g = format!("{:016x}\n", fnv64(body)).into_bytes();
                g.extend_from_slice(body);
                g
            }),
        ];
        for (i, (what, bytes)) in cases.into_iter().enumerate() {
            fs::write(j.path(), &bytes).unwrap();
            assert!(
                matches!(j.load::<State>(), Err(JournalError::Corrupt { .. })),
                "test[{i}]: {what}"
            );
        }
        let moved = j.quarantine().unwrap();
        assert!(moved.exists() && !j.path().exists());
    }

    /// The journal is the lowest layer: it knows files and serde, not the
    /// sandbox, containers or mounts whose state it stores.
    #[test]
    fn depends_on_nothing_of_the_agent() {
        let src = include_str!("mod.rs");
        let needle = ["crate", "::"].concat();
        assert!(
            !src.contains(&needle),
            "src/journal/mod.rs must not use the agent's modules"
        );
    }
}
