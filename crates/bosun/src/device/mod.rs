//! Guest devices a runtime names by where they sit on the bus, as the
//! Kata runtimes do for hot-plugged disks: a PCI path (`02/00`: slot 2 of
//! the root bus, a bridge; slot 0 behind it) for virtio-blk, a SCSI
//! address (`0:0`: target, LUN) for virtio-scsi, or a `/dev` path
//! (virtio-mmio disks, nvdimm). `resolve` turns the address into the guest's
//! device node, waiting for the kernel to bring the device up.
//!
//! Waiting polls sysfs and /dev (devtmpfs creates the node): the same
//! facts the Kata agent reads from uevents, without a netlink listener
//! that would have to run before the device is hot-plugged.

mod node;
pub mod pci;
mod pci_block;
mod scsi;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a device may take to appear after the runtime hot-plugged it,
/// unless configured (`--hotplug-timeout`; Kata's default is 3 s, TCG
/// guests are slower).
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured bound, seconds (0: `DEVICE_TIMEOUT`): one agent, one
/// setting, read at every wait.
static HOTPLUG_TIMEOUT_SECS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets the bound on waiting for a device (at start).
pub fn set_hotplug_timeout(t: Duration) {
    HOTPLUG_TIMEOUT_SECS.store(t.as_secs(), std::sync::atomic::Ordering::Relaxed);
}

fn hotplug_timeout() -> Duration {
    match HOTPLUG_TIMEOUT_SECS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => DEVICE_TIMEOUT,
        s => Duration::from_secs(s),
    }
}
const POLL: Duration = Duration::from_millis(20);

/// Where a device is, as the request says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceAddr {
    /// A device node path (`/dev/vdb`, `/dev/pmem0`).
    Node(PathBuf),
    /// A virtio-blk disk at this PCI path.
    PciBlock(pci::PciPath),
    /// A disk on the virtio-scsi controller.
    Scsi {
        /// SCSI id (target).
        target: u32,
        /// LUN.
        lun: u32,
    },
}

/// Why a device could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The address does not parse.
    #[error("device address {addr:?}: {reason}")]
    BadAddress {
        /// The address.
        addr: String,
        /// What is accepted.
        reason: String,
    },
    /// It did not appear in time.
    #[error("device {addr} did not appear within {timeout:?}: {detail}")]
    NotFound {
        /// The address.
        addr: String,
        /// How long bosun waited.
        timeout: Duration,
        /// What was looked at.
        detail: String,
    },
}

impl std::fmt::Display for DeviceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Node(p) => write!(f, "{}", p.display()),
            Self::PciBlock(p) => write!(f, "PCI path {p}"),
            Self::Scsi { target, lun } => write!(f, "SCSI {target}:{lun}"),
        }
    }
}

/// One kind of guest device, as a runtime names it.
pub trait DeviceKind: Sync {
    /// The Kata device or storage type names it serves.
    fn names(&self) -> &'static [&'static str];
    /// Whether a runtime names it by a bus address (`id`) rather than by
    /// its guest node (`vm_path`).
    fn by_bus_address(&self) -> bool {
        false
    }
    /// The address `source` gives (a `/dev` path is taken by every kind,
    /// before this is asked).
    fn parse(&self, source: &str) -> Result<DeviceAddr, String>;
}

/// Every device kind bosun resolves: one file each.
pub static KINDS: &[&dyn DeviceKind] = &[&pci_block::PciBlock, &scsi::Scsi, &node::Node];

/// The kind serving type `name`.
pub fn kind(name: &str) -> Option<&'static dyn DeviceKind> {
    KINDS.iter().copied().find(|k| k.names().contains(&name))
}

fn served() -> String {
    KINDS
        .iter()
        .flat_map(|k| k.names().iter().copied())
        .collect::<Vec<_>>()
        .join(", ")
}

