//! CreateContainer `shared_mounts`: mounts copied from another container
//! (a sidecar's) into the new one.

use std::os::unix::process::CommandExt;

use slog::{info, warn};

use super::Sandbox;
use crate::container::shared_mount::{self, SharedMount};

impl Sandbox {
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
