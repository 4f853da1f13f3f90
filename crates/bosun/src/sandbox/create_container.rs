//! CreateContainer: storages, namespaces, rootfs, cgroup; the process waits
//! for StartContainer.
//!
//! The create runs detached from the call (`super::detached`): a caller cut
//! off by its ttrpc deadline does not stop it halfway, it finishes (a retry
//! of the same request then finds the container) or rolls back as a whole.
//! The id is reserved before any side effect (`reserve.rs`), so a rollback
//! only ever undoes its own call's work, and DestroySandbox waits for
//! creates in flight (`pod_ops`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slog::{info, warn};

use super::reserve::{Claim, Slot};
use super::{Sandbox, SandboxSpec};
use crate::cgroup::CgroupJoin;
use crate::container::init_config::{InitConfig, MountSpec, NsKind, NsMode, Payload};
use crate::container::spawn::{self, SpawnError};
use crate::container::spec::ContainerSpec;
use crate::container::{
    Container, ContainerInfo, CONTAINER_NAME_ANNOTATION, CONTAINER_TYPE_ANNOTATION, PROTECTED_ANNOTATION,
};
use crate::error::AgentError;
use crate::faults::crash_point;
use crate::ids::ContainerId;
use crate::mount::ledger::Owner;
use crate::mount::storage::{self, StorageSpec};
use crate::process::monitor::exit_file;

/// CreateContainer, validated.
pub struct CreateRequest {
    /// The container id.
    pub id: ContainerId,
    /// Its spec.
    pub spec: ContainerSpec,
    /// Its storages.
    pub storages: Vec<StorageSpec>,
    /// Join the sandbox's pid namespace.
    pub join_pidns: bool,
    /// When to give up on the slow parts (a pull, a device, a wait for an
    /// earlier create of the same id), ahead of the client's deadline.
    pub deadline: Option<tokio::time::Instant>,
}

pub(super) fn ns_path(pid: i32, kind: NsKind) -> NsMode {
    NsMode::Join(PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name())))
}

/// A pause rootfs that is absent, missing, or an empty directory (a mount
/// point that was never mounted, as in remote-hypervisor mode).
fn rootfs_absent(rootfs: Option<&Path>) -> bool {
    match rootfs {
        None => true,
        Some(r) => std::fs::read_dir(r).map(|mut d| d.next().is_none()).unwrap_or(true),
    }
}

impl Sandbox {
    /// CreateContainer. Idempotent by request: the same request for an
    /// existing id is OK, a different one ALREADY_EXISTS.
    pub async fn create_container(self: &Arc<Self>, req: CreateRequest) -> Result<(), AgentError> {
        let sb = self.clone();
        super::run_detached(Box::pin(async move { sb.create_reserved(req).await })).await
    }

    async fn create_reserved(self: &Arc<Self>, req: CreateRequest) -> Result<(), AgentError> {
        // Held until this create has ended: DestroySandbox waits for it.
        let _op = self.pod_ops.clone().read_owned().await;
        let digest = digest(&req.spec, &req.storages, req.join_pidns);
        let slot = match self.reserve(&req.id, &digest, req.deadline).await? {
            Claim::AlreadyCreated => return Ok(()),
            Claim::Claimed(slot) => slot,
        };
        crash_point("create-reserved");
        let mut undo = Undo::new(self.clone(), slot, req.id.clone());
        match self.create_steps(&mut undo, req, digest).await {
            Ok(()) => {
                undo.keep();
                Ok(())
            }
            Err(e) => {
                undo.now().await;
                Err(e)
            }
        }
    }