impl DeviceAddr {
    /// The address of a block storage or device of Kata type `kind`: a
    /// `/dev` path as it is, else what the kind reads (`blk`: a PCI path;
    /// `scsi`: `T:L`; `mmioblk`, `nvdimm`: only a `/dev` path).
    pub fn parse(kind_name: &str, source: &str) -> Result<Self, DeviceError> {
        let bad = |reason: String| DeviceError::BadAddress {
            addr: source.to_string(),
            reason,
        };
        if source.starts_with("/dev/") && !source.contains("..") {
            return Ok(Self::Node(PathBuf::from(source)));
        }
        let k = kind(kind_name).ok_or_else(|| bad(format!("device type {kind_name:?}: bosun serves {}", served())))?;
        k.parse(source).map_err(bad)
    }
}

/// A CreateContainer `devices` entry: a guest device shown in the container.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContainerDevice {
    /// Where the guest device is.
    #[serde(skip)]
    pub addr: DeviceAddr,
    /// The address as sent (for the create digest).
    pub id: String,
    /// Its path in the container.
    pub container_path: PathBuf,
}

impl ContainerDevice {
    /// `type` blk/mmioblk/scsi/nvdimm with `id` (PCI path, SCSI address) or
    /// `vm_path` (the guest node); vfio and the others are not served.
    pub fn parse(kind_name: &str, id: &str, vm_path: &str, container_path: PathBuf) -> Result<Self, DeviceError> {
        let k = kind(kind_name).ok_or_else(|| DeviceError::BadAddress {
            addr: id.to_string(),
            reason: format!("device type {kind_name:?}: bosun serves {} devices", served()),
        })?;
        let addr = if k.by_bus_address() && !id.is_empty() {
            DeviceAddr::parse(kind_name, id)?
        } else {
            DeviceAddr::parse("mmioblk", vm_path)?
        };
        Ok(Self {
            addr,
            id: if id.is_empty() {
                vm_path.to_string()
            } else {
                id.to_string()
            },
            container_path,
        })
    }
}

/// Major and minor of a block device node, and whether it is one.
pub fn block_numbers(node: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(node).ok()?;
    m.file_type()
        .is_block_device()
        .then(|| crate::sys::process::dev_numbers(m.rdev()))
}

