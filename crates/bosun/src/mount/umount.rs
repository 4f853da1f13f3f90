//! Unmount rules: EINVAL (not a mount point) and ENOENT (gone) mean the job
//! is done; EBUSY is retried, then the mount is detached with a warning.

use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

use super::MountError;
use crate::sys::mount as sysmount;

/// How an unmount ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted now.
    Done,
    /// Nothing was mounted there any more (EINVAL or ENOENT).
    AlreadyGone,
    /// Still busy after every retry: detached (MNT_DETACH); it disappears
    /// when its last user goes.
    Detached,
}

/// Retries of an EBUSY unmount before detaching, and the pause between
/// them: 10 × 20 ms lets a process that was just killed release its cwd.
pub const BUSY_RETRIES: u32 = 10;
/// Pause between EBUSY retries.
pub const BUSY_INTERVAL: Duration = Duration::from_millis(20);

/// Unmounts `target` by the rules above.
pub fn unmount(target: &Path, retries: u32, interval: Duration) -> Result<Unmounted, MountError> {
    let err = |errno| MountError {
        op: "umount",
        target: target.to_path_buf(),
        from: None,
        errno,
    };
    let mut attempt = 0;
    loop {
        match sysmount::umount(target) {
            Ok(()) => return Ok(Unmounted::Done),
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(Unmounted::AlreadyGone),
            Err(Errno::EBUSY) if attempt < retries => {
                attempt += 1;
                std::thread::sleep(interval);
            }
            Err(Errno::EBUSY) => {
                return match sysmount::umount_detach(target) {
                    Ok(()) => Ok(Unmounted::Detached),
                    Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(Unmounted::AlreadyGone),
                    Err(e) => Err(err(e)),
                };
            }
            Err(e) => return Err(err(e)),
        }
    }
}
