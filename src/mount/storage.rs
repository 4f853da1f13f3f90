//! Storage drivers: how a Kata `Storage` becomes a mount in the guest.
//!
//! | driver | what bosun does |
//! |---|---|
//! | `local` | creates `mount_point` (mode from a `mode=` option), no mount |
//! | `ephemeral` | tmpfs at `mount_point` |
//! | `bind` | bind-mounts the guest path `source` at `mount_point` |
//! | `blk`, `virtio-blk` | the virtio-blk disk at PCI path `source` (`02/00`), waited for, mounted with `fstype` and `options`; a `/dev` node `source` (bosun's own, not Kata's) is mounted as it is |
//! | `scsi` | the disk at SCSI address `source` (`TARGET:LUN`) of the virtio-scsi controller, waited for; or a `/dev` node as it is |
//! | `mmioblk`, `nvdimm` | the node `source` (`/dev/vdc`, `/dev/pmem0`), waited for; `dax` passes through to the filesystem |
//! | `overlayfs` | overlay at `mount_point`; `options` carry lowerdir/upperdir/workdir |
//! | `virtio-fs`, `9p` | mounts `source` with `fstype` (the host share) |
//! | `watchable-bind` | `source` copied into the tmpfs at `mount_point` (under `watch::WATCH_ROOT`) and kept in step every 2 s; past 16 entries or 1 MiB, bind-mounted instead |
//! | `image_guest_pull` | the sandbox container's `pause`: nothing to pull (the pod VM's pause bundle or the built-in pause runs); a workload image: pulled into the image store and mounted as an overlay of its layers (see `crate::image`) |

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use super::ledger::{Kind, Ledger, Owner};
use super::MountError;
use crate::container::mount_options;
use crate::error::AgentError;
use crate::sys::mount as sysmount;

/// A storage driver bosun knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Driver {
    /// A directory.
    Local,
    /// tmpfs.
    Ephemeral,
    /// A bind mount of a guest path.
    Bind,
    /// A block device: a PCI path or a node (blk, virtio-blk).
    Block,
    /// A disk on the virtio-scsi controller, by SCSI address.
    Scsi,
    /// A node the runtime names and the kernel brings up (mmioblk, nvdimm).
    Node,
    /// A copy of a source kept in step by polling (watchable-bind).
    WatchableBind,
    /// Overlay of layers.
    Overlay,
    /// A shared filesystem from the host (virtio-fs, 9p).
    Shared,
    /// An image the guest pulls itself (remote-hypervisor mode); the
    /// sandbox decides what it means before anything is mounted.
    GuestPull,
}

