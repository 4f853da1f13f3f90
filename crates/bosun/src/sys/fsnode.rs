//! File metadata calls that never follow a final symlink: owner, times,
//! extended attributes (for unpacking image layers exactly).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// lchown(2).
pub fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), Errno> {
    nix::unistd::fchownat(
        None,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// Sets atime and mtime (seconds) of `path` itself, not of a link's target.
pub fn set_mtime_nofollow(path: &Path, secs: i64) -> Result<(), Errno> {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(None, path, &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink)
}

/// lsetxattr(2).
pub fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> Result<(), Errno> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: both strings are NUL-terminated and live across the call;
    // value is a valid slice of value.len() bytes.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// lgetxattr(2) into a small buffer (for overlay's markers); `None` if unset.
pub fn lgetxattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>, Errno> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let n = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0u8; 256];
    // SAFETY: strings NUL-terminated; buf is writable for buf.len() bytes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r >= 0 {
        buf.truncate(r as usize);
        return Ok(Some(buf));
    }
    match Errno::last() {
        Errno::ENODATA => Ok(None),
        e => Err(e),
    }
}

/// Free bytes for unprivileged writers on the filesystem holding `path`.
pub fn bytes_available(path: &Path) -> Result<u64, Errno> {
    let s = nix::sys::statvfs::statvfs(path)?;
    Ok(s.blocks_available().saturating_mul(s.fragment_size()))
}
