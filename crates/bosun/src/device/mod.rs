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

pub mod pci;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a device may take to appear after the runtime hot-plugged it
/// (Kata's default `hotplug_timeout` is 3 s; TCG guests are slower).
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
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

impl DeviceAddr {
    /// The address of a block storage or device of Kata `driver`:
    /// `blk`/`virtio-blk` (a PCI path, or bosun's own `/dev` path), `scsi`
    /// (`T:L`, or a `/dev` path), `mmioblk` and `nvdimm` (a `/dev` path).
    pub fn parse(driver: &str, source: &str) -> Result<Self, DeviceError> {
        let bad = |reason: &str| DeviceError::BadAddress {
            addr: source.to_string(),
            reason: reason.to_string(),
        };
        if source.starts_with("/dev/") && !source.contains("..") {
            return Ok(Self::Node(PathBuf::from(source)));
        }
        match driver {
            "blk" | "virtio-blk" => pci::PciPath::parse(source).map(Self::PciBlock).map_err(|e| bad(&e)),
            "scsi" => {
                let (t, l) = source
                    .split_once(':')
                    .ok_or_else(|| bad("a SCSI address is TARGET:LUN"))?;
                let n = |s: &str| {
                    s.parse::<u32>()
                        .map_err(|_| bad("a SCSI address is TARGET:LUN, decimal"))
                };
                Ok(Self::Scsi {
                    target: n(t)?,
                    lun: n(l)?,
                })
            }
            _ => Err(bad("a /dev path")),
        }
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
    pub fn parse(kind: &str, id: &str, vm_path: &str, container_path: PathBuf) -> Result<Self, DeviceError> {
        let addr = match kind {
            "blk" | "virtio-blk" if !id.is_empty() => DeviceAddr::parse("blk", id)?,
            "scsi" if !id.is_empty() => DeviceAddr::parse("scsi", id)?,
            "blk" | "virtio-blk" | "mmioblk" | "nvdimm" | "scsi" => DeviceAddr::parse("mmioblk", vm_path)?,
            other => {
                return Err(DeviceError::BadAddress {
                    addr: id.to_string(),
                    reason: format!("device type {other:?}: bosun serves blk, mmioblk, scsi and nvdimm devices"),
                })
            }
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
        .then(|| (nix::sys::stat::major(m.rdev()), nix::sys::stat::minor(m.rdev())))
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
                    // Ask every SCSI host to look for the LUN, as the Kata
                    // agent does ("0 T L" to scan), once.
                    scan_scsi(&roots.sysfs, *target, *lun);
                    scanned = true;
                }
                scsi_block_device(&roots.sysfs, *target, *lun)
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

/// `resolve` in this guest's /sys and /dev, bounded by `DEVICE_TIMEOUT`.
pub async fn wait_for(addr: &DeviceAddr) -> Result<PathBuf, DeviceError> {
    resolve(addr, &Roots::default(), DEVICE_TIMEOUT).await
}

fn not_found(addr: &DeviceAddr, timeout: Duration, detail: String) -> DeviceError {
    DeviceError::NotFound {
        addr: addr.to_string(),
        timeout,
        detail,
    }
}

/// The one entry of a directory (a block device's name under `block/`).
fn only_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

fn scan_scsi(sysfs: &Path, target: u32, lun: u32) {
    let Ok(hosts) = std::fs::read_dir(sysfs.join("class/scsi_host")) else {
        return;
    };
    for h in hosts.filter_map(Result::ok) {
        let _ = std::fs::write(h.path().join("scan"), format!("0 {target} {lun}"));
    }
}

/// `sdX` of the disk at channel 0, `target`, `lun` of any SCSI host.
fn scsi_block_device(sysfs: &Path, target: u32, lun: u32) -> Result<PathBuf, String> {
    let dir = sysfs.join("bus/scsi/devices");
    let want = format!(":0:{target}:{lun}");
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.filter_map(Result::ok) {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.ends_with(&want) && n.split(':').count() == 4 {
            if let Some(b) = only_entry(&e.path().join("block")) {
                return Ok(PathBuf::from(b));
            }
        }
    }
    Err(format!("no SCSI device *{want} under {}", dir.display()))
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
        ];
        for (i, (driver, source, want)) in cases.iter().enumerate() {
            let got = DeviceAddr::parse(driver, source).ok();
            assert_eq!(&got, want, "test[{i}]: {driver} {source}");
        }
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
