//! WaitProcess: a long poll, answered when the process has exited.

use super::Sandbox;
use crate::error::AgentError;
use crate::ids::ContainerId;

impl Sandbox {
    /// Waits (without bound) for the process to exit; returns its status.
    pub async fn wait(&self, id: &ContainerId, exec_id: Option<&str>) -> Result<i32, AgentError> {
        let (_, p) = self.process(id, exec_id)?;
        let status = self.wait_exit(&p).await;
        p.set_exit(status);
        Ok(status)
    }
}
