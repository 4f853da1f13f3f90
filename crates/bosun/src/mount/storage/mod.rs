//! Storage drivers: how a Kata `Storage` becomes a mount (or a directory)
//! in the guest. Each driver is one file implementing `StorageDriver`, and
//! `DRIVERS` is the one table they are found in: the request conversion,
//! GetGuestDetails' `storage_handlers` and the README's driver table all
//! come from it (a test compares the README with it).
//!
//! Adding a driver: a file here with a `StorageDriver`, and its line in
//! `DRIVERS`.

mod bind;
mod blk_ccw;
mod block;
mod ephemeral;
mod image_guest_pull;
mod local;
mod node;
mod overlay;
mod record;
mod scsi;
mod shared_fs;
mod watchable_bind;

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::ledger::{Ledger, Owner};
use super::MountError;
use crate::container::mount_options;
use crate::device::{DeviceAddr, DeviceError};
use crate::sys::mount as sysmount;
pub use ephemeral::{Ephemeral, NAME as EPHEMERAL};
pub use image_guest_pull::NAME as GUEST_PULL;
pub use local::Local;
pub use overlay::Overlay;
pub use record::Record;
pub use watchable_bind::NAME as WATCHABLE_BIND;

/// One storage driver.
pub trait StorageDriver: Sync {
    /// The Kata driver names it serves; the first is its own.
    fn names(&self) -> &'static [&'static str];
    /// What it does, one line (the README's driver table).
    fn describe(&self) -> &'static str;
    /// Why it is not served here, when it is not (a driver of another
    /// architecture): such a storage answers UNIMPLEMENTED.
    fn unsupported(&self) -> Option<&'static str> {
        None
    }
    /// The device to wait for before mounting `s` (a bus address), if any.
    fn device(&self, _s: &StorageSpec) -> Option<Result<DeviceAddr, DeviceError>> {
        None
    }
    /// The guest paths `s` exposes at its mount point (a bind's source,
    /// an overlay's layers): the agent's own files may not be among them.
    fn exposes(&self, s: &StorageSpec) -> Vec<PathBuf> {
        overlay_dirs(&s.options)
    }
    /// Makes `s` at its mount point, through `record` (the ledger's
    /// sequence: recorded first, done after).
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError>;
}

/// Every driver bosun serves, in the order the README lists them.
pub static DRIVERS: &[&dyn StorageDriver] = &[
    &local::Local,
    &ephemeral::Ephemeral,
    &bind::Bind,
    &block::Block,
    &scsi::Scsi,
    &node::Node,
    &overlay::Overlay,
    &shared_fs::SharedFs,
    &watchable_bind::WatchableBind,
    &image_guest_pull::GuestPull,
    &blk_ccw::BlkCcw,
];

/// Every driver name served, for GetGuestDetails.
pub fn served_names() -> Vec<&'static str> {
    DRIVERS
        .iter()
        .filter(|d| d.unsupported().is_none())
        .flat_map(|d| d.names().iter().copied())
        .collect()
}

/// Why a storage's driver cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    /// No driver has this name.
    #[error("storage.driver {name:?} is not one of {known}")]
    Unknown {
        /// The name sent.
        name: String,
        /// The names bosun serves.
        known: String,
    },
    /// A driver of another architecture.
    #[error("the {name} storage driver ({why}) is not served")]
    Unsupported {
        /// Its name.
        name: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// A storage's driver, found by name in `DRIVERS`. Stored (journal,
/// create digests) as its own name.
#[derive(Clone, Copy)]
pub struct Driver(&'static dyn StorageDriver);

impl Driver {
    /// A driver bosun picks itself (the storages it builds).
    pub fn new(d: &'static dyn StorageDriver) -> Self {
        Self(d)
    }

    /// The driver serving Kata name `name`.
    pub fn parse(name: &str) -> Result<Self, DriverError> {
        let d = DRIVERS
            .iter()
            .find(|d| d.names().contains(&name))
            .ok_or_else(|| DriverError::Unknown {
                name: name.to_string(),
                known: served_names().join(", "),
            })?;
        if let Some(why) = d.unsupported() {
            return Err(DriverError::Unsupported {
                name: d.names()[0],
                why,
            });
        }
        Ok(Self(*d))
    }

    /// Its own name.
    pub fn name(&self) -> &'static str {
        self.0.names()[0]
    }

    /// The handler.
    pub fn handler(&self) -> &'static dyn StorageDriver {
        self.0
    }

    /// Whether this is the driver named `name`.
    pub fn is(&self, name: &str) -> bool {
        self.name() == name
    }
}

impl PartialEq for Driver {
    fn eq(&self, o: &Self) -> bool {
        self.name() == o.name()
    }
}
impl Eq for Driver {}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Driver {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Driver {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        // The enum's variant names a journal written before the registry
        // holds (an agent upgraded mid-pod still reads it).
        let legacy = match name.as_str() {
            "Local" => "local",
            "Ephemeral" => "ephemeral",
            "Bind" => "bind",
            "Block" => "blk",
            "Scsi" => "scsi",
            "Node" => "mmioblk",
            "WatchableBind" => "watchable-bind",
            "Overlay" => "overlayfs",
            "Shared" => "virtio-fs",
            "GuestPull" => "image_guest_pull",
            other => other,
        };
        Driver::parse(legacy).map_err(serde::de::Error::custom)
    }
}

