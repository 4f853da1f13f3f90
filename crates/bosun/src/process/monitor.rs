//! The agent's handle on a process's monitor (`container::monitor`): the
//! helper that stays the process's parent, keeps the agent's ends of its
//! stdio and records its exit status in the exit file.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::sys::{fd, pidfd};

// The monitor's fds (`container::monitor`, which the helper becomes).
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
/// Every fd the monitor keeps (close-on-exec in the child).
pub const KEPT_FDS: std::ops::RangeInclusive<i32> = KEEP_STDIN_FD..=EXIT_FD;

/// One monitor, named by pid and start time, and pinned by a pidfd so
/// that a signal never reaches a process that reused its pid.
pub struct Monitor {
    /// Its pid.
    pub pid: i32,
    /// Its start time (`process::start_time`).
    pub start_time: u64,
    pidfd: Option<OwnedFd>,
}

impl Monitor {
    /// A monitor the agent has just started (its child, so not reaped
    /// before the reaper sees it exit), with a pidfd on it if one came
    /// with it.
    pub fn attach(pid: i32, pidfd: Option<OwnedFd>) -> Self {
        Self {
            pid,
            start_time: super::start_time(pid).unwrap_or(0),
            pidfd: pidfd.or_else(|| pidfd::open(pid).ok()),
        }
    }

    /// Sends `sig` to it (nothing if it has ended).
    pub fn signal(&self, sig: Signal) {
        if let Some(p) = &self.pidfd {
            let _ = pidfd::send_signal(p, sig);
        }
    }

    /// Ends it: what it kept is the agent's now, or nobody's.
    pub fn release(&self) {
        self.signal(Signal::SIGKILL);
    }
}

/// What a monitor found after a restart still keeps.
pub struct Kept {
    /// The monitor.
    pub monitor: Monitor,
    /// The agent's end of stdin, or the terminal's master.
    pub stdin: Option<OwnedFd>,
    /// The agent's end of stdout.
    pub stdout: Option<OwnedFd>,
    /// The agent's end of stderr.
    pub stderr: Option<OwnedFd>,
    /// A read end of its exit pipe (none once it has written the status).
    pub exit: Option<OwnedFd>,
}

/// After a restart: the monitor `pid` started at `start_time`, if it
/// still runs, with copies of what it keeps (pidfd_getfd). The exit pipe
/// is opened before the caller reads the exit file (see `record` in
/// `container::monitor`).
pub fn reattach(pid: i32, start_time: u64) -> Option<Kept> {
    if pid <= 0 || !super::still_runs(pid, start_time) {
        return None;
    }
    let pidfd = pidfd::open(pid).ok()?;
    // Checked again with the pidfd held: it names the process checked.
    if !super::still_runs(pid, start_time) {
        return None;
    }
    let exit = fd::open_pipe_reader(pid, EXIT_FD).ok();
    let take = |n: i32| pidfd::get_fd(&pidfd, n).ok();
    Some(Kept {
        stdin: take(KEEP_STDIN_FD),
        stdout: take(KEEP_STDOUT_FD),
        stderr: take(KEEP_STDERR_FD),
        exit,
        monitor: Monitor {
            pid,
            start_time,
            pidfd: Some(pidfd),
        },
    })
}

/// Where the monitor of process `exec_id` writes its status, in its
/// container's run directory.
pub fn exit_file(dir: &Path, exec_id: &str) -> PathBuf {
    dir.join(format!("exit-{exec_id}"))
}

/// The status in an exit file, once complete.
pub fn read_exit_file(path: &Path) -> Option<i32> {
    parse_status(&std::fs::read(path).ok()?)
}

/// Monitors running from a config under `dir` (argv `bosun-init init
/// DIR/...`): bosun's by construction, as `dir` is in its locked run
/// directory. With the config path.
pub fn monitors_under(dir: &Path) -> Vec<(i32, PathBuf)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let config = monitor_config(pid)?;
            config.starts_with(dir).then_some((pid, config))
        })
        .collect()
}

/// The config a monitor `pid` runs from, if `pid` is one.
fn monitor_config(pid: i32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmd.split(|b| *b == 0);
    (args.next()? == b"bosun-init" && args.next()? == b"init").then_some(())?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(args.next()?)))
}

/// Kills monitor `pid` if, with a pidfd held, it still runs from `config`.
pub fn kill_monitor(pid: i32, config: &Path) {
    kill_if(pid, || monitor_config(pid).as_deref() == Some(config));
}

/// SIGKILLs `pid` if `is` holds of it once a pidfd holds the process
/// (checked after, so that it is about the process signalled, not one
/// that reused the pid).
pub fn kill_if(pid: i32, is: impl Fn() -> bool) {
    let Ok(pidfd) = pidfd::open(pid) else { return };
    if is() {
        let _ = pidfd::send_signal(&pidfd, Signal::SIGKILL);
    }
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
