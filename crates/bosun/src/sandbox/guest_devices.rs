//! CreateContainer `devices`: guest disks, named by bus address, shown in
//! the container as nodes with the guest's major and minor.

use slog::info;

use super::Sandbox;
use crate::container::init_config::DeviceSpec;
use crate::container::spec::ContainerSpec;
use crate::error::AgentError;

impl Sandbox {
    /// CreateContainer `devices`: each guest device, once it is there,
    /// becomes the Linux.Devices node at its container path with the
    /// guest's major and minor (the spec carries the host's, as the Kata
    /// agent corrects them), or a new node when the spec has none there.
    pub(super) async fn with_guest_devices(&self, mut spec: ContainerSpec) -> Result<ContainerSpec, AgentError> {
        for d in std::mem::take(&mut spec.guest_devices) {
            let node = crate::device::wait_for(&d.addr).await?;
            let (major, minor) = crate::device::block_numbers(&node).ok_or_else(|| {
                AgentError::invalid(
                    "devices",
                    format!("{} ({}) is not a block device", node.display(), d.addr),
                )
            })?;
            match spec.devices.iter_mut().find(|x| x.path == d.container_path) {
                Some(x) => (x.kind, x.major, x.minor) = ('b', major, minor),
                None => spec.devices.push(DeviceSpec {
                    path: d.container_path.clone(),
                    kind: 'b',
                    major,
                    minor,
                    mode: 0o660,
                    uid: 0,
                    gid: 0,
                }),
            }
            info!(self.log, "device for container"; "target" => %d.container_path.display(), "node" => %node.display());
            spec.guest_devices.push(d);
        }
        Ok(spec)
    }
}