/// A validated storage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StorageSpec {
    /// Driver.
    pub driver: Driver,
    /// Source (device, path, tag).
    pub source: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount options.
    pub options: Vec<String>,
    /// Where it is mounted in the guest.
    pub mount_point: PathBuf,
    /// Image layers an overlay reads (ids in the image store), recorded
    /// in its ledger entry so that no layer in use is ever deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

impl StorageSpec {
    /// The device this storage waits for (see `StorageDriver::device`).
    pub fn device(&self) -> Option<Result<DeviceAddr, DeviceError>> {
        self.driver.handler().device(self)
    }

    /// The guest paths it exposes (see `StorageDriver::exposes`).
    pub fn exposes(&self) -> Vec<PathBuf> {
        self.driver.handler().exposes(self)
    }
}

/// The directories an overlay's options name (`lowerdir=a:b`,
/// `upperdir=`, `workdir=`): what it exposes, as a bind would.
pub fn overlay_dirs(options: &[String]) -> Vec<PathBuf> {
    options
        .iter()
        .flat_map(|o| o.split(','))
        .filter_map(|o| {
            ["lowerdir=", "upperdir=", "workdir="]
                .iter()
                .find_map(|k| o.strip_prefix(k))
        })
        .flat_map(|v| v.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Mounts `s` for `owner`, recording it in `ledger` first. `journal` is
/// called once the ledger holds the entry and before the mount call: the
/// intent is on disk before the mount exists.
pub fn mount_storage(
    ledger: &std::sync::Mutex<Ledger>,
    owner: &Owner,
    s: &StorageSpec,
    journal: &dyn Fn(),
) -> Result<(), MountError> {
    let record = Record {
        ledger,
        owner,
        target: &s.mount_point,
        journal,
    };
    s.driver.handler().mount(s, &record)
}

/// A mount(2) of `source` at `s.mount_point` with `s`'s options (and
/// `extra` flags), as the drivers that mount a filesystem make it; its
/// identity, for the ledger.
fn mount_fs(
    s: &StorageSpec,
    record: &Record<'_>,
    source: &str,
    fstype: &str,
    extra: sysmount::Flags,
) -> Result<(), MountError> {
    let o = mount_options::parse(&s.options);
    let data = (!o.data.is_empty()).then_some(o.data.as_str());
    let fs_arg = (fstype != "bind").then_some(fstype);
    record.mount(source, fstype, &s.layers, || {
        sysmount::mount(Some(Path::new(source)), &s.mount_point, fs_arg, o.flags | extra, data)
    })
}

/// Creates `p` and its missing ancestors; returns the ones it created,
/// deepest first.
pub fn make_dirs(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(p);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    fs::create_dir_all(p)?;
    Ok(missing)
}

/// Removes directories bosun created, deepest first, stopping at the first
/// one that is not empty (someone else's files stay) or still busy.
pub fn remove_created(dirs: &[PathBuf]) {
    for d in dirs {
        if fs::remove_dir(d).is_err() && d.exists() {
            return;
        }
    }
}

/// Remounts an ephemeral storage with its (new) options.
pub fn remount(s: &StorageSpec) -> Result<(), MountError> {
    let o = mount_options::parse(&s.options);
    let data = (!o.data.is_empty()).then_some(o.data.as_str());
    sysmount::mount(
        None,
        &s.mount_point,
        Some("tmpfs"),
        o.flags | sysmount::Flags::MS_REMOUNT,
        data,
    )
    .map_err(|errno| MountError {
        op: "remount",
        target: s.mount_point.clone(),
        from: None,
        errno,
    })
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_by_name_and_back() {
        for (i, d) in DRIVERS.iter().enumerate() {
            for n in d.names() {
                match Driver::parse(n) {
                    Ok(p) => assert_eq!(p.name(), d.names()[0], "test[{i}]: {n}"),
                    Err(e) => assert!(d.unsupported().is_some(), "test[{i}]: {n}: {e}"),
                }
            }
        }
        let json = serde_json::to_string(&Driver::parse("virtio-blk").unwrap()).unwrap();
        assert_eq!(json, "\"blk\"");
        let back: Driver = serde_json::from_str(&json).unwrap();
        assert!(back.is("blk"));
        let legacy: Driver = serde_json::from_str("\"WatchableBind\"").unwrap();
        assert!(legacy.is("watchable-bind"));
        assert!(matches!(Driver::parse("nfs"), Err(DriverError::Unknown { .. })));
        assert!(matches!(Driver::parse("blk-ccw"), Err(DriverError::Unsupported { .. })));
        let mut names = served_names();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "a name served by two drivers");
    }
}
