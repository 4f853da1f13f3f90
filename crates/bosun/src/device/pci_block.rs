//! `blk`, `virtio-blk`: a virtio-blk disk named by its PCI path (`02/00`),
//! found under the bridge the path walks (`pci.rs`).

use super::{pci::PciPath, DeviceAddr, DeviceKind};

/// The kind.
pub struct PciBlock;

impl DeviceKind for PciBlock {
    fn names(&self) -> &'static [&'static str] {
        &["blk", "virtio-blk"]
    }
    fn by_bus_address(&self) -> bool {
        true
    }
    fn parse(&self, source: &str) -> Result<DeviceAddr, String> {
        PciPath::parse(source).map(DeviceAddr::PciBlock)
    }
}