    /// The steps of a create; each records in `undo` what it made.
    async fn create_steps(&self, undo: &mut Undo, req: CreateRequest, digest: String) -> Result<(), AgentError> {
        let CreateRequest {
            id,
            spec,
            storages,
            join_pidns,
            deadline,
        } = req;
        let sb = self.sandbox_spec()?;
        let pause = self.pause();
        let marked_pause = spec.annotations.get(CONTAINER_TYPE_ANNOTATION).map(String::as_str) == Some("sandbox");
        if let (true, Some(p)) = (marked_pause, &pause) {
            return Err(AgentError::invalid(
                "OCI.Annotations",
                format!("the sandbox already has its pause container {:?}", p.id.as_str()),
            ));
        }
        let is_pause = undo.is_pause();
        self.check_storages(&storages)?;
        self.check_oci_mounts(&spec.mounts)?;
        self.check_namespaces(&spec.joins)?;
        // `_pulled` pins the image's layers until the overlay's ledger entry names them.
        let (storages, _pulled) = self
            .until_closing(self.guest_pull(&id, storages, is_pause, deadline))
            .await?;
        let storages = self.until_closing(self.resolve_devices(&storages)).await?;
        self.prepare_watches(&storages)?;
        let spec = self.until_closing(self.with_guest_devices(spec)).await?;
        let cgroup_rel = spec.cgroups_path.clone().unwrap_or_else(|| PathBuf::from(id.as_str()));
        undo.cgroup = Some(self.plan_cgroup(undo.slot(), &cgroup_rel)?);
        if spec.has_seccomp {
            // As with Kata's default (disable_guest_seccomp), the profile is
            // not applied inside the guest: the VM is the isolation boundary.
            warn!(self.log, "seccomp profile not applied in the guest"; "cid" => %id);
        }
        let dir = self.containers_dir().join(id.as_str());
        undo.dir = Some(dir.clone());
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::Internal(format!("create {}: {e}", dir.display())))?;
        crash_point("create-after-dir");
        let owner = Owner::Container(id.clone());
        for s in &storages {
            storage::mount_storage(&self.ledger, &owner, s, &|| {
                let _ = self.persist();
            })?;
        }
        crash_point("create-after-storage");
        self.add_watches(&id, &storages);
        let cgroup = self.make_cgroup(&id, &spec, &cgroup_rel).await?;
        crash_point("create-after-cgroup");
        let (mut cfg, own_pid_ns) = self.init_config(&sb, &spec, pause.as_deref(), join_pidns);
        cfg.cgroup = cgroup.as_ref().map(|c| c.join()).unwrap_or_default();
        if !is_pause && cfg.rootfs.as_deref().is_none_or(|r| !r.is_dir()) {
            return Err(AgentError::invalid(
                "OCI.Root.Path",
                format!("rootfs {:?} is not a directory in the guest", spec.rootfs),
            ));
        }
        let mut spawned = spawn::start(&dir.join("init.json"), &cfg, id.as_str(), self.output_buffer)
            .await
            .map_err(|SpawnError { pid, reason }| {
                undo.pid = pid;
                AgentError::SetupFailed {
                    cid: id.clone(),
                    reason,
                }
            })?;
        undo.pid = Some(spawned.process.pid);
        undo.process = Some(spawned.process.clone());
        self.watch_spawned(&mut spawned, &dir);
        crash_point("create-after-spawn");
        self.share_mounts(&spec.shared_mounts, spawned.process.pid)
            .await
            .map_err(|reason| AgentError::SetupFailed {
                cid: id.clone(),
                reason,
            })?;
        let protected = is_pause || spec.annotations.get(PROTECTED_ANNOTATION).map(String::as_str) == Some("true");
        let pid = spawned.process.pid;
        let c = Arc::new(Container::new(
            ContainerInfo {
                id: id.clone(),
                dir: dir.clone(),
                is_pause,
                protected,
                own_pid_ns,
                init: spawned.process,
                cgroup,
                digest,
                name: spec.annotations.get(CONTAINER_NAME_ANNOTATION).cloned(),
                readopted: false,
            },
            spawned.gate,
            Some(spawned.report),
        ));
        {
            let mut st = self.state();
            st.forget_removed(&id);
            st.containers.insert(id.clone(), c);
        }
        self.persist()?;
        crash_point("create-after-journal");
        info!(self.log, "container created"; "cid" => %id, "pid" => pid, "pause" => is_pause, "builtin_pause" => cfg.payload == Payload::BuiltinPause);
        Ok(())
    }

    fn init_config(
        &self,
        sb: &SandboxSpec,
        spec: &ContainerSpec,
        pause: Option<&Container>,
        join_pidns: bool,
    ) -> (InitConfig, bool) {
        let mut namespaces = vec![(NsKind::Mnt, NsMode::New)];
        let own_pid_ns = match pause {
            None => {
                namespaces.extend([(NsKind::Uts, NsMode::New), (NsKind::Ipc, NsMode::New)]);
                sb.sandbox_pidns || spec.new_pid_ns
            }
            Some(p) => {
                let pid = p.init.pid;
                namespaces.extend([
                    (NsKind::Uts, ns_path(pid, NsKind::Uts)),
                    (NsKind::Ipc, ns_path(pid, NsKind::Ipc)),
                ]);
                if sb.sandbox_pidns || join_pidns {
                    namespaces.push((NsKind::Pid, ns_path(pid, NsKind::Pid)));
                    false
                } else {
                    spec.new_pid_ns
                }
            }
        };
        if own_pid_ns {
            namespaces.push((NsKind::Pid, NsMode::New));
        }
        // Namespaces the spec names by path replace what bosun would make;
        // the pod's network is otherwise the agent's (the guest's), as in Kata.
        for (kind, path) in &spec.joins {
            namespaces.retain(|(k, _)| k != kind);
            namespaces.push((*kind, NsMode::Join(path.clone())));
        }
        let builtin = pause.is_none() && rootfs_absent(spec.rootfs.as_deref());
        let hostname = match pause {
            None => spec
                .hostname
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| Some(sb.hostname.clone()).filter(|h| !h.is_empty())),
            Some(_) => None,
        };
        let mut mounts = spec.mounts.clone();
        let resolv = self.sandbox_dir().join("resolv.conf");
        if !builtin && resolv.exists() && !mounts.iter().any(|m| m.destination == Path::new("/etc/resolv.conf")) {
            mounts.push(MountSpec {
                destination: "/etc/resolv.conf".into(),
                source: resolv.display().to_string(),
                fstype: "bind".into(),
                options: vec!["bind".into(), "ro".into()],
            });
        }
        let cfg = InitConfig {
            cgroup: CgroupJoin::None,
            namespaces,
            rootfs: if builtin { None } else { spec.rootfs.clone() },
            readonly_rootfs: spec.readonly_rootfs,
            mounts: if builtin { Vec::new() } else { mounts },
            masked_paths: spec.masked_paths.clone(),
            readonly_paths: spec.readonly_paths.clone(),
            devices: if builtin { Vec::new() } else { spec.devices.clone() },
            hostname,
            sysctls: spec.sysctls.clone(),
            wait_for_start: true,
            payload: if builtin {
                Payload::BuiltinPause
            } else {
                Payload::Exec(Box::new(spec.process.clone()))
            },
        };
        (cfg, own_pid_ns)
    }

    /// Creates the container's cgroup and applies the spec's limits. Without
    /// cgroups in the guest the container runs unaccounted (logged), unless
    /// the spec asks for limits.
    async fn make_cgroup(
        &self,
        id: &ContainerId,
        spec: &ContainerSpec,
        rel: &Path,
    ) -> Result<Option<crate::cgroup::Cgroup>, AgentError> {
        let cg = match self.cgroups.create(rel) {
            Ok(cg) => cg,
            Err(e) if spec.resources.is_empty() => {
                warn!(self.log, "no cgroup for container; it runs unaccounted"; "cid" => %id, "error" => %e);
                return Ok(None);
            }
            Err(e) => {
                return Err(AgentError::SetupFailed {
                    cid: id.clone(),
                    reason: format!("create cgroup: {e}"),
                })
            }
        };
        crate::cgroup::resources::apply(&cg, &spec.resources).map_err(|e| AgentError::SetupFailed {
            cid: id.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(cg))
    }

    /// Watches a process just started for its exit, and forgets its
    /// monitor's own status once the reaper collects it.
    pub(super) fn watch_spawned(&self, spawned: &mut spawn::Spawned, dir: &Path) {
        let p = spawned.process.clone();
        self.watch_exit(p.clone(), spawned.exit.take(), exit_file(dir, &p.exec_id));
        if let Some(m) = &p.monitor {
            let (reaper, pid) = (self.reaper.clone(), m.pid);
            tokio::spawn(async move {
                reaper.wait(pid).await;
                reaper.forget(pid);
            });
        }
    }
}

