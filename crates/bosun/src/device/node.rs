//! `mmioblk`, `nvdimm`: devices the runtime names by their guest node
//! (`/dev/vdc`, `/dev/pmem0`), which the kernel brings up; nothing else is
//! an address of theirs.

use super::{DeviceAddr, DeviceKind};

/// The kind.
pub struct Node;

impl DeviceKind for Node {
    fn names(&self) -> &'static [&'static str] {
        &["mmioblk", "nvdimm"]
    }
    fn parse(&self, _source: &str) -> Result<DeviceAddr, String> {
        Err("a /dev path".into())
    }
}
