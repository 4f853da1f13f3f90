//! GetVolumeStats and ResizeVolume on a volume's guest path.

use std::path::Path;

use crate::error::AgentError;
use crate::ids::guest_path as check_guest_path;
use crate::sys::guest as sys_guest;

/// Bytes and inodes of the filesystem at a volume's path.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage {
    /// (total, used, available) bytes.
    pub bytes: (u64, u64, u64),
    /// (total, used, available) inodes.
    pub inodes: (u64, u64, u64),
}

fn fs_err(path: &Path, e: nix::errno::Errno) -> AgentError {
    match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {
            AgentError::invalid("volume_guest_path", format!("{}: {e}", path.display()))
        }
        e => AgentError::Internal(format!("statvfs {}: {e}", path.display())),
    }
}

/// GetVolumeStats.
pub fn stats(path: &str) -> Result<Usage, AgentError> {
    let p = check_guest_path("volume_guest_path", path)?;
    let (bsize, blocks, avail, files, ffree) = sys_guest::fs_usage(&p).map_err(|e| fs_err(&p, e))?;
    let total = blocks * bsize;
    let free_bytes = avail * bsize;
    Ok(Usage {
        bytes: (total, total.saturating_sub(free_bytes), free_bytes),
        inodes: (files, files.saturating_sub(ffree), ffree),
    })
}

/// ResizeVolume: grows the ext4 filesystem at `path` to `size` bytes
/// (0: to the size of its device), online. The Kata agent answers
/// UNIMPLEMENTED here; shrinking is refused (an online ext4 cannot).
pub fn resize(path: &str, size: u64) -> Result<u64, AgentError> {
    let p = check_guest_path("volume_guest_path", path)?;
    let fstype = crate::mount::mountinfo::fstype_at(&p)
        .map_err(|e| AgentError::Internal(format!("mountinfo: {e}")))?
        .ok_or_else(|| AgentError::invalid("volume_guest_path", format!("{} is not a mount point", p.display())))?;
    if fstype != "ext4" {
        return Err(AgentError::invalid(
            "volume_guest_path",
            format!("{} is {fstype}; bosun grows ext4 online", p.display()),
        ));
    }
    let (bsize, blocks, ..) = sys_guest::fs_usage(&p).map_err(|e| fs_err(&p, e))?;
    let target = if size == 0 { device_bytes(&p)? } else { size } / bsize;
    if target < blocks {
        return Err(AgentError::invalid(
            "size",
            format!(
                "{} bytes is smaller than the filesystem ({} bytes)",
                target * bsize,
                blocks * bsize
            ),
        ));
    }
    if target > blocks {
        sys_guest::ext4_grow(&p, target).map_err(|e| match e {
            nix::errno::Errno::EINVAL | nix::errno::Errno::EFBIG => AgentError::invalid(
                "size",
                format!(
                    "grow {} to {} blocks: {e} (the device is smaller?)",
                    p.display(),
                    target
                ),
            ),
            nix::errno::Errno::EPERM => AgentError::Unavailable(format!(
                "grow {}: {e}: the agent lacks CAP_SYS_RESOURCE (a guest's init has it)",
                p.display()
            )),
            e => AgentError::Internal(format!("grow {}: {e}", p.display())),
        })?;
    }
    Ok(target * bsize)
}

/// The size of the block device mounted at `p` (sysfs, 512-byte sectors).
fn device_bytes(p: &Path) -> Result<u64, AgentError> {
    let source = crate::mount::mountinfo::source_at(p)
        .map_err(|e| AgentError::Internal(format!("mountinfo: {e}")))?
        .unwrap_or_default();
    let name = source.strip_prefix("/dev/").unwrap_or("");
    let sectors = std::fs::read_to_string(format!("/sys/class/block/{name}/size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|_| !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| {
            AgentError::invalid(
                "size",
                format!("0 (grow to the device) but {source:?} is not a block device"),
            )
        })?;
    Ok(sectors * 512)
}
