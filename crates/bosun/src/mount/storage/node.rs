//! `mmioblk`, `nvdimm`: a node the runtime names (`/dev/vdc`,
//! `/dev/pmem0`) and the kernel brings up, waited for; `dax` passes
//! through to the filesystem.

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::device::{DeviceAddr, DeviceError};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Node;

impl StorageDriver for Node {
    fn names(&self) -> &'static [&'static str] {
        &["mmioblk", "nvdimm"]
    }
    fn describe(&self) -> &'static str {
        "`source` is the node (`/dev/vdc`, `/dev/pmem0`), waited for; a `dax` option goes to the filesystem"
    }
    fn device(&self, s: &StorageSpec) -> Option<Result<DeviceAddr, DeviceError>> {
        Some(DeviceAddr::parse("mmioblk", &s.source))
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, &s.source, &s.fstype, Flags::empty())
    }
}
