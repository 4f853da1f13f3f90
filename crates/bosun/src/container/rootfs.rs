//! Inside the container's new mount namespace: bind the rootfs, make the
//! spec's mounts inside it, add the default devices, pivot into it.
//!
//! These mounts live and die with the container's mount namespace; they
//! never appear in the agent's, so they are not in the mount ledger.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::init_config::{DeviceSpec, MountSpec};
use super::mount_options;
use crate::sys::mount::{self as sysmount, Flags};

/// Longest chain of symlinks followed while resolving one path, as the
/// kernel's own limit (MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;
/// Devices every container gets (OCI "default devices"), bound from the
/// agent's /dev.
const DEFAULT_DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Resolves `path` inside `root` as if `root` were `/`: symlinks are
/// followed but can never lead outside `root` (an absolute target restarts
/// at `root`, `..` stops at it). Missing components are taken literally.
pub fn secure_join(root: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_components(&mut pending, path, false);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(format!(
                        "too many symlinks resolving {} in {}",
                        path.display(),
                        root.display()
                    ));
                }
                let target = fs::read_link(&full).map_err(|e| format!("readlink {}: {e}", full.display()))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_components(&mut pending, &target, true);
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn push_components(q: &mut VecDeque<OsString>, p: &Path, front: bool) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    if front {
        for c in comps.into_iter().rev() {
            q.push_front(c);
        }
    } else {
        q.extend(comps);
    }
}

/// Sets up `root` as the new `/` of the current (new) mount namespace,
/// then hides `masked` paths and makes `readonly` ones read-only.
pub fn prepare(
    root: &Path,
    mounts: &[MountSpec],
    readonly: bool,
    masked: &[PathBuf],
    ro_paths: &[PathBuf],
    devices: &[DeviceSpec],
) -> Result<(), String> {
    sysmount::make_rprivate_root().map_err(|e| format!("make / private: {e}"))?;
    sysmount::mount(Some(root), root, None, Flags::MS_BIND | Flags::MS_REC, None)
        .map_err(|e| format!("bind rootfs {}: {e}", root.display()))?;
    let mut dev_is_tmpfs = false;
    for m in mounts {
        mount_one(root, m)?;
        dev_is_tmpfs |= m.destination == Path::new("/dev") && m.fstype == "tmpfs";
    }
    if dev_is_tmpfs {
        default_devices(root)?;
    }
    for d in devices {
        make_device(root, d)?;
    }
    pivot(root)?;
    for p in ro_paths {
        read_only(p)?;
    }
    for p in masked {
        mask(p)?;
    }
    if readonly {
        sysmount::mount(
            None,
            Path::new("/"),
            None,
            Flags::MS_REMOUNT | Flags::MS_BIND | Flags::MS_RDONLY,
            None,
        )
        .map_err(|e| format!("remount / read-only: {e}"))?;
    }
    Ok(())
}

/// Hides `p` (inside the new root): /dev/null over a file, an empty
/// read-only tmpfs over a directory. A missing path needs no hiding.
fn mask(p: &Path) -> Result<(), String> {
    let r = match std::fs::metadata(p) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => sysmount::mount(Some(Path::new("tmpfs")), p, Some("tmpfs"), Flags::MS_RDONLY, None),
        Ok(_) => sysmount::mount(Some(Path::new("/dev/null")), p, None, Flags::MS_BIND, None),
    };
    r.map_err(|e| format!("mask {}: {e}", p.display()))
}

/// Makes `p` (inside the new root) read-only; a missing path is skipped.
fn read_only(p: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    let err = |e| format!("read-only {}: {e}", p.display());
    sysmount::mount(Some(p), p, None, Flags::MS_BIND | Flags::MS_REC, None).map_err(err)?;
    sysmount::mount(
        None,
        p,
        None,
        Flags::MS_REMOUNT | Flags::MS_BIND | Flags::MS_RDONLY | Flags::MS_REC,
        None,
    )
    .map_err(err)
}