impl Driver {
    /// Parses a Kata driver name.
    pub fn parse(s: &str) -> Result<Self, AgentError> {
        Ok(match s {
            "local" => Self::Local,
            "ephemeral" => Self::Ephemeral,
            "bind" => Self::Bind,
            "blk" | "virtio-blk" => Self::Block,
            "mmioblk" | "nvdimm" => Self::Node,
            "watchable-bind" => Self::WatchableBind,
            // s390x channel I/O: no such bus in an x86 or arm guest.
            "blk-ccw" => return Err(AgentError::Unimplemented("the blk-ccw storage driver (s390x channel I/O)")),
            "scsi" => Self::Scsi,
            "overlayfs" => Self::Overlay,
            "virtio-fs" | "9p" => Self::Shared,
            "image_guest_pull" => Self::GuestPull,
            other => {
                return Err(AgentError::invalid(
                    "storage.driver",
                    format!(
                    "{other:?} is not one of local, ephemeral, bind, watchable-bind, blk, virtio-blk, mmioblk, nvdimm, scsi, overlayfs, virtio-fs, 9p, image_guest_pull"
                ),
                ))
            }
        })
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
    /// The device a block storage names to be waited for (a bus address,
    /// or the node of mmioblk/nvdimm); `None` for the other drivers and for
    /// a `/dev` node given to blk or scsi, which is mounted as it is.
    pub fn device(&self) -> Option<Result<crate::device::DeviceAddr, crate::device::DeviceError>> {
        let driver = match self.driver {
            Driver::Block if !self.source.starts_with("/dev/") => "blk",
            Driver::Scsi if !self.source.starts_with("/dev/") => "scsi",
            Driver::Node => "mmioblk",
            _ => return None,
        };
        Some(crate::device::DeviceAddr::parse(driver, &self.source))
    }
}

/// Checks a guest path from a request: absolute, no `..`, not `/`.
pub fn check_guest_path(field: &'static str, p: &str) -> Result<PathBuf, AgentError> {
    let path = PathBuf::from(p);
    if !path.is_absolute()
        || path.components().any(|c| c == Component::ParentDir)
        || path == Path::new("/")
        || p.contains('\0')
    {
        return Err(AgentError::invalid(
            field,
            format!("{p:?} must be an absolute path without '..', other than /"),
        ));
    }
    Ok(path)
}

/// Mounts `s` for `owner`, recording it in `ledger` first.
/// `journal` is called once the ledger holds the entry and before the
/// mount call: the intent is on disk before the mount exists.
pub fn mount_storage(
    ledger: &std::sync::Mutex<Ledger>,
    owner: &Owner,
    s: &StorageSpec,
    journal: &dyn Fn(),
) -> Result<(), MountError> {
    let err = |op, errno| MountError {
        op,
        target: s.mount_point.clone(),
        from: Some(s.source.clone()),
        errno,
    };
    let o = mount_options::parse(&s.options);
    if s.driver == Driver::Local {
        let seq = ledger
            .lock()
            .expect("ledger lock")
            .intend(owner.clone(), Kind::Dir, "", &s.mount_point, "local");
        let created = make_dirs(&s.mount_point).map_err(|e| err("mkdir", io_errno(&e)))?;
        ledger.lock().expect("ledger lock").set_created_dirs(seq, created);
        journal();
        let mode = s
            .options
            .iter()
            .find_map(|o| o.strip_prefix("mode="))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o777);
        fs::set_permissions(&s.mount_point, fs::Permissions::from_mode(mode))
            .map_err(|e| err("chmod", io_errno(&e)))?;
        ledger.lock().expect("ledger lock").mark_mounted(seq);
        return Ok(());
    }
    if s.driver == Driver::WatchableBind && copy_watched(ledger, owner, s, journal)? {
        return Ok(());
    }
    let (source, fstype, flags) = match s.driver {
        Driver::Ephemeral => ("tmpfs".to_string(), "tmpfs".to_string(), o.flags),
        Driver::Bind | Driver::WatchableBind => (
            s.source.clone(),
            "bind".to_string(),
            o.flags | sysmount::Flags::MS_BIND | sysmount::Flags::MS_REC,
        ),
        Driver::Overlay => ("overlay".to_string(), "overlay".to_string(), o.flags),
        Driver::Block | Driver::Scsi | Driver::Node | Driver::Shared => (s.source.clone(), s.fstype.clone(), o.flags),
        Driver::Local => unreachable!("handled above"),
        // Resolved by the sandbox before mounting (see Sandbox::create).
        Driver::GuestPull => return Err(err("image_guest_pull", Errno::ENOTSUP)),
    };
    let seq = ledger
        .lock()
        .expect("ledger lock")
        .intend(owner.clone(), Kind::Mount, &source, &s.mount_point, &fstype);
    if !s.layers.is_empty() {
        ledger.lock().expect("ledger lock").set_layers(seq, s.layers.clone());
    }
    let created = match make_dirs(&s.mount_point) {
        Ok(c) => c,
        Err(e) => {
            ledger.lock().expect("ledger lock").remove(seq);
            return Err(err("mkdir", io_errno(&e)));
        }
    };
    ledger
        .lock()
        .expect("ledger lock")
        .set_created_dirs(seq, created.clone());
    journal();
    let data = (!o.data.is_empty()).then_some(o.data.as_str());
    let fs_arg = (fstype != "bind").then_some(fstype.as_str());
    match sysmount::mount(Some(Path::new(&source)), &s.mount_point, fs_arg, flags, data) {
        Ok(()) => {
            ledger.lock().expect("ledger lock").mark_mounted(seq);
            Ok(())
        }
        Err(e) => {
            ledger.lock().expect("ledger lock").remove(seq);
            remove_created(&created);
            Err(err("mount", e))
        }
    }
}

/// A watchable-bind storage as a copy (a ledger directory entry, removed
/// whole at teardown); false when the source is past the caps and must be
/// bound instead.
fn copy_watched(
    ledger: &std::sync::Mutex<Ledger>,
    owner: &Owner,
    s: &StorageSpec,
    journal: &dyn Fn(),
) -> Result<bool, MountError> {
    let err = |op, errno| MountError {
        op,
        target: s.mount_point.clone(),
        from: Some(s.source.clone()),
        errno,
    };
    let seq =
        ledger
            .lock()
            .expect("ledger lock")
            .intend(owner.clone(), Kind::Dir, &s.source, &s.mount_point, "watchable");
    let created = make_dirs(&s.mount_point).map_err(|e| err("mkdir", io_errno(&e)))?;
    ledger
        .lock()
        .expect("ledger lock")
        .set_created_dirs(seq, created.clone());
    journal();
    match super::watch::sync(Path::new(&s.source), &s.mount_point) {
        Ok(_) => {
            ledger.lock().expect("ledger lock").mark_mounted(seq);
            Ok(true)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&s.mount_point);
            ledger.lock().expect("ledger lock").remove(seq);
            remove_created(&created);
            match e {
                super::watch::WatchError::TooLarge { .. } => Ok(false),
                super::watch::WatchError::Io { source, .. } => Err(err("copy", io_errno(&source))),
            }
        }
    }
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
