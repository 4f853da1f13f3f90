//! SignalProcess, and finding a container's process by exec id.

use std::sync::Arc;

use nix::errno::Errno;

use super::Sandbox;
use crate::container::Container;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::process::Process;
use crate::sys::process as sysproc;

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
                if p.exit_status().is_some() {
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
                    .filter(|p| p.exit_status().is_none())
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
}
