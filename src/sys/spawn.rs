//! Starting bosun's own helper (`bosun init`) with fixed descriptors.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg};

/// Descriptors the helper gets: stdio, and fds 3 (gate) and 4 (report).
pub struct HelperFds {
    /// Becomes fd 0.
    pub stdin: OwnedFd,
    /// Becomes fd 1.
    pub stdout: OwnedFd,
    /// Becomes fd 2.
    pub stderr: OwnedFd,
    /// Becomes fd 3 (start gate), when the helper waits for StartContainer.
    pub gate: Option<OwnedFd>,
    /// Becomes fd 4 (report pipe).
    pub report: OwnedFd,
}

/// Lowest number the gate and report fds are moved to before the fork, so
/// that the dup2 calls in the child can never overwrite one another.
const HIGH_FD: i32 = 10;

/// Starts `/proc/self/exe init CONFIG`; returns the helper's pid.
pub fn spawn_helper(config: &Path, fds: HelperFds) -> io::Result<u32> {
    let report = fcntl(fds.report.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD))?;
    let gate = match &fds.gate {
        Some(g) => Some(fcntl(g.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD))?),
        None => None,
    };
    let mut cmd = Command::new("/proc/self/exe");
    // argv[0] "bosun-init" names the helper (and the built-in pause it may
    // become) in `ps` inside the pod.
    cmd.arg0("bosun-init")
        .arg("init")
        .arg(config)
        .env_clear()
        .stdin(Stdio::from(fds.stdin))
        .stdout(Stdio::from(fds.stdout))
        .stderr(Stdio::from(fds.stderr));
    // SAFETY: the closure runs between fork and exec and calls only dup2,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(g) = gate {
                if libc::dup2(g, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::dup2(report, 4) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = cmd.spawn().map(|c| c.id());
    // SAFETY: both numbers were returned by F_DUPFD_CLOEXEC above and are
    // owned by nothing else; the parent closes its copies here.
    unsafe {
        libc::close(report);
        if let Some(g) = gate {
            libc::close(g);
        }
    }
    r
}
