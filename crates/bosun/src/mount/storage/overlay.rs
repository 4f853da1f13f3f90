//! `overlayfs`: an overlay at the mount point; its options carry
//! lowerdir/upperdir/workdir (also how a pulled image is mounted).

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Overlay;

/// Its name.
pub const NAME: &str = "overlayfs";

impl StorageDriver for Overlay {
    fn names(&self) -> &'static [&'static str] {
        &[NAME]
    }
    fn describe(&self) -> &'static str {
        "overlay at `mount_point`; `options` carry `lowerdir=`, `upperdir=`, `workdir=`"
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, "overlay", "overlay", Flags::empty())
    }
}
