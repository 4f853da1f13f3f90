//! `ephemeral`: a tmpfs at the mount point (emptyDir with medium Memory,
//! the sandbox's shm); its options can be changed later
//! (UpdateEphemeralMounts).

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Ephemeral;

/// Its name.
pub const NAME: &str = "ephemeral";

impl StorageDriver for Ephemeral {
    fn names(&self) -> &'static [&'static str] {
        &[NAME]
    }
    fn describe(&self) -> &'static str {
        "tmpfs at `mount_point`; UpdateEphemeralMounts remounts it with new options"
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, "tmpfs", "tmpfs", Flags::empty())
    }
}
