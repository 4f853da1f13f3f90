//! `blk`, `virtio-blk`: the virtio-blk disk the runtime names by PCI path
//! (`02/00`), waited for, mounted with `fstype` and `options`. A `/dev`
//! node as `source` (bosun's own, not Kata's) is mounted as it is.

use super::{mount_fs, Record, StorageDriver, StorageSpec};
use crate::device::{DeviceAddr, DeviceError};
use crate::mount::MountError;
use crate::sys::mount::Flags;

/// The driver.
pub struct Block;

impl StorageDriver for Block {
    fn names(&self) -> &'static [&'static str] {
        &["blk", "virtio-blk"]
    }
    fn describe(&self) -> &'static str {
        "Kata's: `source` is the disk's **PCI path** (`02/00`: slot 2 of the root bus, slot 0 behind that bridge); bosun walks sysfs (`/sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/virtio*/block/vdX`), waits up to 10 s for the disk and its node, and mounts `/dev/vdX` with `fstype` and `options`. bosun's own (not Kata's): a `/dev/...` source is mounted as it is (tested with an ext4 loop device)"
    }
    fn device(&self, s: &StorageSpec) -> Option<Result<DeviceAddr, DeviceError>> {
        (!s.source.starts_with("/dev/")).then(|| DeviceAddr::parse("blk", &s.source))
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        mount_fs(s, record, &s.source, &s.fstype, Flags::empty())
    }
}
