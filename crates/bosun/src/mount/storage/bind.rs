//! `bind`: the guest path `source` bind-mounted (recursively) at the mount
//! point.

use std::path::PathBuf;

use super::{mount_fs, overlay_dirs, Record, StorageDriver, StorageSpec};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Bind;

impl StorageDriver for Bind {
    fn names(&self) -> &'static [&'static str] {
        &["bind"]
    }
    fn describe(&self) -> &'static str {
        "bind-mounts the guest path `source` at `mount_point`"
    }
    fn exposes(&self, s: &StorageSpec) -> Vec<PathBuf> {
        let mut v = vec![PathBuf::from(&s.source)];
        v.extend(overlay_dirs(&s.options));
        v
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, &s.source, "bind", Flags::MS_BIND | Flags::MS_REC)
    }
}
