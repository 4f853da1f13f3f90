//! Pseudo-terminals for `Process.Terminal`: open a pair, make the slave the
//! controlling terminal of a new session, resize.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::pty::Winsize;

/// A new master/slave pair of size `rows` × `cols`.
pub fn open(rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd), Errno> {
    let ws = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let p = nix::pty::openpty(Some(&ws), None)?;
    crate::sys::fd::set_cloexec(p.master.as_raw_fd())?;
    crate::sys::fd::set_cloexec(p.slave.as_raw_fd())?;
    Ok((p.master, p.slave))
}

/// Sets the window size of the terminal behind `master`.
pub fn resize(master: &impl AsRawFd, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which points
    // to a live local for the duration of the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(r).map(|_| ())
}

/// In the container process: a new session whose controlling terminal is
/// stdin (the slave the agent passed as fds 0, 1 and 2).
pub fn make_controlling() -> Result<(), Errno> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    let r = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    Errno::result(r).map(|_| ())
}
