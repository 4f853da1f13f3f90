//! One agent per run directory: `<run-dir>.lock`, flock'ed for the life of
//! the process, holds the owner's pid. A second bosun on the same run
//! directory refuses to start and names the first; nothing is taken over.
//! A clean exit removes the file; the lock is taken only on the file the
//! path names when it is held (an agent that locked a file just unlinked
//! by one exiting tries again), so removing it never lets two agents in.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The held lock.
pub struct RunLock {
    lock: nix::fcntl::Flock<File>,
    /// The lock file.
    pub path: PathBuf,
}

/// Why the run directory could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum RunLockError {
    /// Another agent holds it.
    #[error("run directory {dir} is in use by another bosun{}; stop it first or pass another --run-dir", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    InUse {
        /// The run directory.
        dir: PathBuf,
        /// The holder, as it wrote itself down.
        pid: Option<i32>,
    },
    /// The lock file could not be opened or locked.
    #[error("lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Claims `run_dir` for this process.
pub fn claim(run_dir: &Path) -> Result<RunLock, RunLockError> {
    let mut name = run_dir.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let io = |source| RunLockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    loop {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let mut lock = match crate::sys::fd::lock_exclusive(f) {
            Ok(l) => l,
            Err(Errno::EWOULDBLOCK) => {
                return Err(RunLockError::InUse {
                    dir: run_dir.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                })
            }
            Err(e) => return Err(io(e.into())),
        };
        if !same_file(&path, &lock) {
            continue; // unlinked by the agent that held it: take the new one
        }
        lock.set_len(0)
            .and_then(|_| lock.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(lock, "{}", std::process::id()))
            .map_err(io)?;
        return Ok(RunLock { lock, path });
    }
}

/// Whether `path` names the file `f` is open on.
fn same_file(path: &Path, f: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), f.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl Drop for RunLock {
    /// Removes the lock file, still holding the lock, if it is still ours.
    fn drop(&mut self) {
        if same_file(&self.path, &self.lock) {
            let _ = fs::remove_file(&self.path);
        }
    }
}
