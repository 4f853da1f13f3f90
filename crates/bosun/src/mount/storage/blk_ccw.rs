//! `blk-ccw`: s390x channel I/O disks. No such bus in an x86 or arm guest:
//! the storage answers UNIMPLEMENTED.

use nix::errno::Errno;

use super::{Record, StorageDriver, StorageSpec};
use crate::mount::MountError;

/// The driver.
pub struct BlkCcw;

impl StorageDriver for BlkCcw {
    fn names(&self) -> &'static [&'static str] {
        &["blk-ccw"]
    }
    fn describe(&self) -> &'static str {
        "not served (s390x channel I/O): `UNIMPLEMENTED`"
    }
    fn unsupported(&self) -> Option<&'static str> {
        Some("s390x channel I/O")
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        Err(record.error("blk-ccw", &s.source, Errno::ENOTSUP))
    }
}
