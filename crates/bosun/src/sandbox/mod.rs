//! The sandbox: one per agent. Holds the pod's settings, its containers by
//! id, and the mount ledger; every pod operation goes through it.

mod cgroups;
mod container_extras;
pub mod copy_file;
pub mod create_container;
mod destroy;
mod exec;
mod guest_pull;
pub mod hooks;
pub mod oom;
pub mod processes;
mod remove;
mod reserve;
mod start;
pub mod state_journal;
mod sweep;
pub mod teardown;
mod watches;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use slog::{info, o, Logger};

use crate::container::Container;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::mount::ledger::{Ledger, Owner};
use crate::mount::storage::{self, StorageSpec};
use crate::process::reaper::Reaper;
use crate::process::Process;

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

/// WaitProcess's answer for a process started before a restart: it was
/// not bosun's child any more, so its exit status is not known.
pub const ADOPTED_EXIT_UNKNOWN: i32 = 255;
/// How often an adopted process is checked for its end.
const ADOPTED_POLL: std::time::Duration = std::time::Duration::from_millis(20);

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
}

/// Runs `work` to its end in a task of its own, whatever happens to the
/// caller: ttrpc drops a handler at the client's deadline, and a create or
/// teardown dropped halfway would leave half its work behind. If the caller
/// is gone when `work` succeeds, `if_abandoned` gets its result to undo.
pub(crate) async fn detached<T, W, U, UF>(work: W, if_abandoned: U) -> Result<T, AgentError>
where
    T: Send + 'static,
    W: std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
    U: FnOnce(T) -> UF + Send + 'static,
    UF: std::future::Future<Output = ()> + Send,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(Ok(v)) = tx.send(work.await) {
            if_abandoned(v).await;
        }
    });
    rx.await.unwrap_or_else(|_| {
        Err(AgentError::Internal(
            "the call's task ended without an answer (a bug); see the agent log".into(),
        ))
    })
}

/// `detached` for work whose result stays when the caller is gone.
pub(crate) async fn run_detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, AgentError>> + Send + 'static,
) -> Result<T, AgentError> {
    detached(work, |_| async {}).await
}

