//! The sandbox: one per agent. Holds the pod's settings, its containers by
//! id, and the mount ledger; every pod operation goes through it.

pub mod copy_file;
pub mod create_container;
mod create_sandbox;
mod destroy;
mod detach;
mod exec;
mod exits;
mod guest_calls;
mod guest_devices;
mod guest_pull;
pub mod hooks;
pub mod oom;
pub mod persist;
mod recover;
mod remove;
mod reserve;
mod resources;
mod shared_mounts;
mod signal;
mod start;
pub mod stdio;
mod storages;
mod sweep;
pub mod teardown;
mod wait;
pub use wait::DELIVERED_EXECS_KEPT;
mod watches;

pub(crate) use detach::{detached, run_detached};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use slog::{o, Logger};

use crate::container::Container;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::mount::ledger::Ledger;
use crate::mount::storage::StorageSpec;
use crate::process::reaper::Reaper;

/// CreateSandbox, validated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// Sandbox id (may be empty: older runtimes do not send one).
    pub id: String,
    /// Hostname of the pod.
    pub hostname: String,
    /// resolv.conf lines.
    pub dns: Vec<String>,
    /// Sandbox-wide storages.
    pub storages: Vec<StorageSpec>,
    /// All containers share the pause container's pid namespace.
    pub sandbox_pidns: bool,
    /// Where the guest keeps OCI hooks (`guest_hook_path`).
    #[serde(default)]
    pub guest_hook_path: Option<PathBuf>,
    /// Kernel modules loaded at CreateSandbox.
    #[serde(default)]
    pub kernel_modules: Vec<crate::kmod::KernelModule>,
}

#[derive(Default)]
struct State {
    sandbox: Option<SandboxSpec>,
    containers: BTreeMap<ContainerId, Arc<Container>>,
    /// Ids bosun removed, oldest first, at most `REMOVED_KEPT`: a second
    /// RemoveContainer answers OK.
    removed: std::collections::VecDeque<ContainerId>,
    /// Creates in progress, by id (see `reserve.rs`).
    creating: std::collections::HashMap<ContainerId, reserve::Creating>,
    /// The latest teardown reports, newest last ("" for the sandbox).
    reports: std::collections::VecDeque<(String, String)>,
    /// watchable-bind copies kept in step: (container, source, copy).
    watches: Vec<(ContainerId, PathBuf, PathBuf)>,
    /// Every path CopyFile created (files, links, directories), in order:
    /// DestroySandbox removes them, newest first, so a pod's configmaps and
    /// secrets do not outlive it in the guest.
    copied: Vec<PathBuf>,
}

/// WaitProcess's answer for a process whose status nobody recorded: its
/// monitor was killed before it could (by someone else than bosun), or it
/// was started by a bosun from before monitors.
pub const ADOPTED_EXIT_UNKNOWN: i32 = 255;

/// Removed ids remembered for an idempotent second RemoveContainer: a
/// runtime repeats a remove within seconds, not after a thousand more
/// containers; unbounded, a pod running short jobs grows the journal
/// forever (3002 ids after 3300 cycles, measured before this bound).
pub const REMOVED_KEPT: usize = 1024;

impl State {
    fn remember_removed(&mut self, id: &ContainerId) {
        self.forget_removed(id);
        self.removed.push_back(id.clone());
        while self.removed.len() > REMOVED_KEPT {
            self.removed.pop_front();
        }
    }

    fn forget_removed(&mut self, id: &ContainerId) {
        self.removed.retain(|r| r != id);
    }

    fn was_removed(&self, id: &ContainerId) -> bool {
        self.removed.contains(id)
    }
}

/// Teardown reports kept for GetDiagnosticData: enough for every container
/// of a busy pod, bounded so a pod running many short jobs cannot grow it.
const REPORTS_KEPT: usize = 256;

