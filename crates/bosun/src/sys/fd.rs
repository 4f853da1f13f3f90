//! File descriptors handed from the agent to its helper, and pipes.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Takes ownership of an inherited descriptor. Only for the fixed fds the
/// agent passes to `bosun init` (3 and 4), each taken once.
pub fn take(fd: i32) -> File {
    // SAFETY: the agent opened `fd` for this process and nothing else in the
    // helper owns it; it is taken exactly once, at a fixed number.
    unsafe { File::from_raw_fd(fd) }
}

/// An open /dev/null, or, failing that, a closed pipe end.
pub fn dev_null() -> File {
    File::options().write(true).open("/dev/null").unwrap_or_else(|_| {
        let (r, _w) = pipe().expect("pipe");
        File::from(r)
    })
}

/// Sets FD_CLOEXEC so that a successful exec closes `fd`.
pub fn set_cloexec(fd: i32) -> Result<(), Errno> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(|_| ())
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

/// An exclusive, non-blocking flock(2) on `file`, held until the returned
/// guard is dropped (or the process exits).
pub fn lock_exclusive(file: std::fs::File) -> Result<nix::fcntl::Flock<std::fs::File>, Errno> {
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)
}
