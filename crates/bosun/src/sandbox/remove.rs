//! RemoveContainer: the container's teardown (see `teardown.rs`), run to
//! its end whatever happens to the call. Idempotent: an id bosun removed
//! answers OK; a teardown that failed halfway is finished by the next call.

use std::sync::Arc;
use std::time::Duration;

use slog::{info, warn};

use super::teardown::DEFAULT_KILL_WAIT;
use super::Sandbox;
use crate::container::Status;
use crate::error::AgentError;
use crate::faults::crash_point;
use crate::ids::ContainerId;

impl Sandbox {
    /// RemoveContainer, detached from the call.
    pub async fn remove_container(self: &Arc<Self>, id: &ContainerId, wait: Duration) -> Result<(), AgentError> {
        let (sb, id) = (self.clone(), id.clone());
        super::run_detached(Box::pin(async move { sb.remove_now(&id, wait).await })).await
    }

    /// RemoveContainer in the caller's task.
    pub(super) async fn remove_now(&self, id: &ContainerId, wait: Duration) -> Result<(), AgentError> {
        if let Ok(c) = self.container(id) {
            if c.is_pause && self.state().containers.len() > 1 {
                return Err(AgentError::WrongState {
                    cid: id.clone(),
                    state: "the pause container of a pod with workloads",
                    action: "remove it first; remove the workloads or call DestroySandbox",
                });
            }
        }
        self.tear_down(id, wait).await
    }

    /// The teardown of one container, whatever else the pod holds:
    /// DestroySandbox takes the pause down last even when a workload's
    /// teardown failed (its record stays for the next call).
    pub(super) async fn tear_down(&self, id: &ContainerId, wait: Duration) -> Result<(), AgentError> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(e) => return if self.state().was_removed(id) { Ok(()) } else { Err(e) },
        };
        let _op = c.op.lock().await;
        if !self.state().containers.contains_key(id) {
            return Ok(()); // a concurrent call finished the job while we waited
        }
        c.set_status(Status::Removing);
        self.persist()?;
        let wait = if wait.is_zero() { DEFAULT_KILL_WAIT } else { wait };
        let report = self.teardown_container(&c, wait).await;
        self.keep_report(id.as_str(), report.to_string());
        if !report.ok() {
            warn!(self.log, "container teardown incomplete"; "cid" => %id, "report" => %report);
            let _ = self.persist();
            return Err(AgentError::TeardownIncomplete {
                what: format!("container {:?}", id.as_str()),
                failures: report.failures(),
            });
        }
        for p in c.processes() {
            self.reaper.forget(p.pid);
        }
        crash_point("remove-before-journal");
        {
            let mut st = self.state();
            st.containers.remove(id);
            st.remember_removed(id);
        }
        self.persist()?;
        info!(self.log, "container removed"; "cid" => %id, "report" => %report);
        Ok(())
    }
}