fn mount_one(root: &Path, m: &MountSpec) -> Result<(), String> {
    let dest = secure_join(root, &m.destination)?;
    let o = mount_options::parse(&m.options);
    let bind = o.bind || m.fstype == "bind";
    let err = |what: &str, e: nix::errno::Errno| format!("{what} {} on {}: {e}", m.source, m.destination.display());
    if bind {
        let src = Path::new(&m.source);
        make_target(&dest, src.is_file())?;
        let flags = Flags::MS_BIND | (o.flags & Flags::MS_REC);
        sysmount::mount(Some(src), &dest, None, flags, None).map_err(|e| err("bind", e))?;
        let extra = o.flags & !(Flags::MS_BIND | Flags::MS_REC);
        if !extra.is_empty() {
            sysmount::mount(None, &dest, None, Flags::MS_REMOUNT | Flags::MS_BIND | extra, None)
                .map_err(|e| err("remount", e))?;
        }
    } else if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        // The agent's cgroup view, read-only: mounting a fresh hierarchy
        // needs controller options the spec does not carry.
        make_target(&dest, false)?;
        let flags = Flags::MS_BIND | Flags::MS_REC;
        sysmount::mount(Some(Path::new("/sys/fs/cgroup")), &dest, None, flags, None)
            .map_err(|e| err("bind cgroup", e))?;
        sysmount::mount(
            None,
            &dest,
            None,
            Flags::MS_REMOUNT | Flags::MS_BIND | Flags::MS_RDONLY,
            None,
        )
        .map_err(|e| err("remount cgroup", e))?;
    } else {
        make_target(&dest, false)?;
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        sysmount::mount(Some(Path::new(&m.source)), &dest, Some(&m.fstype), o.flags, data)
            .map_err(|e| err("mount", e))?;
    }
    if !o.propagation.is_empty() {
        sysmount::mount(None, &dest, None, o.propagation, None).map_err(|e| err("propagation", e))?;
    }
    Ok(())
}

fn make_target(dest: &Path, file: bool) -> Result<(), String> {
    let r = if file {
        dest.parent()
            .map(fs::create_dir_all)
            .transpose()
            .and_then(|_| fs::OpenOptions::new().create(true).append(true).open(dest).map(|_| ()))
    } else {
        fs::create_dir_all(dest)
    };
    r.map_err(|e| format!("create mount point {}: {e}", dest.display()))
}

fn default_devices(root: &Path) -> Result<(), String> {
    let dev = root.join("dev");
    for d in DEFAULT_DEVICES {
        let host = Path::new("/dev").join(d);
        if !host.exists() {
            continue;
        }
        let target = dev.join(d);
        make_target(&target, true)?;
        sysmount::mount(Some(&host), &target, None, Flags::MS_BIND, None).map_err(|e| format!("bind /dev/{d}: {e}"))?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let p = dev.join(link);
        if fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(to, &p).map_err(|e| format!("symlink /dev/{link}: {e}"))?;
        }
    }
    Ok(())
}

/// Makes one Linux.Devices node (resolved inside the rootfs), replacing
/// what the image or the default devices put there, as runc does.
fn make_device(root: &Path, d: &DeviceSpec) -> Result<(), String> {
    let target = secure_join(root, &d.path)?;
    let err = |what: &str, e: String| format!("device {}: {what}: {e}", d.path.display());
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| err("mkdir", e.to_string()))?;
    }
    if fs::symlink_metadata(&target).is_ok() {
        // A default device is a bind mount: detach it first.
        let _ = sysmount::umount_detach(&target);
        fs::remove_file(&target).map_err(|e| err("replace", e.to_string()))?;
    }
    sysmount::mknod(&target, d.kind, d.major, d.minor, d.mode).map_err(|e| err("mknod", e.to_string()))?;
    // mknod's mode is filtered by the umask: set it exactly.
    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(d.mode))
        .map_err(|e| err("chmod", e.to_string()))?;
    std::os::unix::fs::chown(&target, Some(d.uid), Some(d.gid)).map_err(|e| err("chown", e.to_string()))
}

/// pivot_root into `root`; on the initramfs (where pivot_root is refused
/// with EINVAL) move the rootfs over `/` and chroot instead.
fn pivot(root: &Path) -> Result<(), String> {
    std::env::set_current_dir(root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    let dot = Path::new(".");
    match sysmount::pivot_root(dot, dot) {
        Ok(()) => {
            sysmount::umount_detach(dot).map_err(|e| format!("detach old root: {e}"))?;
        }
        Err(nix::errno::Errno::EINVAL) => {
            sysmount::mount(Some(dot), Path::new("/"), None, Flags::MS_MOVE, None)
                .map_err(|e| format!("move rootfs to /: {e}"))?;
            sysmount::chroot(dot).map_err(|e| format!("chroot: {e}"))?;
        }
        Err(e) => return Err(format!("pivot_root {}: {e}", root.display())),
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        let cases = [
            ("/etc/hosts", Some("etc/hosts")),
            ("/abs/passwd", Some("etc/passwd")),
            ("/etc/up/shadow", Some("etc/shadow")),
            ("/../../etc/x", Some("etc/x")),
            ("/new/dir", Some("new/dir")),
            ("/loop1", None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let got = secure_join(root, Path::new(p));
            match want {
                Some(w) => assert_eq!(got.unwrap(), root.join(w), "test[{i}]: {p}"),
                None => assert!(got.is_err(), "test[{i}]: {p} should fail"),
            }
        }
    }
}
