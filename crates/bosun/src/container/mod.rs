//! Containers: the agent-side record of one container, the helper that
//! becomes its processes, and its rootfs set-up.

pub mod init;
pub mod init_config;
pub mod message;
pub mod monitor;
pub mod mount_options;
pub mod pause;
pub mod rootfs;
pub mod shared_mount;
pub mod spawn;
pub mod spec;
pub mod zygote;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::ids::ContainerId;
use crate::process::Process;

/// Annotation the CRI and kata shims put on the pause container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Annotation the CRI puts on every container: its name in the pod
/// (shared_mounts name containers by it).
pub const CONTAINER_NAME_ANNOTATION: &str = "io.kubernetes.cri.container-name";
/// Annotation that marks a container protected from bulk operations.
pub const PROTECTED_ANNOTATION: &str = "io.bosun.protected";

/// Lifecycle state as the agent tracks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// Set up, waiting for StartContainer.
    Created,
    /// Its process was started.
    Running,
    /// Frozen by PauseContainer.
    Paused,
    /// Its init process has exited.
    Stopped,
    /// A teardown started and has not finished; calling remove again
    /// finishes it.
    Removing,
}

impl Status {
    /// Name used in messages and listings.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Removing => "being removed",
        }
    }
    /// StartContainer is allowed.
    pub fn can_start(self) -> bool {
        self == Self::Created
    }
    /// ExecProcess is allowed.
    pub fn can_exec(self) -> bool {
        self == Self::Running
    }
}

/// What a container is, fixed when it is created (or re-adopted after a
/// restart).
pub struct ContainerInfo {
    /// Id.
    pub id: ContainerId,
    /// Its directory under the agent's run dir.
    pub dir: PathBuf,
    /// The sandbox's pause container.
    pub is_pause: bool,
    /// Skipped by bulk operations unless named.
    pub protected: bool,
    /// Has a pid namespace of its own (killing init kills all).
    pub own_pid_ns: bool,
    /// Digest of the create request: the same request again is OK.
    pub digest: String,
    /// The init process.
    pub init: Arc<Process>,
    /// Its cgroup, when one could be made.
    pub cgroup: Option<crate::cgroup::Cgroup>,
    /// Its name in the pod (`io.kubernetes.cri.container-name`), if given.
    pub name: Option<String>,
    /// Re-adopted after a restart: a crash between an exec's start and
    /// its record may have left that exec's monitor out of the record
    /// (this bosun records or ends every monitor it starts).
    pub readopted: bool,
}

/// One container: what it is (`ContainerInfo`, reached through `Deref`)
/// and what changes over its life.
pub struct Container {
    info: ContainerInfo,
    status: Mutex<Status>,
    execs: Mutex<BTreeMap<String, Arc<Process>>>,
    /// Exec'd processes whose status and output were all delivered, oldest
    /// first (`Sandbox::note_delivered` forgets the oldest past a bound).
    delivered: Mutex<std::collections::VecDeque<String>>,
    /// Exec ids claimed by an ExecProcess still starting its process.
    pending_execs: Mutex<std::collections::BTreeSet<String>>,
    /// Write end of the start gate, until StartContainer.
    pub gate: Mutex<Option<OwnedFd>>,
    /// Read end of the helper's report pipe, until StartContainer.
    pub report: tokio::sync::Mutex<Option<spawn::Report>>,
    /// Serialises start and remove of this container.
    pub op: tokio::sync::Mutex<()>,
}

impl std::ops::Deref for Container {
    type Target = ContainerInfo;
    fn deref(&self) -> &ContainerInfo {
        &self.info
    }
}

impl Container {
    /// A container in state Created, with its start gate and report pipe
    /// (none for one re-adopted after a restart).
    pub fn new(info: ContainerInfo, gate: Option<OwnedFd>, report: Option<spawn::Report>) -> Self {
        Self {
            info,
            status: Mutex::new(Status::Created),
            execs: Mutex::new(BTreeMap::new()),
            delivered: Mutex::new(Default::default()),
            pending_execs: Mutex::new(Default::default()),
            gate: Mutex::new(gate),
            report: tokio::sync::Mutex::new(report),
            op: tokio::sync::Mutex::new(()),
        }
    }

    /// The current status; Stopped once the init has been reaped.
    pub fn status(&self, init_exited: bool) -> Status {
        let s = *crate::sync::lock(&self.status);
        match s {
            Status::Running | Status::Created | Status::Paused if init_exited => Status::Stopped,
            other => other,
        }
    }

    /// Sets the status.
    pub fn set_status(&self, s: Status) {
        *crate::sync::lock(&self.status) = s;
    }

    /// The exec'd process `exec_id`.
    pub fn exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        crate::sync::lock(&self.execs).get(exec_id).cloned()
    }

    /// Claims `exec_id` for an exec about to start; false if it is taken
    /// (by a process, or by another exec starting).
    pub fn reserve_exec(&self, exec_id: &str) -> bool {
        let execs = crate::sync::lock(&self.execs);
        let mut pending = crate::sync::lock(&self.pending_execs);
        !execs.contains_key(exec_id) && pending.insert(exec_id.to_string())
    }

    /// Gives up a claim whose exec failed.
    pub fn release_exec(&self, exec_id: &str) {
        crate::sync::lock(&self.pending_execs).remove(exec_id);
    }

    /// Adds an exec'd process (its id claimed or not); false if the id
    /// belongs to another process.
    pub fn add_exec(&self, p: Arc<Process>) -> bool {
        let mut e = crate::sync::lock(&self.execs);
        crate::sync::lock(&self.pending_execs).remove(&p.exec_id);
        if e.contains_key(&p.exec_id) {
            return false;
        }
        e.insert(p.exec_id.clone(), p);
        true
    }

    /// Queues a delivered exec; returns the ones past `keep` to forget,
    /// oldest first.
    pub fn queue_delivered(&self, exec_id: &str, keep: usize) -> Vec<String> {
        let mut q = crate::sync::lock(&self.delivered);
        q.push_back(exec_id.to_string());
        let over = q.len().saturating_sub(keep);
        q.drain(..over).collect()
    }

    /// Forgets an exec'd process (one whose caller went away).
    pub fn remove_exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        crate::sync::lock(&self.execs).remove(exec_id)
    }

    /// True when `exec_id` is in use.
    pub fn has_exec(&self, exec_id: &str) -> bool {
        crate::sync::lock(&self.execs).contains_key(exec_id) || crate::sync::lock(&self.pending_execs).contains(exec_id)
    }

    /// Init and every exec'd process.
    pub fn processes(&self) -> Vec<Arc<Process>> {
        let mut v = vec![self.init.clone()];
        v.extend(crate::sync::lock(&self.execs).values().cloned());
        v
    }
}