impl Sandbox {
    /// A sandbox-less agent state rooted at `run_dir`.
    pub fn new(
        log: &Logger,
        run_dir: &Path,
        cgroup_parent: &str,
        guard: crate::protect::Guard,
        reaper: Arc<Reaper>,
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

    /// CreateSandbox, detached from the call (see `detached`). The same
    /// spec again is OK (idempotent).
    pub async fn create_sandbox(self: &Arc<Self>, spec: SandboxSpec) -> Result<(), AgentError> {
        let sb = self.clone();
        run_detached(async move {
            let _op = sb.pod_ops.clone().read_owned().await;
            sb.create_sandbox_now(spec).await
        })
        .await
    }

    async fn create_sandbox_now(&self, spec: SandboxSpec) -> Result<(), AgentError> {
        {
            let st = self.state();
            if let Some(existing) = &st.sandbox {
                return if *existing == spec {
                    Ok(())
                } else {
                    Err(AgentError::SandboxExists(existing.id.clone()))
                };
            }
        }
        // Modules first: the storages may need them (a filesystem, a
        // transport). A module already there is left alone.
        let release = crate::sys::guest::kernel_release();
        let modules_dir = Path::new("/lib/modules").join(&release);
        for m in &spec.kernel_modules {
            let loaded = crate::kmod::load(m, &modules_dir, Path::new("/sys/module"))
                .map_err(|e| AgentError::invalid("kernel_modules", e.to_string()))?;
            info!(self.log, "kernel module"; "target" => &m.name, "loaded" => ?loaded);
        }
        let dir = self.sandbox_dir();
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::Internal(format!("create {}: {e}", dir.display())))?;
        if !spec.dns.is_empty() {
            // Containers bind this file; the guest's own /etc is not touched.
            let text: String = spec.dns.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join("resolv.conf"), text)
                .map_err(|e| AgentError::Internal(format!("write resolv.conf: {e}")))?;
        }
        self.check_storages(&spec.storages)?;
        let storages = self.resolve_devices(&spec.storages).await?;
        for (i, s) in storages.iter().enumerate() {
            if let Err(e) = storage::mount_storage(&self.ledger, &Owner::Sandbox, s, &|| {
                let _ = self.persist();
            }) {
                let report = self.unmount_owned_async(Owner::Sandbox).await;
                slog::warn!(self.log, "sandbox storage failed, rolled back"; "index" => i, "error" => %e, "rollback" => ?report);
                return Err(e.into());
            }
        }
        info!(self.log, "sandbox created"; "sid" => &spec.id, "hostname" => &spec.hostname, "storages" => spec.storages.len());
        self.state().sandbox = Some(spec);
        self.persist()?;
        Ok(())
    }

    /// Keeps the latest teardown report of `key` (a container id, or "" for
    /// the sandbox).
    pub(crate) fn keep_report(&self, key: &str, report: String) {
        let mut st = self.state();
        st.reports.retain(|(k, _)| k != key);
        st.reports.push_back((key.to_string(), report));
        while st.reports.len() > REPORTS_KEPT {
            st.reports.pop_front();
        }
    }

    /// Every container with its state, as JSON lines for
    /// GetDiagnosticData("containers") (the Kata protocol has no list call).
    pub fn listing(&self) -> String {
        let mut v = Vec::new();
        for c in self.containers() {
            let st = c.status(self.init_exited(&c));
            let execs: Vec<String> = c.processes().iter().skip(1).map(|p| p.exec_id.clone()).collect();
            v.push(serde_json::json!({
                "id": c.id.as_str(), "status": st.name(), "pid": c.init.pid, "pause": c.is_pause,
                "protected": c.protected, "exit_status": self.exit_of(&c.init), "execs": execs,
            }));
        }
        serde_json::Value::Array(v).to_string()
    }

    /// The latest teardown report of a container ("" for the sandbox).
    pub fn teardown_report(&self, key: &str) -> Option<String> {
        self.state()
            .reports
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    /// The reaper every child of the agent is collected by.
    pub fn reaper(&self) -> &Reaper {
        &self.reaper
    }

    /// RemoveStaleVirtiofsShareMounts, as the Kata agent serves it: a stat
    /// of every mount point under the shared directory, so that virtiofsd
    /// drops its cache (and fds) of those that are gone.
    pub fn touch_share_mounts(&self) {
        let shared = Path::new(copy_file::KATA_SHARED_DIR).join("shared");
        for m in crate::mount::mountinfo::mount_points().unwrap_or_default() {
            if m.starts_with(&shared) {
                let _ = std::fs::metadata(&m);
            }
        }
    }

    /// SetGuestDateTime. The clock is the whole guest's, so bosun sets it
    /// only as the guest's init; anywhere else (a test, a shared host) it
    /// refuses rather than move someone else's clock.
    pub fn set_time(&self, sec: i64, usec: i64) -> Result<(), AgentError> {
        if !(0..1_000_000).contains(&usec) || sec < 0 {
            return Err(AgentError::invalid(
                "Usec",
                format!("{sec} s {usec} µs: seconds >= 0, 0 <= µs < 1000000"),
            ));
        }
        if std::process::id() != 1 {
            return Err(AgentError::GuestOnly("setting the clock"));
        }
        crate::sys::process::set_realtime(sec, usec).map_err(|e| AgentError::Internal(format!("clock_settime: {e}")))
    }

    /// The storages with each block device's bus address (PCI path, SCSI
    /// address) replaced by its node, once the device is there.
    pub(crate) async fn resolve_devices(&self, v: &[StorageSpec]) -> Result<Vec<StorageSpec>, AgentError> {
        let mut out = v.to_vec();
        for s in &mut out {
            let Some(addr) = s.device() else { continue };
            let addr = addr.map_err(|e| AgentError::invalid("storage.source", e.to_string()))?;
            let node = crate::device::wait_for(&addr).await?;
            info!(self.log, "device resolved"; "target" => %addr, "node" => %node.display());
            s.source = node.display().to_string();
        }
        Ok(out)
    }

    /// Refuses storages that would cover a path the agent needs, or bind
    /// (or layer) the agent's own files (see `crate::protect`); checked
    /// for all before any is mounted.
    pub(crate) fn check_storages(&self, v: &[StorageSpec]) -> Result<(), AgentError> {
        for s in v {
            self.guard.check_mount_target(&s.mount_point)?;
            for exposed in s.exposes() {
                self.guard.check_bind_source(&exposed)?;
            }
        }
        Ok(())
    }

    /// Refuses OCI bind mounts (and overlays) whose source is or holds
    /// the agent's own files: a container would read its journal or
    /// write into its run directory.
    pub(crate) fn check_oci_mounts(&self, v: &[crate::container::init_config::MountSpec]) -> Result<(), AgentError> {
        for m in v {
            let opts = crate::container::mount_options::parse(&m.options);
            if m.fstype == "bind" || opts.bind {
                self.guard.check_bind_source(Path::new(&m.source))?;
            }
            for dir in storage::overlay_dirs(&m.options) {
                self.guard.check_bind_source(&dir)?;
            }
        }
        Ok(())
    }

    /// UpdateEphemeralMounts: new options (typically a tmpfs size) for
    /// ephemeral storages bosun mounted.
    pub fn update_ephemeral(&self, storages: &[StorageSpec]) -> Result<(), AgentError> {
        self.check_storages(storages)?;
        for s in storages.iter().filter(|s| s.driver.is(storage::EPHEMERAL)) {
            let known = crate::sync::lock(&self.ledger)
                .all()
                .iter()
                .any(|e| e.target == s.mount_point && e.fstype == "tmpfs");
            if !known {
                return Err(AgentError::invalid(
                    "storages.mount_point",
                    format!("{} is not an ephemeral storage bosun mounted", s.mount_point.display()),
                ));
            }
            storage::remount(s)?;
        }
        Ok(())
    }

    /// The exit status of `p`, once it has exited. A process adopted after
    /// a restart is not bosun's child: its end is seen (the pid is gone,
    /// a zombie, or belongs to a process with another start time) but its
    /// status is not, and reads as `ADOPTED_EXIT_UNKNOWN`.
    pub(crate) fn exit_of(&self, p: &Process) -> Option<i32> {
        if p.adopted {
            (!crate::process::still_runs(p.pid, p.start_time)).then(|| p.exit_status().unwrap_or(ADOPTED_EXIT_UNKNOWN))
        } else {
            self.reaper.status(p.pid)
        }
    }

    /// Waits until `p` has exited.
    pub(crate) async fn wait_exit(&self, p: &Process) -> i32 {
        if !p.adopted {
            return self.reaper.wait(p.pid).await;
        }
        loop {
            if let Some(s) = self.exit_of(p) {
                return s;
            }
            tokio::time::sleep(ADOPTED_POLL).await;
        }
    }

    /// True once the container's init has exited.
    pub(crate) fn init_exited(&self, c: &Container) -> bool {
        self.exit_of(&c.init).is_some()
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