/// What a create has made so far, undone if it is dropped before `keep`:
/// on an error (`now`, awaited), or a panic or a task dropped midway (in a
/// task of its own, from `Drop`). It holds the create's reservation until
/// the undo has finished, so a retry of the same id never races it.
struct Undo {
    sandbox: Arc<Sandbox>,
    slot: Option<Slot>,
    id: ContainerId,
    /// The run directory, once being made.
    dir: Option<PathBuf>,
    /// The cgroup, once planned.
    cgroup: Option<crate::cgroup::Cgroup>,
    /// The container's process, once it exists.
    pid: Option<i32>,
    /// Its record, once started (its monitor is ended first, so that the
    /// process is the agent's child to kill and reap).
    process: Option<Arc<crate::process::Process>>,
}

impl Undo {
    fn new(sandbox: Arc<Sandbox>, slot: Slot, id: ContainerId) -> Self {
        Self {
            sandbox,
            slot: Some(slot),
            id,
            dir: None,
            cgroup: None,
            pid: None,
            process: None,
        }
    }

    fn slot(&self) -> &Slot {
        self.slot.as_ref().expect("held until the create ends")
    }

    fn is_pause(&self) -> bool {
        self.slot().is_pause
    }

    /// The create succeeded: nothing to undo; the reservation is released.
    fn keep(mut self) {
        self.slot.take();
    }

    /// Undoes now, then releases the reservation.
    async fn now(mut self) {
        let slot = self.slot.take();
        if let Some(p) = self.process.take() {
            p.release_monitor();
        }
        let (dir, cg, pid) = (self.dir.take(), self.cgroup.take(), self.pid.take());
        self.sandbox.rollback(&self.id, dir.as_deref(), pid, cg).await;
        drop(slot);
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if let Some(p) = self.process.take() {
            p.release_monitor();
        }
        let (sb, id) = (self.sandbox.clone(), self.id.clone());
        let (dir, cg, pid) = (self.dir.take(), self.cgroup.take(), self.pid.take());
        tokio::spawn(async move {
            sb.rollback(&id, dir.as_deref(), pid, cg).await;
            drop(slot);
        });
    }
}

/// A digest of a create request, canonical across processes (serde_json
/// sorts map keys), for idempotent create.
fn digest(spec: &ContainerSpec, storages: &[StorageSpec], join_pidns: bool) -> String {
    let v = serde_json::json!({ "spec": spec, "storages": storages, "join_pidns": join_pidns });
    format!("{:016x}", crate::journal::fnv64(v.to_string().as_bytes()))
}