/// The agent's pod.
pub struct Sandbox {
    log: Logger,
    run_dir: PathBuf,
    reaper: Arc<Reaper>,
    ledger: Arc<Mutex<Ledger>>,
    cgroups: crate::cgroup::Parent,
    oom: oom::OomEvents,
    guard: crate::protect::Guard,
    journal: crate::journal::Journal,
    state: Mutex<State>,
    /// Where `image_guest_pull` images go (set at start).
    images: std::sync::OnceLock<Arc<crate::image::ImageStore>>,
    /// Held shared by each create and exec in flight, exclusively by
    /// DestroySandbox: a destroy waits for them and none starts meanwhile.
    pod_ops: Arc<tokio::sync::RwLock<()>>,
    /// True while DestroySandbox runs: creates waiting on a pull or a
    /// device give up before they mount anything.
    closing: tokio::sync::watch::Sender<bool>,
    /// Pipe capacity of each process's stdout and stderr (`--output-buffer`).
    output_buffer: usize,
}

impl Sandbox {
    /// A sandbox-less agent state rooted at `run_dir`; `output_buffer`
    /// is the pipe capacity of each process's stdout and stderr.
    pub fn new(
        log: &Logger,
        run_dir: &Path,
        cgroup_parent: &str,
        guard: crate::protect::Guard,
        reaper: Arc<Reaper>,
        output_buffer: usize,
    ) -> Self {
        Self {
            log: log.new(o!("subsystem" => "sandbox")),
            run_dir: run_dir.to_path_buf(),
            reaper,
            ledger: Arc::new(Mutex::new(Ledger::default())),
            cgroups: crate::cgroup::Parent::new(cgroup_parent),
            oom: oom::OomEvents::default(),
            guard,
            journal: crate::journal::Journal::new(run_dir),
            state: Mutex::new(State::default()),
            images: std::sync::OnceLock::new(),
            pod_ops: Arc::new(tokio::sync::RwLock::new(())),
            closing: tokio::sync::watch::channel(false).0,
            output_buffer,
        }
    }

    /// `f`, unless DestroySandbox starts first: then UNAVAILABLE, and
    /// `f` (a pull, a wait for a device: nothing mounted yet) is dropped.
    async fn until_closing<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, AgentError>>,
    ) -> Result<T, AgentError> {
        let mut closing = self.closing.subscribe();
        let stopped = || {
            AgentError::Unavailable(
                "the sandbox is being destroyed; the create stopped before mounting anything".into(),
            )
        };
        if *closing.borrow() {
            return Err(stopped());
        }
        tokio::select! {
            r = f => r,
            _ = closing.wait_for(|c| *c) => Err(stopped()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The container `id`, or NOT_FOUND.
    pub fn container(&self, id: &ContainerId) -> Result<Arc<Container>, AgentError> {
        self.state()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::ContainerNotFound(id.clone()))
    }

    /// Every container, by id.
    pub fn containers(&self) -> Vec<Arc<Container>> {
        let st = self.state();
        crate::faults::panic_point("sandbox-locked");
        st.containers.values().cloned().collect()
    }

    /// The run directory of containers.
    fn containers_dir(&self) -> PathBuf {
        self.run_dir.join("containers")
    }

    /// The sandbox's own directory (resolv.conf, ...).
    fn sandbox_dir(&self) -> PathBuf {
        self.run_dir.join("sandbox")
    }

    /// The reaper every child of the agent is collected by.
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// True once the container's init has exited.
    pub(crate) fn init_exited(&self, c: &Container) -> bool {
        c.init.exit_status().is_some()
    }

    /// The sandbox's id, if one exists.
    pub fn sandbox_id(&self) -> Option<String> {
        self.state().sandbox.as_ref().map(|s| s.id.clone())
    }

    fn sandbox_spec(&self) -> Result<SandboxSpec, AgentError> {
        self.state().sandbox.clone().ok_or(AgentError::NoSandbox)
    }

    /// The pause container, if one was created.
    fn pause(&self) -> Option<Arc<Container>> {
        self.state().containers.values().find(|c| c.is_pause).cloned()
    }
}
