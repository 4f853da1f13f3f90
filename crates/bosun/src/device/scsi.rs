//! `scsi`: a disk on the virtio-scsi controller, named by its SCSI address
//! `TARGET:LUN`. The agent asks every SCSI host to scan for it once (as the
//! Kata agent does: "0 T L"), then finds its `sdX` under sysfs.

use std::path::{Path, PathBuf};

use super::{only_entry, DeviceAddr, DeviceKind};

/// The kind.
pub struct Scsi;

impl DeviceKind for Scsi {
    fn names(&self) -> &'static [&'static str] {
        &["scsi"]
    }
    fn by_bus_address(&self) -> bool {
        true
    }
    fn parse(&self, source: &str) -> Result<DeviceAddr, String> {
        let (t, l) = source.split_once(':').ok_or("a SCSI address is TARGET:LUN")?;
        let n = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| "a SCSI address is TARGET:LUN, decimal".to_string())
        };
        Ok(DeviceAddr::Scsi {
            target: n(t)?,
            lun: n(l)?,
        })
    }
}

/// Asks every SCSI host to look for the LUN.
pub fn scan_scsi(sysfs: &Path, target: u32, lun: u32) {
    let Ok(hosts) = std::fs::read_dir(sysfs.join("class/scsi_host")) else {
        return;
    };
    for h in hosts.filter_map(Result::ok) {
        let _ = std::fs::write(h.path().join("scan"), format!("0 {target} {lun}"));
    }
}

/// `sdX` of the disk at channel 0, `target`, `lun` of any SCSI host.
pub fn scsi_block_device(sysfs: &Path, target: u32, lun: u32) -> Result<PathBuf, String> {
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
