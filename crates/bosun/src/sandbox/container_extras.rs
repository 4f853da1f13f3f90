//! What a new container is given from the guest besides its rootfs:
//! CreateContainer `devices` (guest disks as nodes) and `shared_mounts`
//! (mounts copied from another container).

use std::os::unix::process::CommandExt;

use slog::{info, warn};

use super::Sandbox;
use crate::container::init_config::DeviceSpec;
use crate::container::shared_mount::{self, SharedMount};
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

    /// CreateContainer `shared_mounts` into the new container (its init
    /// `pid`, set up and waiting at its start gate), as the Kata agent does:
    /// a source container not in the sandbox, or whose mount is not there
    /// within `READY_TIMEOUT`, is skipped (logged); a copy that fails
    /// fails the create.
    pub(super) async fn share_mounts(&self, mounts: &[SharedMount], pid: i32) -> Result<(), String> {
        for m in mounts {
            let src = self
                .containers()
                .into_iter()
                .find(|c| c.name.as_deref() == Some(m.src_ctr.as_str()));
            let Some(src) = src else {
                warn!(self.log, "shared mount skipped: no such source container"; "target" => &m.name, "cid" => &m.src_ctr);
                continue;
            };
            let src_pid = src.init.pid;
            let deadline = tokio::time::Instant::now() + shared_mount::READY_TIMEOUT;
            let ready = loop {
                if shared_mount::is_mounted_in(src_pid, &m.src_path) {
                    break true;
                }
                if tokio::time::Instant::now() >= deadline {
                    break false;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            };
            if !ready {
                warn!(self.log, "shared mount skipped: nothing mounted at the source"; "target" => &m.name, "cid" => &m.src_ctr);
                continue;
            }
            let mut cmd = std::process::Command::new("/proc/self/exe");
            cmd.arg0("bosun-share-mount")
                .arg("share-mount")
                .arg(src_pid.to_string())
                .arg(&m.src_path)
                .arg(pid.to_string())
                .arg(&m.dst_path)
                .env_clear();
            let out = self
                .reaper
                .output(cmd, b"", shared_mount::READY_TIMEOUT)
                .await
                .map_err(|e| format!("shared mount {:?}: start helper: {e}", m.name))?;
            if out.status != 0 {
                let err = String::from_utf8_lossy(&out.stderr);
                return Err(format!(
                    "shared mount {:?} from {:?}: {}",
                    m.name,
                    m.src_ctr,
                    err.trim()
                ));
            }
            info!(self.log, "shared mount"; "target" => &m.name, "cid" => &m.src_ctr);
        }
        Ok(())
    }
}
