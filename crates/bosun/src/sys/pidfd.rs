//! Process file descriptors: a handle on one process that a reused pid can
//! never redirect, used to signal a container's monitor and to take back
//! the descriptors it keeps for the agent after a restart.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// pidfd_open(2) on `pid`.
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments; on success it returns
    // a new descriptor nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// pidfd_send_signal(2): `sig` to the process `pidfd` names, and only to it.
pub fn send_signal(pidfd: &OwnedFd, sig: nix::sys::signal::Signal) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number and no siginfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// pidfd_getfd(2): a close-on-exec copy of descriptor `fd` of the process
/// `pidfd` names (Linux 5.6; needs ptrace rights over it, as root has).
pub fn get_fd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: a valid pidfd and a descriptor number; on success the result
    // is a new descriptor of ours nothing else owns.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Waits until the process `pidfd` names has exited, whoever its parent is
/// and whether or not it has been reaped yet: a pidfd polls readable from
/// the process's exit on (Linux 5.3), so no pid is polled in /proc.
pub async fn exited(pidfd: &OwnedFd) -> io::Result<()> {
    let fd = crate::sys::fd::async_fd(pidfd.try_clone()?)?;
    fd.readable().await?.retain_ready();
    Ok(())
}

/// Whether the process `pidfd` names has exited and waits, a zombie, for
/// this process to reap it (waitid(P_PIDFD) with WNOWAIT: it stays there).
pub fn is_unreaped_child(pidfd: &OwnedFd) -> bool {
    const P_PIDFD: libc::idtype_t = 3; // include/uapi/linux/wait.h
                                       // SAFETY: a zeroed siginfo_t is valid; the kernel fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
    // SAFETY: a valid pidfd and a siginfo_t of ours, written during the call.
    let r = unsafe { libc::waitid(P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) };
    // SAFETY: si_pid is set (0 when no child has exited) after a success.
    r == 0 && unsafe { info.si_pid() } != 0
}
