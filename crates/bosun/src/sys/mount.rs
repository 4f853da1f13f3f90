//! mount(2) and umount(2), with the errno kept so callers can decide what
//! it means (EINVAL/ENOENT on umount: already done; EBUSY: retry).

use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

pub use nix::mount::MsFlags as Flags;

/// mount(2).
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(source, target, fstype, flags, data)
}

/// mknod(2) of a character (`c`, `u`), block (`b`) or FIFO (`p`) node.
pub fn mknod(path: &Path, kind: char, major: u64, minor: u64, perm: u32) -> Result<(), Errno> {
    use nix::sys::stat::{makedev, Mode, SFlag};
    let t = match kind {
        'c' | 'u' => SFlag::S_IFCHR,
        'b' => SFlag::S_IFBLK,
        'p' => SFlag::S_IFIFO,
        _ => return Err(Errno::EINVAL),
    };
    nix::sys::stat::mknod(path, t, Mode::from_bits_truncate(perm), makedev(major, minor))
}

/// Copies the mount tree at `src_path` of the mount namespace `src_ns`
/// to `dst_path` (created) of `dst_ns`: setns, open_tree(OPEN_TREE_CLONE |
/// AT_RECURSIVE), setns, move_mount. For a single-threaded helper only
/// (setns of a mount namespace needs a process that shares nothing).
pub fn clone_tree_between(
    src_ns: &std::fs::File,
    src_path: &Path,
    dst_ns: &std::fs::File,
    dst_path: &Path,
) -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let cstr = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{}: NUL", p.display()));
    let (src, dst) = (cstr(src_path)?, cstr(dst_path)?);
    nix::sched::setns(src_ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("join source mount namespace: {e}"))?;
    let flags = OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: `src` is a valid NUL-terminated path for the duration of the
    // call; open_tree only reads it and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, src.as_ptr(), flags) };
    if fd < 0 {
        return Err(format!("open_tree {}: {}", src_path.display(), Errno::last()));
    }
    // SAFETY: open_tree returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    nix::sched::setns(dst_ns, nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("join destination mount namespace: {e}"))?;
    std::fs::create_dir_all(dst_path).map_err(|e| format!("mkdir {}: {e}", dst_path.display()))?;
    let empty = std::ffi::CString::default();
    // SAFETY: `tree` is a live detached mount fd, both strings are valid
    // NUL-terminated buffers for the call; move_mount only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(format!("move_mount to {}: {}", dst_path.display(), Errno::last()));
    }
    Ok(())
}

/// umount2(2) without flags.
pub fn umount(target: &Path) -> Result<(), Errno> {
    nix::mount::umount2(target, MntFlags::empty())
}

/// umount2(2) with MNT_DETACH: the mount leaves the tree now and goes away
/// when its last user does.
pub fn umount_detach(target: &Path) -> Result<(), Errno> {
    nix::mount::umount2(target, MntFlags::MNT_DETACH)
}

/// Makes every mount under `/` private to the current mount namespace, so
/// nothing mounted afterwards propagates back to the parent namespace.
pub fn make_rprivate_root() -> Result<(), Errno> {
    mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
}

/// pivot_root(2) into `new_root`, with the old root put at `put_old`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> Result<(), Errno> {
    nix::unistd::pivot_root(new_root, put_old)
}

/// chroot(2); used where pivot_root is impossible (a rootfs on the initramfs).
pub fn chroot(dir: &Path) -> Result<(), Errno> {
    nix::unistd::chroot(dir)
}
