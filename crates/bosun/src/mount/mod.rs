//! Mounts bosun makes in its own mount namespace (storages): the ledger
//! that records them before they are made, the storage drivers, and the
//! unmount rules.

pub mod fsutil;
pub mod ledger;
pub mod mountinfo;
pub mod storage;
pub mod umount;
pub mod watch;

use std::path::PathBuf;

use nix::errno::Errno;

/// A mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}{}: {errno}", target.display(), from.as_ref().map(|s| format!(" (source {s})")).unwrap_or_default())]
pub struct MountError {
    /// What was attempted ("mount", "umount", "mkdir", ...).
    pub op: &'static str,
    /// The mount point.
    pub target: PathBuf,
    /// The source, for mounts.
    pub from: Option<String>,
    /// The kernel's answer.
    pub errno: Errno,
}
