//! `watchable-bind`, as the Kata agent serves it: `source` (a configmap or
//! secret on the share, which inotify cannot watch) copied into the tmpfs
//! at the mount point and kept in step by polling (`mount::watch`), as
//! long as it stays within the caps; past them, bind-mounted instead.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{bind::Bind, Record, StorageDriver, StorageSpec};
use crate::mount::watch::{self, WatchError};
use crate::mount::MountError;

/// The driver.
pub struct WatchableBind;

/// Its name.
pub const NAME: &str = "watchable-bind";

impl StorageDriver for WatchableBind {
    fn names(&self) -> &'static [&'static str] {
        &[NAME]
    }
    fn describe(&self) -> &'static str {
        "Kata's: `source` (a configmap or secret on a share without inotify) is copied into the agent's tmpfs at `/run/kata-containers/shared/containers/watchable`, at `mount_point` below it, and re-copied every 2 s when it changes; a source over 16 entries or 1 MiB is bind-mounted instead. The copies go with their container, the tmpfs with the sandbox"
    }
    fn exposes(&self, s: &StorageSpec) -> Vec<PathBuf> {
        Bind.exposes(s)
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        let src = Path::new(&s.source);
        if !watch::fits(src).map_err(|e| record.error("copy", &s.source, errno(&e)))? {
            return Bind.mount(s, record);
        }
        record.dir(&s.source, "watchable", |created| {
            watch::sync(src, &s.mount_point).map(|_| ()).map_err(|e| {
                // Only a copy bosun made the directory for is removed whole.
                if created.iter().any(|d| d == &s.mount_point) {
                    let _ = crate::mount::fsutil::remove_dir_same_fs(&s.mount_point);
                }
                record.error("copy", &s.source, errno(&e))
            })
        })
    }
}

fn errno(e: &WatchError) -> Errno {
    match e {
        WatchError::Io { source, .. } => super::io_errno(source),
        WatchError::TooLarge { .. } => Errno::EFBIG,
    }
}
