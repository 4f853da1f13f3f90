//! StartContainer: runs the prestart hooks, opens the start gate and
//! answers once the process has exec'd (so a bad binary or cwd fails the
//! call itself).

use std::io::Write;

use slog::{info, warn};

use super::hooks::HookKind;
use super::Sandbox;
use crate::container::Status;
use crate::error::AgentError;
use crate::ids::ContainerId;

impl Sandbox {
    /// StartContainer: opens the start gate and waits for the exec.
    pub async fn start_container(&self, id: &ContainerId) -> Result<(), AgentError> {
        let c = self.container(id)?;
        let _op = c.op.lock().await;
        let status = c.status(self.init_exited(&c));
        if !status.can_start() {
            return Err(AgentError::WrongState {
                cid: id.clone(),
                state: status.name(),
                action: "start it (only a created container starts)",
            });
        }
        // prestart hooks: the container is set up, its process not yet run.
        self.run_hooks(HookKind::Prestart, &c)
            .await
            .map_err(|reason| AgentError::SetupFailed {
                cid: id.clone(),
                reason,
            })?;
        let gate = crate::sync::lock(&c.gate).take();
        let mut gate =
            std::fs::File::from(gate.ok_or_else(|| AgentError::Internal(format!("container {id} has no start gate")))?);
        gate.write_all(&[1]).map_err(|e| AgentError::SetupFailed {
            cid: id.clone(),
            reason: format!("open start gate: {e}"),
        })?;
        let mut report = c
            .report
            .lock()
            .await
            .take()
            .ok_or_else(|| AgentError::Internal(format!("container {id} has no report pipe")))?;
        match report.exec_result().await {
            Ok(()) => {
                c.set_status(Status::Running);
                self.persist()?;
                info!(self.log, "container started"; "cid" => %id, "pid" => c.init.pid);
                // A poststart failure is logged (in run_hooks), as OCI asks.
                let _ = self.run_hooks(HookKind::Poststart, &c).await;
                Ok(())
            }
            Err(reason) => {
                c.set_status(Status::Stopped);
                warn!(self.log, "container start failed"; "cid" => %id, "error" => &reason);
                Err(AgentError::SetupFailed {
                    cid: id.clone(),
                    reason,
                })
            }
        }
    }
}
