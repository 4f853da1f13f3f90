//! Reservations: a container id (and the cgroup it will use) is claimed
//! under the sandbox lock before a create makes any side effect, so two
//! creates of one id never both act, and a rollback only ever undoes
//! what its own call made.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::Sandbox;
use crate::error::AgentError;
use crate::ids::ContainerId;

/// A create in progress, as other calls see it.
pub(super) struct Creating {
    /// Closed (sender dropped) when the create has ended, either way.
    done: watch::Receiver<()>,
    /// This create makes the pause container: workloads wait for it.
    is_pause: bool,
    /// The first directory of its cgroup, once planned.
    cgroup: Option<PathBuf>,
}

/// What a reservation found.
pub(super) enum Claim {
    /// The id is this call's: create it.
    Claimed(Slot),
    /// The container exists, created from the same request: nothing to do.
    AlreadyCreated,
}

/// A claimed id; released (and its waiters woken) when dropped, however
/// the create ends, a panic included.
pub(super) struct Slot {
    sandbox: Arc<Sandbox>,
    id: ContainerId,
    /// This create makes the pause container.
    pub is_pause: bool,
    _done: watch::Sender<()>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.sandbox.state().creating.remove(&self.id);
    }
}

impl Sandbox {
    /// Claims `id` for a create of the request with `digest`. Waits while
    /// the same id is being created by another call, or while the pause
    /// container is (a workload joins its namespaces), until `deadline`.
    pub(super) async fn reserve(
        self: &Arc<Self>,
        id: &ContainerId,
        digest: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Claim, AgentError> {
        loop {
            let mut wait = {
                let mut st = self.state();
                if let Some(existing) = st.containers.get(id) {
                    // The same request again (a runtime retrying after a
                    // timeout or a restart) is OK; a different one is a conflict.
                    return if existing.digest == digest {
                        Ok(Claim::AlreadyCreated)
                    } else {
                        Err(AgentError::ContainerExists(id.clone()))
                    };
                }
                let busy = st
                    .creating
                    .get(id)
                    .or_else(|| st.creating.values().find(|c| c.is_pause));
                match busy {
                    Some(c) => c.done.clone(),
                    None => {
                        let is_pause = !st.containers.values().any(|c| c.is_pause);
                        let (tx, rx) = watch::channel(());
                        st.creating.insert(
                            id.clone(),
                            Creating {
                                done: rx,
                                is_pause,
                                cgroup: None,
                            },
                        );
                        return Ok(Claim::Claimed(Slot {
                            sandbox: self.clone(),
                            id: id.clone(),
                            is_pause,
                            _done: tx,
                        }));
                    }
                }
            };
            let ended = wait.changed();
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, ended).await.is_err() {
                        return Err(AgentError::DeadlineExceeded(format!(
                            "container {id:?} is still being created by an earlier call; send the request again to get its outcome",
                            id = id.as_str()
                        )));
                    }
                }
                None => {
                    let _ = ended.await;
                }
            }
        }
    }

    /// Claims the cgroup at `rel` for the create holding `slot`. Two
    /// containers never share one, nor nest one inside the other (removing
    /// one would kill the other's tasks), created or being created.
    pub(super) fn plan_cgroup(&self, slot: &Slot, rel: &std::path::Path) -> Result<crate::cgroup::Cgroup, AgentError> {
        let planned = self.cgroups.child(rel);
        let mine = planned.dirs.first().map(|(_, d)| d.clone());
        let mut st = self.state();
        let created = st.containers.values().map(|c| {
            let dir = c.cgroup.as_ref().and_then(|g| g.dirs.first()).map(|(_, d)| d.clone());
            (c.id.clone(), dir)
        });
        let creating = st.creating.iter().map(|(id, c)| (id.clone(), c.cgroup.clone()));
        let clash = created
            .chain(creating)
            .filter(|(other, _)| *other != slot.id)
            .find(|(_, theirs)| match (&mine, theirs) {
                (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
                _ => false,
            });
        if let Some((other, _)) = clash {
            return Err(AgentError::invalid(
                "OCI.Linux.CgroupsPath",
                format!(
                    "{} is (or nests with) the cgroup of container {:?}; give each container its own",
                    rel.display(),
                    other.as_str()
                ),
            ));
        }
        if let Some(c) = st.creating.get_mut(&slot.id) {
            c.cgroup = mine;
        }
        Ok(planned)
    }
}
