//! UpdateContainer, StatsContainer, PauseContainer, ResumeContainer: the
//! calls served from a container's cgroup.

use std::sync::Arc;

use super::Sandbox;
use crate::cgroup::resources::{self, Resources};
use crate::cgroup::stats::{read_stats, Stats};
use crate::cgroup::Cgroup;
use crate::container::{Container, Status};
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::netstats::{self, NetStats};

impl Sandbox {
    fn with_cgroup(&self, id: &ContainerId) -> Result<(Arc<Container>, Cgroup), AgentError> {
        let c = self.container(id)?;
        let cg = c.cgroup.clone().ok_or_else(|| {
            AgentError::Unavailable(format!(
                "container \"{id}\" has no cgroup (the guest has no usable cgroup filesystem)"
            ))
        })?;
        Ok((c, cg))
    }

    fn status_of(&self, c: &Container) -> Status {
        c.status(self.init_exited(c))
    }

    /// UpdateContainer: new limits.
    pub fn update_container(&self, id: &ContainerId, r: &Resources) -> Result<(), AgentError> {
        let (_, cg) = self.with_cgroup(id)?;
        resources::apply(&cg, r).map_err(|e| AgentError::invalid("resources", e.to_string()))
    }

    /// StatsContainer: cgroup usage and the pod's interface counters.
    pub fn stats(&self, id: &ContainerId) -> Result<(Stats, Vec<NetStats>), AgentError> {
        let (c, cg) = self.with_cgroup(id)?;
        Ok((read_stats(&cg), netstats::of_pid(c.init.pid)))
    }

    /// PauseContainer (freeze) or ResumeContainer (thaw).
    pub fn freeze(&self, id: &ContainerId, frozen: bool) -> Result<(), AgentError> {
        let (c, cg) = self.with_cgroup(id)?;
        let (want, next, action) = if frozen {
            (Status::Running, Status::Paused, "pause it (it must be running)")
        } else {
            (Status::Paused, Status::Running, "resume it (it is not paused)")
        };
        let now = self.status_of(&c);
        if now != want {
            return Err(AgentError::WrongState {
                cid: id.clone(),
                state: now.name(),
                action,
            });
        }
        cg.freeze(frozen)
            .map_err(|e| AgentError::Internal(format!("freezer of container \"{id}\": {e}")))?;
        c.set_status(next);
        self.persist()
    }
}
