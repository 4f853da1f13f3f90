//! Processes bosun started: a container's init and its exec'd processes,
//! their standard streams and exit status.

pub mod io;
pub mod reaper;

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWrite, AsyncWriteExt};

use io::Output;

/// Where stdin writes go.
pub type Stdin = Box<dyn AsyncWrite + Send + Sync + Unpin>;

/// A process of a container.
pub struct Process {
    /// Exec id ("" for... never: the init's exec id is the container id).
    pub exec_id: String,
    /// Pid in the agent's pid namespace.
    pub pid: i32,
    /// stdin (a pipe, or the terminal's master), until closed.
    stdin: tokio::sync::Mutex<Option<Stdin>>,
    /// The terminal's master, for resizing.
    pub tty: Option<std::os::fd::OwnedFd>,
    /// stdout.
    pub stdout: Arc<Output>,
    /// stderr.
    pub stderr: Arc<Output>,
    /// Exit status once reaped and observed.
    exit: Mutex<Option<i32>>,
    /// Start time from /proc (0 if it could not be read).
    pub start_time: u64,
    /// Started before a restart of the agent: not its child any more.
    pub adopted: bool,
}

impl Process {
    /// Wraps a started process and its pipes.
    pub fn new(
        exec_id: String,
        pid: i32,
        stdin: Option<Stdin>,
        out: (Arc<Output>, Arc<Output>),
        tty: Option<std::os::fd::OwnedFd>,
    ) -> Self {
        let start_time = start_time(pid).unwrap_or(0);
        Self {
            exec_id,
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            tty,
            stdout: out.0,
            stderr: out.1,
            exit: Mutex::new(None),
            start_time,
            adopted: false,
        }
    }

    /// A process found in the journal after a restart: its streams are
    /// gone with the old agent (stdout/stderr read as EOF, stdin closed).
    pub fn adopted(exec_id: String, pid: i32, start_time: u64, exit: Option<i32>) -> Self {
        let closed = || io::Output::closed();
        Self {
            exec_id,
            pid,
            stdin: tokio::sync::Mutex::new(None),
            tty: None,
            stdout: closed(),
            stderr: closed(),
            exit: Mutex::new(exit),
            start_time,
            adopted: true,
        }
    }

    /// Writes to stdin; an empty write closes it. Returns bytes written.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<usize> {
        let mut g = self.stdin.lock().await;
        if data.is_empty() {
            *g = None;
            return Ok(0);
        }
        match g.as_mut() {
            Some(tx) => tx.write_all(data).await.map(|_| data.len()),
            None => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin is closed")),
        }
    }

    /// Closes stdin (idempotent).
    pub async fn close_stdin(&self) {
        *self.stdin.lock().await = None;
    }

    /// The exit status, if known.
    pub fn exit_status(&self) -> Option<i32> {
        *crate::sync::lock(&self.exit)
    }

    /// Records the exit status.
    pub fn set_exit(&self, status: i32) {
        *crate::sync::lock(&self.exit) = Some(status);
    }
}

/// Start time of `pid` (field 22 of /proc/PID/stat, clock ticks since
/// boot), if it exists: with the pid, it names one process for good (a
/// reused pid has another start time).
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, t)| t)
}

/// Whether `pid`, started at `start_time`, still runs: gone, replaced by
/// another process, or a zombie (it has exited; only its parent has not
/// collected it: after a restart that parent is not bosun) all count as ended.
pub fn still_runs(pid: i32, start_time: u64) -> bool {
    matches!(stat(pid), Some((state, t)) if t == start_time && state != 'Z')
}

/// State (field 3) and start time (field 22) of /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields resume after ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    Some((state, f.nth(18)?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_or_a_reused_pid_has_ended() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("our own start time");
        assert!(still_runs(me, t));
        assert!(!still_runs(me, t + 1), "another start time: another process");
        // A child that exited and is not reaped yet: a zombie.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let ct = start_time(pid).unwrap_or(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(pid).is_some_and(|(s, _)| s != 'Z') {
            assert!(std::time::Instant::now() < deadline, "the child did not exit");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!still_runs(pid, ct), "a zombie has ended");
        child.wait().unwrap();
        assert!(!still_runs(pid, ct), "a reaped pid has ended");
    }
}
