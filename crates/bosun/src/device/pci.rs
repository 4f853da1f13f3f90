//! PCI paths as the Kata runtimes write them: slot[.function] of each hop
//! from the root bus, hex, separated by `/` (`02/00`, `02.0/01.3`).

use std::path::{Path, PathBuf};

use super::{only_entry, Roots};

/// Most hops a path may have (bridges behind bridges).
const MAX_HOPS: usize = 8;

/// A parsed PCI path: (slot, function) per hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciPath(Vec<(u8, u8)>);

impl std::fmt::Display for PciPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hops: Vec<String> = self.0.iter().map(|(s, _)| format!("{s:02x}")).collect();
        write!(f, "{}", hops.join("/"))
    }
}

impl PciPath {
    /// Parses `SS[.F]/SS[.F]/...` (slot 0..=0x1f, function 0..=7).
    pub fn parse(s: &str) -> Result<Self, String> {
        let hops: Result<Vec<(u8, u8)>, String> = s
            .split('/')
            .map(|h| {
                let (slot, func) = h.split_once('.').unwrap_or((h, "0"));
                let slot = u8::from_str_radix(slot, 16)
                    .ok()
                    .filter(|s| *s <= 0x1f && !h.is_empty());
                let func = u8::from_str_radix(func, 16).ok().filter(|f| *f <= 7);
                slot.zip(func)
                    .ok_or_else(|| format!("{h:?} is not SS[.F] (slot <= 1f, function <= 7, hex)"))
            })
            .collect();
        let hops = hops?;
        if hops.is_empty() || hops.len() > MAX_HOPS {
            return Err(format!("1 to {MAX_HOPS} hops"));
        }
        Ok(Self(hops))
    }

    /// The device's sysfs path below the root bus (`/sys/devices/pci0000:00`):
    /// each hop's bus is found behind the previous bridge.
    pub fn sysfs_path(&self, root_bus: &Path) -> Result<PathBuf, String> {
        let mut bus = "0000:00".to_string();
        let mut path = root_bus.to_path_buf();
        for (i, (slot, func)) in self.0.iter().enumerate() {
            path.push(format!("{bus}:{slot:02x}.{func}"));
            if i + 1 == self.0.len() {
                break;
            }
            // The bridge's secondary bus: its one pci_bus entry.
            bus = only_entry(&path.join("pci_bus")).ok_or_else(|| format!("no bridge at {}", path.display()))?;
        }
        if !path.exists() {
            return Err(format!("no device at {}", path.display()));
        }
        Ok(path)
    }
}

/// `vdX` of the virtio-blk disk at `p`.
pub fn block_device(p: &PciPath, roots: &Roots) -> Result<PathBuf, String> {
    let dev = p.sysfs_path(&roots.sysfs.join("devices/pci0000:00"))?;
    let rd = std::fs::read_dir(&dev).map_err(|e| format!("{}: {e}", dev.display()))?;
    for e in rd.filter_map(Result::ok) {
        if e.file_name().to_string_lossy().starts_with("virtio") {
            if let Some(name) = only_entry(&e.path().join("block")) {
                return Ok(PathBuf::from(name));
            }
        }
    }
    Err(format!("no virtio block device under {}", dev.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Hops = &'static [(u8, u8)];

    #[test]
    fn paths() {
        let cases: &[(&str, Option<Hops>)] = &[
            ("02/00", Some(&[(2, 0), (0, 0)])),
            ("1f", Some(&[(0x1f, 0)])),
            ("02.1/03.7", Some(&[(2, 1), (3, 7)])),
            ("20", None),
            ("02.8", None),
            ("", None),
            ("02//00", None),
            ("0g", None),
        ];
        for (i, (s, want)) in cases.iter().enumerate() {
            let got = PciPath::parse(s).ok();
            assert_eq!(got, want.map(|w| PciPath(w.to_vec())), "test[{i}]: {s:?}");
        }
    }
}
