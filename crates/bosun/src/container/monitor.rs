//! The monitor: what the `bosun init` helper becomes once it has forked
//! the container's process. It stays that process's parent, outside the
//! container's namespaces and cgroup, so that the process's exit status
//! and output outlive the agent (conmon's way, without its I/O copying):
//! - it keeps a copy of the agent's end of each of the process's stdio
//!   pipes (or its terminal's master), so that while the agent is down
//!   the process does not see EOF on stdin or EPIPE on output, and what it
//!   writes waits in the pipe for the agent after its restart, which takes
//!   the copies back with pidfd_getfd(2);
//! - it reaps the process and writes its status to the exit file (fd 8),
//!   then to the exit pipe (fd 9) for an agent that is up;
//! - it closes its stdin copy on SIGUSR1 (the agent's CloseStdin), and
//!   stays until the agent ends it (SIGKILL) once nothing is left to keep.
//!
//! It holds no lock, reads no pipe and allocates nothing after its start:
//! it sleeps in sigwait.

use std::io::Write;
use std::os::unix::fs::FileExt;

use nix::sys::signal::Signal;

use crate::sys::fd;
use crate::sys::process as sysproc;

/// The agent's end of the process's stdin (or its terminal's master).
pub const KEEP_STDIN_FD: i32 = 5;
/// The agent's end of its stdout.
pub const KEEP_STDOUT_FD: i32 = 6;
/// The agent's end of its stderr.
pub const KEEP_STDERR_FD: i32 = 7;
/// The exit file: the status as one line, `<code>\n` (128 + signal for a
/// signal death, as WaitProcess reports it).
pub const STATUS_FD: i32 = 8;
/// The exit pipe: the same line, for an agent that is up.
pub const EXIT_FD: i32 = 9;
/// Every fd the monitor keeps (the child closes them).
pub const KEPT_FDS: std::ops::RangeInclusive<i32> = KEEP_STDIN_FD..=EXIT_FD;

/// Monitors `child` until the agent ends this process; returns only if
/// it cannot block the signals it waits for.
pub fn run(child: i32) -> i32 {
    fd::close_number(super::init::GATE_FD);
    // Our 0-2 are the child's ends of its stdio: keeping them would keep
    // its output from ever reaching EOF.
    let _ = fd::null_stdio();
    let _ = sysproc::ignore_sigpipe();
    let Ok(signals) = sysproc::block_signals(&[Signal::SIGCHLD, Signal::SIGUSR1]) else {
        return 1;
    };
    let status = loop {
        // Checked before each wait: a SIGCHLD that came before the signals
        // were blocked was not queued.
        match sysproc::try_wait_child(child) {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(_) => return 1, // not our child: cannot happen
        }
        if let Ok(Signal::SIGUSR1) = signals.wait() {
            fd::close_number(KEEP_STDIN_FD);
        }
    };
    record(status);
    loop {
        if let Ok(Signal::SIGUSR1) = signals.wait() {
            fd::close_number(KEEP_STDIN_FD);
        }
    }
}

/// The exit file first, then the pipe: an agent that opens the pipe and
/// then reads the file misses neither.
fn record(status: i32) {
    let line = format!("{status}\n");
    let file = fd::take(STATUS_FD);
    let _ = file.write_all_at(line.as_bytes(), 0);
    let _ = file.sync_data();
    drop(file);
    let mut pipe = fd::take(EXIT_FD);
    let _ = pipe.write_all(line.as_bytes()); // EPIPE: no agent is up
}

/// Parses an exit file or exit-pipe line; `None` for an incomplete one.
pub fn parse_status(bytes: &[u8]) -> Option<i32> {
    let s = std::str::from_utf8(bytes).ok()?;
    s.strip_suffix('\n')?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn status_lines() {
        assert_eq!(super::parse_status(b"137\n"), Some(137));
        assert_eq!(super::parse_status(b"0\n"), Some(0));
        assert_eq!(super::parse_status(b"13"), None, "no newline: not written yet");
        assert_eq!(super::parse_status(b""), None);
        assert_eq!(super::parse_status(b"x\n"), None);
    }
}