/// The sysfs and /dev a resolution reads (the machine's, or a test's tree).
#[derive(Clone, Debug)]
pub struct Roots {
    /// `/sys`.
    pub sysfs: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

/// The device node of `addr`, once it exists (bounded by `timeout`).
pub async fn resolve(addr: &DeviceAddr, roots: &Roots, timeout: Duration) -> Result<PathBuf, DeviceError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut scanned = false;
    loop {
        let found = match addr {
            DeviceAddr::Node(p) => p
                .exists()
                .then(|| p.clone())
                .ok_or_else(|| format!("no {}", p.display())),
            DeviceAddr::PciBlock(p) => pci::block_device(p, roots),
            DeviceAddr::Scsi { target, lun } => {
                if !scanned {
                    scsi::scan_scsi(&roots.sysfs, *target, *lun);
                    scanned = true;
                }
                scsi::scsi_block_device(&roots.sysfs, *target, *lun)
            }
        };
        match found {
            Ok(name) => {
                let node = if name.is_absolute() { name } else { roots.dev.join(name) };
                if node.exists() {
                    return Ok(node);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(not_found(addr, timeout, format!("{} not created", node.display())));
                }
            }
            Err(detail) if tokio::time::Instant::now() >= deadline => return Err(not_found(addr, timeout, detail)),
            Err(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `resolve` in this guest's /sys and /dev, bounded by the hotplug timeout.
pub async fn wait_for(addr: &DeviceAddr) -> Result<PathBuf, DeviceError> {
    resolve(addr, &Roots::default(), hotplug_timeout()).await
}

fn not_found(addr: &DeviceAddr, timeout: Duration, detail: String) -> DeviceError {
    DeviceError::NotFound {
        addr: addr.to_string(),
        timeout,
        detail,
    }
}

/// The one entry of a directory (a block device's name under `block/`).
pub(crate) fn only_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_by_driver() {
        let cases: &[(&str, &str, Option<DeviceAddr>)] = &[
            (
                "blk",
                "02/00",
                Some(DeviceAddr::PciBlock(pci::PciPath::parse("02/00").unwrap())),
            ),
            (
                "virtio-blk",
                "05",
                Some(DeviceAddr::PciBlock(pci::PciPath::parse("05").unwrap())),
            ),
            ("blk", "/dev/vdb", Some(DeviceAddr::Node("/dev/vdb".into()))),
            ("mmioblk", "/dev/vdc", Some(DeviceAddr::Node("/dev/vdc".into()))),
            ("nvdimm", "/dev/pmem0", Some(DeviceAddr::Node("/dev/pmem0".into()))),
            ("scsi", "0:3", Some(DeviceAddr::Scsi { target: 0, lun: 3 })),
            ("scsi", "0:x", None),
            ("scsi", "03", None),
            ("blk", "zz/00", None),
            ("mmioblk", "vdc", None),
            ("blk", "/dev/../etc/passwd", None),
            ("vfio", "0000:00:05.0", None),
        ];
        for (i, (driver, source, want)) in cases.iter().enumerate() {
            let got = DeviceAddr::parse(driver, source).ok();
            assert_eq!(&got, want, "test[{i}]: {driver} {source}");
        }
        let e = ContainerDevice::parse("vfio", "02/00", "", "/dev/x".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("blk, virtio-blk, scsi, mmioblk, nvdimm"), "{e}");
        let by_id = ContainerDevice::parse("virtio-blk", "02/00", "/dev/vdb", "/dev/x".into()).unwrap();
        assert!(matches!(by_id.addr, DeviceAddr::PciBlock(_)));
        let by_node = ContainerDevice::parse("nvdimm", "", "/dev/pmem0", "/dev/x".into()).unwrap();
        assert_eq!(by_node.addr, DeviceAddr::Node("/dev/pmem0".into()));
    }

    /// A sysfs tree laid out as the kernel lays out a q35 guest's: only for
    /// the resolution logic; `make vm-test` resolves real hot-plugged disks.
    #[tokio::test]
    async fn resolution_in_a_sysfs_tree() {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let dev = d.path().join("dev");
        let root = sys.join("devices/pci0000:00");
        let bridge = root.join("0000:00:02.0");
        std::fs::create_dir_all(bridge.join("pci_bus/0000:01")).unwrap();
        std::fs::create_dir_all(bridge.join("0000:01:00.0/virtio3/block/vdb")).unwrap();
        std::fs::create_dir_all(sys.join("bus/scsi/devices/2:0:0:1/block/sdc")).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        let roots = Roots {
            sysfs: sys.clone(),
            dev: dev.clone(),
        };
        let quick = Duration::from_millis(100);
        let pci = DeviceAddr::parse("blk", "02/00").unwrap();
        // Present in sysfs, node not yet made: waits, then says which node.
        let e = resolve(&pci, &roots, quick).await.unwrap_err().to_string();
        assert!(e.contains("vdb not created"), "{e}");
        std::fs::write(dev.join("vdb"), "").unwrap();
        assert_eq!(resolve(&pci, &roots, quick).await.unwrap(), dev.join("vdb"));
        std::fs::write(dev.join("sdc"), "").unwrap();
        let scsi = DeviceAddr::parse("scsi", "0:1").unwrap();
        assert_eq!(resolve(&scsi, &roots, quick).await.unwrap(), dev.join("sdc"));
        for (i, (driver, addr)) in [("blk", "03/00"), ("blk", "02/01"), ("scsi", "1:1")].iter().enumerate() {
            let a = DeviceAddr::parse(driver, addr).unwrap();
            assert!(
                matches!(resolve(&a, &roots, quick).await, Err(DeviceError::NotFound { .. })),
                "test[{i}]: {addr}"
            );
        }
    }
}
