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
