//! `scsi`: the disk at SCSI address `source` (`TARGET:LUN`) of the
//! virtio-scsi controller, waited for; or a `/dev` node as it is.

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::device::{DeviceAddr, DeviceError};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Scsi;

impl StorageDriver for Scsi {
    fn names(&self) -> &'static [&'static str] {
        &["scsi"]
    }
    fn describe(&self) -> &'static str {
        "Kata's: `source` is the SCSI address `TARGET:LUN` on the virtio-scsi controller; bosun asks each SCSI host to scan for it, waits for `/sys/bus/scsi/devices/H:0:T:L/block/sdX`, mounts `/dev/sdX`. A `/dev/...` source is mounted as it is"
    }
    fn device(&self, s: &StorageSpec) -> Option<Result<DeviceAddr, DeviceError>> {
        (!s.source.starts_with("/dev/")).then(|| DeviceAddr::parse("scsi", &s.source))
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, &s.source, &s.fstype, Flags::empty())
    }
}
