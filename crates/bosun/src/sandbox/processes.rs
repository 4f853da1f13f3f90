//! SignalProcess, WaitProcess, ReadStdout/ReadStderr, WriteStdin,
//! CloseStdin.

use std::sync::Arc;

use nix::errno::Errno;

use super::Sandbox;
use crate::container::Container;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::process::Process;
use crate::sys::process as sysproc;

/// Which output stream.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

/// Highest signal number Linux has (SIGRTMAX).
const MAX_SIGNAL: u32 = 64;

impl Sandbox {
    /// The container and its process `exec_id` (`None`: the init).
    pub fn process(
        &self,
        id: &ContainerId,
        exec_id: Option<&str>,
    ) -> Result<(Arc<Container>, Arc<Process>), AgentError> {
        let c = self.container(id)?;
        let p = match exec_id {
            None => c.init.clone(),
            Some(e) if e == id.as_str() => c.init.clone(),
            Some(e) => c.exec(e).ok_or_else(|| AgentError::ProcessNotFound {
                cid: id.clone(),
                exec_id: e.to_string(),
            })?,
        };
        Ok((c, p))
    }

    /// Sends `sig` to one process, or to every process of the container
    /// when `exec_id` is `None`. A process that already exited is not an
    /// error: its pid is never signalled again (it may have been reused).
    pub fn signal(&self, id: &ContainerId, exec_id: Option<&str>, sig: u32) -> Result<(), AgentError> {
        if sig == 0 || sig > MAX_SIGNAL {
            return Err(AgentError::invalid(
                "signal",
                format!("{sig} is not a signal number (1..={MAX_SIGNAL})"),
            ));
        }
        // Live targets only: a process that exited is never signalled again
        // (its pid may belong to someone else by now).
        let pids: Vec<i32> = match exec_id {
            Some(_) => {
                let p = self.process(id, exec_id)?.1;
                if self.exit_of(&p).is_some() {
                    Vec::new()
                } else {
                    vec![p.pid]
                }
            }
            None => {
                // Every process bosun started, and every other task in the
                // container's cgroup (their children).
                let c = self.container(id)?;
                let mut v: Vec<i32> = c
                    .processes()
                    .iter()
                    .filter(|p| self.exit_of(p).is_none())
                    .map(|p| p.pid)
                    .collect();
                for p in c.cgroup.as_ref().map(|cg| cg.pids()).unwrap_or_default() {
                    if !v.contains(&p) {
                        v.push(p);
                    }
                }
                v
            }
        };
        // Every target is checked before any signal goes out.
        for pid in &pids {
            self.guard.check_pid(*pid)?;
        }
        for pid in pids {
            match sysproc::kill(pid, sig as i32) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => {
                    return Err(AgentError::Internal(format!(
                        "signal {sig} to pid {pid} of container \"{id}\": {e}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Waits (without bound) for the process to exit; returns its status.
    pub async fn wait(&self, id: &ContainerId, exec_id: Option<&str>) -> Result<i32, AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        let status = self.wait_exit(&p).await;
        p.set_exit(status);
        Ok(status)
    }

    /// Long poll on stdout or stderr; empty at EOF.
    pub async fn read(
        &self,
        id: &ContainerId,
        exec_id: Option<&str>,
        which: Stream,
        len: usize,
    ) -> Result<Vec<u8>, AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        let out = match which {
            Stream::Stdout => p.stdout.clone(),
            Stream::Stderr => p.stderr.clone(),
        };
        Ok(out.read(len).await)
    }

    /// Writes to stdin; an empty write closes it.
    pub async fn write_stdin(&self, id: &ContainerId, exec_id: Option<&str>, data: &[u8]) -> Result<usize, AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        p.write_stdin(data).await.map_err(|_| AgentError::StdinClosed {
            cid: id.clone(),
            exec_id: p.exec_id.clone(),
        })
    }

    /// TtyWinResize: the process's terminal gets a new size.
    pub fn resize(&self, id: &ContainerId, exec_id: Option<&str>, rows: u32, cols: u32) -> Result<(), AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        let tty = p.tty.as_ref().ok_or_else(|| AgentError::WrongState {
            cid: id.clone(),
            state: "running without a terminal",
            action: "resize its terminal (the process was started with Terminal=false)",
        })?;
        let dim = |v: u32, f: &'static str| {
            u16::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| AgentError::invalid(f, format!("{v}: 1..=65535")))
        };
        crate::sys::tty::resize(tty, dim(rows, "row")?, dim(cols, "column")?)
            .map_err(|e| AgentError::Internal(format!("resize terminal of container \"{id}\": {e}")))
    }

    /// Closes stdin (idempotent).
    pub async fn close_stdin(&self, id: &ContainerId, exec_id: Option<&str>) -> Result<(), AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        p.close_stdin().await;
        Ok(())
    }
}
