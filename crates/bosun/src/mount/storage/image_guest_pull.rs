//! `image_guest_pull` (remote-hypervisor mode): the guest pulls the image
//! itself. The sandbox resolves such a storage before anything is mounted
//! (`sandbox::guest_pull`): nothing for the sandbox container's `pause`,
//! the image's overlay for a workload.

use nix::errno::Errno;

use super::{Record, StorageDriver, StorageSpec};
use crate::mount::MountError;

/// The driver.
pub struct GuestPull;

/// Its name.
pub const NAME: &str = "image_guest_pull";

impl StorageDriver for GuestPull {
    fn names(&self) -> &'static [&'static str] {
        &[NAME]
    }
    fn describe(&self) -> &'static str {
        "remote-hypervisor mode: the sandbox container's `pause` needs nothing pulled (the pod VM's pause bundle or bosun's built-in pause runs); a workload's image is pulled by the guest into its image store and mounted as an overlay of its layers (see \"Pulling images in the guest\")"
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        // Replaced by the image's storages before mounting; never mounted as it is.
        Err(record.error("image_guest_pull", &s.source, Errno::ENOTSUP))
    }
}
