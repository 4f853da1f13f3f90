//! `virtio-fs`, `9p`: the host's share, mounted by its tag (`source`)
//! with `fstype`.

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct SharedFs;

impl StorageDriver for SharedFs {
    fn names(&self) -> &'static [&'static str] {
        &["virtio-fs", "9p"]
    }
    fn describe(&self) -> &'static str {
        "mounts `source` with `fstype` (the host's share, by its tag)"
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, &s.source, &s.fstype, Flags::empty())
    }
}
