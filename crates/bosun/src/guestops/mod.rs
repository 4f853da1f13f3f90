//! Calls on the whole guest that the Kata protocol has besides pods:
//! volumes (stats, online grow), swap, CPU and memory hot-plug, the
//! entropy pool, iptables. What changes the machine itself (swap, memory,
//! CPUs, the entropy pool) bosun does only as the guest's PID 1: anywhere
//! else the machine is not the pod's, and it refuses, as for the clock.

pub mod hotplug;
pub mod iptables;
pub mod volume;

use std::path::{Path, PathBuf};

use crate::device::{pci::PciPath, DeviceAddr};
use crate::error::AgentError;
use crate::sys::guest as sys_guest;

/// Refuses `what` unless bosun is the guest's init.
pub fn guest_only(what: &'static str) -> Result<(), AgentError> {
    if std::process::id() == 1 {
        Ok(())
    } else {
        Err(AgentError::GuestOnly(what))
    }
}

/// Most entropy one ReseedRandomDev adds: the kernel's pool is 256 bytes.
const MAX_SEED: usize = 4096;

/// ReseedRandomDev: `data` into the kernel's pool, credited.
pub fn reseed(data: &[u8]) -> Result<(), AgentError> {
    if data.len() > MAX_SEED {
        return Err(AgentError::invalid(
            "data",
            format!("{} bytes; at most {MAX_SEED}", data.len()),
        ));
    }
    guest_only("adding entropy to the kernel's pool")?;
    sys_guest::add_entropy(data).map_err(|e| AgentError::Internal(format!("RNDADDENTROPY: {e}")))
}

/// AddSwap: the virtio-blk disk at PCI path `slots` (one slot per hop,
/// function 0), which the runtime formatted as swap, is enabled.
pub async fn add_swap(slots: &[u32]) -> Result<PathBuf, AgentError> {
    let text: Vec<String> = slots.iter().map(|s| format!("{s:02x}")).collect();
    let path = PciPath::parse(&text.join("/")).map_err(|e| AgentError::invalid("PCIPath", e))?;
    guest_only("enabling swap")?;
    let node = crate::device::wait_for(&DeviceAddr::PciBlock(path)).await?;
    swapon(&node)?;
    Ok(node)
}

/// AddSwapPath: the swap file (or device) at `path`.
pub fn add_swap_path(path: &str) -> Result<(), AgentError> {
    let p = crate::ids::guest_path("path", path)?;
    guest_only("enabling swap")?;
    swapon(&p)
}

fn swapon(p: &Path) -> Result<(), AgentError> {
    sys_guest::swapon(p).map_err(|e| match e {
        nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL => AgentError::invalid(
            "path",
            format!("swapon {}: {e} (not a swap area made by mkswap?)", p.display()),
        ),
        e => AgentError::Internal(format!("swapon {}: {e}", p.display())),
    })
}
