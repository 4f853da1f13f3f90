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
use super::mountinfo::MountId;
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
    let record = Record {
        ledger,
        owner,
        target: &s.mount_point,
        journal,
    };
    if s.driver == Driver::Local {
        let mode = s
            .options
            .iter()
            .find_map(|o| o.strip_prefix("mode="))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o777);
        return record.run(Kind::Dir, "", "local", &[], |_| {
            fs::set_permissions(&s.mount_point, fs::Permissions::from_mode(mode))
                .map(|_| None)
                .map_err(|e| err("chmod", io_errno(&e)))
        });
    }
    // A watchable source within the caps is copied; past them, bound.
    let fits = s.driver == Driver::WatchableBind
        && super::watch::fits(Path::new(&s.source)).map_err(|e| err("copy", watch_errno(&e)))?;
    if fits {
        return record.run(Kind::Dir, &s.source, "watchable", &[], |created| {
            super::watch::sync(Path::new(&s.source), &s.mount_point)
                .map(|_| None)
                .map_err(|e| {
                    // Only a copy bosun made the directory for is removed whole.
                    if created.iter().any(|d| d == &s.mount_point) {
                        let _ = super::fsutil::remove_dir_same_fs(&s.mount_point);
                    }
                    err("copy", watch_errno(&e))
                })
        });
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
    let data = (!o.data.is_empty()).then_some(o.data.as_str());
    let fs_arg = (fstype != "bind").then_some(fstype.as_str());
    record.run(Kind::Mount, &source, &fstype, &s.layers, |_| {
        sysmount::mount(Some(Path::new(&source)), &s.mount_point, fs_arg, flags, data).map_err(|e| err("mount", e))?;
        // What identifies this mount from now on; unreadable, teardown
        // falls back to the type check (see `Entry::whose`).
        Ok(super::mountinfo::identity_at(&s.mount_point).ok().flatten())
    })
}

/// The ledger's sequence for one storage, written once: record the intent,
/// create the missing directories, note what was on top at the target,
/// journal, act, then mark it done, or forget it and remove what it
/// created.
struct Record<'a> {
    ledger: &'a std::sync::Mutex<Ledger>,
    owner: &'a Owner,
    target: &'a Path,
    journal: &'a dyn Fn(),
}

impl Record<'_> {
    fn run(
        &self,
        kind: Kind,
        source: &str,
        fstype: &str,
        layers: &[String],
        act: impl FnOnce(&[PathBuf]) -> Result<Option<MountId>, MountError>,
    ) -> Result<(), MountError> {
        let ledger = || crate::sync::lock(self.ledger);
        let seq = ledger().intend(self.owner.clone(), kind, source, self.target, fstype);
        ledger().set_layers(seq, layers.to_vec());
        let undo = |created: &[PathBuf]| {
            ledger().remove(seq);
            remove_created(created);
        };
        let err = |op, e: &std::io::Error| MountError {
            op,
            target: self.target.to_path_buf(),
            from: Some(source.to_string()),
            errno: io_errno(e),
        };
        let created = make_dirs(self.target).map_err(|e| {
            undo(&[]);
            err("mkdir", &e)
        })?;
        ledger().set_created_dirs(seq, created.clone());
        if kind == Kind::Mount {
            let covered = super::mountinfo::identity_at(self.target).map_err(|e| {
                undo(&created);
                err("read mountinfo", &e)
            })?;
            ledger().set_covered(seq, covered);
        }
        (self.journal)();
        crate::faults::crash_point("storage-before-mount");
        match act(&created) {
            Ok(ident) => {
                ledger().mark_mounted(seq, ident);
                Ok(())
            }
            Err(e) => {
                undo(&created);
                Err(e)
            }
        }
    }
}

fn watch_errno(e: &super::watch::WatchError) -> Errno {
    match e {
        super::watch::WatchError::Io { source, .. } => io_errno(source),
        super::watch::WatchError::TooLarge { .. } => Errno::EFBIG,
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
