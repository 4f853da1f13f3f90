//! CreateContainer `shared_mounts`, as the Kata agent serves them: a mount
//! that an application made inside one container (the source, found by
//! its CRI container name) is copied, with what is mounted below it, into
//! the new container at `dst_path`. The copy lives in the new container's
//! mount namespace only and goes with it; nothing is mounted in the agent's.
//!
//! The agent is multi-threaded and may not setns into a mount namespace,
//! so `bosun share-mount SRC_PID SRC_PATH DST_PID DST_PATH` does the work
//! in a fresh single-threaded process.

use std::fs::File;
use std::path::{Path, PathBuf};

/// One shared mount, validated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SharedMount {
    /// Its name (for messages).
    pub name: String,
    /// The source container's CRI name.
    pub src_ctr: String,
    /// The mount point inside the source container.
    pub src_path: PathBuf,
    /// Where it appears in the new container.
    pub dst_path: PathBuf,
}

/// How long the source may take to have its mount in place (the Kata
/// agent's bound: the source application makes it after it starts).
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether `path` is a mount point in the mount namespace of `pid`, as
/// that process sees its tree.
pub fn is_mounted_in(pid: i32, path: &Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|m| Path::new(m) == path)
}

/// The helper's entry: `[SRC_PID, SRC_PATH, DST_PID, DST_PATH]`.
pub fn helper(args: &[String]) -> i32 {
    let ns = |pid: &str| File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| format!("open /proc/{pid}/ns/mnt: {e}"));
    let run = || -> Result<(), String> {
        let (src_ns, dst_ns) = (ns(&args[0])?, ns(&args[2])?);
        crate::sys::mount::clone_tree_between(&src_ns, Path::new(&args[1]), &dst_ns, Path::new(&args[3]))
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
