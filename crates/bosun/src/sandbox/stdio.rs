//! ReadStdout/ReadStderr, WriteStdin, CloseStdin and a terminal's size.

use super::Sandbox;
use crate::error::AgentError;
use crate::ids::ContainerId;

/// Which output stream.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// stdout.
    Stdout,
    /// stderr.
    Stderr,
}

impl Sandbox {
    /// Long poll on stdout or stderr; empty at EOF.
    pub async fn read(
        &self,
        id: &ContainerId,
        exec_id: Option<&str>,
        which: Stream,
        len: usize,
    ) -> Result<Vec<u8>, AgentError> {
        let (c, p) = self.process(id, exec_id)?;
        let out = match which {
            Stream::Stdout => p.stdout.clone(),
            Stream::Stderr => p.stderr.clone(),
        };
        let data = out.read(len).await;
        if data.is_empty() {
            self.note_delivered(&c, &p);
        }
        Ok(data)
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
