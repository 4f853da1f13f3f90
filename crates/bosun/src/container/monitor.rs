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

use crate::process::monitor::{EXIT_FD, KEEP_STDIN_FD, STATUS_FD};
use crate::sys::fd;
use crate::sys::process as sysproc;

/// Monitors `child` until the agent ends this process; returns only if
/// it cannot block the signals it waits for.
pub fn run(child: i32) -> i32 {
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
