//! Processes bosun started: a container's init and its exec'd processes,
//! their standard streams and exit status.

pub mod io;
pub mod monitor;
pub mod reaper;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use io::{Input, Output};
use monitor::Monitor;

/// A process of a container.
pub struct Process {
    /// Exec id (the container id for its init).
    pub exec_id: String,
    /// Pid in the agent's pid namespace.
    pub pid: i32,
    /// stdin (a pipe, or the terminal's master), until closed.
    stdin: tokio::sync::Mutex<Option<Input>>,
    /// The terminal's master, for resizing.
    pub tty: Option<OwnedFd>,
    /// stdout.
    pub stdout: Arc<Output>,
    /// stderr.
    pub stderr: Arc<Output>,
    /// Exit status once known.
    exit: Mutex<Option<i32>>,
    exited: Notify,
    /// Start time from /proc (0 if it could not be read).
    pub start_time: u64,
    /// Its monitor (its parent), while it keeps anything.
    pub monitor: Option<Monitor>,
    /// WaitProcess has answered with its status.
    waited: AtomicBool,
    /// Everything about it was delivered (status, both streams to EOF):
    /// queued once for forgetting (`Sandbox::note_delivered`).
    delivered: AtomicBool,
}

/// A process's streams, as the agent holds them.
pub struct Streams {
    /// stdin, or the terminal's master.
    pub stdin: Option<Input>,
    /// stdout.
    pub stdout: Arc<Output>,
    /// stderr.
    pub stderr: Arc<Output>,
    /// The terminal's master, for resizing.
    pub tty: Option<OwnedFd>,
}

impl Streams {
    /// No streams: reads are EOF, writes fail.
    pub fn closed() -> Self {
        Self {
            stdin: None,
            stdout: Output::closed(),
            stderr: Output::closed(),
            tty: None,
        }
    }

    /// The agent's ends of a process's pipes.
    pub fn pipes(stdin: Option<OwnedFd>, stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> Self {
        Self {
            stdin: stdin.and_then(|f| Input::new(f).ok()),
            stdout: stdout.map(Output::new).unwrap_or_else(Output::closed),
            stderr: stderr.map(Output::new).unwrap_or_else(Output::closed),
            tty: None,
        }
    }

    /// A terminal's master: output and stdin share it; stderr is empty.
    pub fn terminal(master: OwnedFd) -> std::io::Result<Self> {
        Ok(Self {
            stdin: Some(Input::new(master.try_clone()?)?),
            stdout: Output::new(master.try_clone()?),
            stderr: Output::closed(),
            tty: Some(master),
        })
    }
}

impl Process {
    /// A process, its streams and its monitor.
    pub fn new(exec_id: String, pid: i32, start_time: u64, streams: Streams, monitor: Option<Monitor>) -> Self {
        Self {
            exec_id,
            pid,
            stdin: tokio::sync::Mutex::new(streams.stdin),
            tty: streams.tty,
            stdout: streams.stdout,
            stderr: streams.stderr,
            exit: Mutex::new(None),
            exited: Notify::new(),
            start_time,
            monitor,
            waited: AtomicBool::new(false),
            delivered: AtomicBool::new(false),
        }
    }

    /// Records that WaitProcess answered.
    pub fn mark_waited(&self) {
        self.waited.store(true, Ordering::Release);
    }

    /// True the first time everything about it has been delivered: its
    /// status answered, both streams read to EOF.
    pub fn newly_delivered(&self) -> bool {
        self.waited.load(Ordering::Acquire)
            && self.exit_status().is_some()
            && self.stdout.has_ended()
            && self.stderr.has_ended()
            && !self.delivered.swap(true, Ordering::AcqRel)
    }

    /// Writes to stdin; an empty write closes it. Returns bytes written.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            self.close_stdin().await;
            return Ok(0);
        }
        match self.stdin.lock().await.as_ref() {
            Some(tx) => tx.write_all(data).await.map(|_| data.len()),
            None => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin is closed")),
        }
    }

    /// Closes stdin (idempotent): the agent's end, and the monitor's copy
    /// of a pipe's (a terminal has no EOF to give).
    pub async fn close_stdin(&self) {
        *self.stdin.lock().await = None;
        if let (None, Some(m)) = (&self.tty, &self.monitor) {
            m.signal(nix::sys::signal::Signal::SIGUSR1);
        }
    }

    /// The exit status, if known.
    pub fn exit_status(&self) -> Option<i32> {
        *crate::sync::lock(&self.exit)
    }

    /// Records the exit status (the first one recorded stands).
    pub fn set_exit(&self, status: i32) {
        crate::sync::lock(&self.exit).get_or_insert(status);
        self.exited.notify_waiters();
    }

    /// Waits until the exit status is known.
    pub async fn wait(&self) -> i32 {
        loop {
            let n = self.exited.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(s) = self.exit_status() {
                return s;
            }
            n.await;
        }
    }

    /// Ends the monitor: nothing is left for it to keep.
    pub fn release_monitor(&self) {
        if let Some(m) = &self.monitor {
            m.release();
        }
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

/// The children of process `pid`, under any of its threads.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|t| {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            kids.split_whitespace()
                .filter_map(|k| k.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
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
