//! Processes bosun started: a container's init and its exec'd processes,
//! their standard streams and exit status.

pub mod io;
pub mod reaper;

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

use io::Output;

/// A process of a container.
pub struct Process {
    /// Exec id ("" for... never: the init's exec id is the container id).
    pub exec_id: String,
    /// Pid in the agent's pid namespace.
    pub pid: i32,
    /// stdin, until closed.
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// stdout.
    pub stdout: Arc<Output>,
    /// stderr.
    pub stderr: Arc<Output>,
    /// Exit status once reaped and observed.
    exit: Mutex<Option<i32>>,
}

impl Process {
    /// Wraps a started process and its pipes.
    pub fn new(
        exec_id: String,
        pid: i32,
        stdin: Option<pipe::Sender>,
        stdout: Arc<Output>,
        stderr: Arc<Output>,
    ) -> Self {
        Self {
            exec_id,
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            stdout,
            stderr,
            exit: Mutex::new(None),
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
        *self.exit.lock().expect("process lock")
    }

    /// Records the exit status.
    pub fn set_exit(&self, status: i32) {
        *self.exit.lock().expect("process lock") = Some(status);
    }
}
