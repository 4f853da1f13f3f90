//! File descriptors handed from the agent to its helper, and pipes.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};

/// Takes ownership of an inherited descriptor. Only for the fixed fds the
/// agent passes to `bosun init` (3 to 9), each taken once.
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

/// Closes descriptor number `fd` if it is open (a helper's fixed fds).
pub fn close_number(fd: i32) {
    let _ = nix::unistd::close(fd);
}

/// Closes every descriptor from `low` up (close_range, Linux 5.9; else
/// the ones /proc/self/fd lists).
pub fn close_from(low: i32) {
    // SAFETY: a plain syscall with integer arguments.
    if unsafe { libc::syscall(libc::SYS_close_range, low as u32, u32::MAX, 0u32) } == 0 {
        return;
    }
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|fd| *fd >= low) {
        let _ = nix::unistd::close(fd);
    }
}

/// Points fds 0, 1 and 2 at /dev/null (a monitor letting go of its child's
/// ends of the stdio pipes, so the child's exit brings their EOF).
pub fn null_stdio() -> Result<(), Errno> {
    let null = nix::fcntl::open(
        "/dev/null",
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    for fd in 0..3 {
        nix::unistd::dup2(null, fd)?;
    }
    close_number(null);
    Ok(())
}

/// Sets a pipe's capacity (F_SETPIPE_SZ); returns the capacity it got
/// (the kernel rounds up to a power-of-two number of pages).
pub fn set_pipe_size(fd: &OwnedFd, bytes: usize) -> Result<usize, Errno> {
    use std::os::fd::AsRawFd;
    let bytes = i32::try_from(bytes).map_err(|_| Errno::EINVAL)?;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(bytes)).map(|n| n as usize)
}

/// Opens another end of a pipe another process holds, through
/// `/proc/PID/fd/N` (a pipe opened there is the same pipe, in the mode
/// asked): read side, non-blocking, close-on-exec.
pub fn open_pipe_reader(pid: i32, fd: i32) -> Result<OwnedFd, Errno> {
    let raw = nix::fcntl::open(
        format!("/proc/{pid}/fd/{fd}").as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: open returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sets O_NONBLOCK (a descriptor polled by tokio).
pub fn set_nonblocking(fd: &OwnedFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// Registers `fd` (set non-blocking) with tokio's poller.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    set_nonblocking(&fd).map_err(std::io::Error::from)?;
    // SAFETY: the AsyncFd owns `fd` (an OwnedFd nothing else closes), and
    // deregisters it before it is closed, on drop.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
}
