//! CreateContainer, StartContainer, ExecProcess.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use slog::{info, warn};

use super::hooks::HookKind;
use super::{Sandbox, SandboxSpec};
use crate::cgroup::CgroupJoin;
use crate::container::init_config::{InitConfig, MountSpec, NsKind, NsMode, Payload, ProcessSpec};
use crate::container::spawn::{self, SpawnError};
use crate::container::spec::ContainerSpec;
use crate::container::{
    Container, ContainerInfo, Status, CONTAINER_NAME_ANNOTATION, CONTAINER_TYPE_ANNOTATION, PROTECTED_ANNOTATION,
};
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::mount::ledger::Owner;
use crate::mount::storage::{self, StorageSpec};

fn ns_path(pid: i32, kind: NsKind) -> NsMode {
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
    /// CreateContainer: storages, namespaces, rootfs; the process waits for
    /// StartContainer. A failure halfway is rolled back by the teardown code.
    pub async fn create_container(
        &self,
        id: ContainerId,
        spec: ContainerSpec,
        storages: Vec<StorageSpec>,
        join_pidns: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(), AgentError> {
        let sb = self.sandbox_spec()?;
        let digest = digest(&spec, &storages, join_pidns);
        if let Some(existing) = self.state().containers.get(&id) {
            // The same request again (a runtime retrying after a timeout or
            // a restart) is OK; a different one is a conflict.
            return if existing.digest == digest {
                Ok(())
            } else {
                Err(AgentError::ContainerExists(id))
            };
        }
        let pause = self.pause();
        let marked_pause = spec.annotations.get(CONTAINER_TYPE_ANNOTATION).map(String::as_str) == Some("sandbox");
        if let (true, Some(p)) = (marked_pause, &pause) {
            return Err(AgentError::invalid(
                "OCI.Annotations",
                format!("the sandbox already has its pause container {:?}", p.id.as_str()),
            ));
        }
        let is_pause = pause.is_none();
        self.check_storages(&storages)?;
        // `_pulled` pins the image's layers until the overlay's ledger entry names them.
        let (storages, _pulled) = self.guest_pull(&id, storages, is_pause, deadline).await?;
        let storages = self.resolve_devices(&storages).await?;
        self.prepare_watches(&storages)?;
        let spec = self.with_guest_devices(spec).await?;
        let cgroup_rel = spec.cgroups_path.clone().unwrap_or_else(|| PathBuf::from(id.as_str()));
        let planned_cgroup = self.plan_cgroup(&cgroup_rel)?;
        if spec.has_seccomp {
            // As with Kata's default (disable_guest_seccomp), the profile is
            // not applied inside the guest: the VM is the isolation boundary.
            warn!(self.log, "seccomp profile not applied in the guest"; "cid" => %id);
        }
        let dir = self.containers_dir().join(id.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::Internal(format!("create {}: {e}", dir.display())))?;
        let owner = Owner::Container(id.clone());
        for s in &storages {
            if let Err(e) = storage::mount_storage(&self.ledger, &owner, s, &|| {
                let _ = self.persist();
            }) {
                self.rollback(&id, &dir, None, planned_cgroup.clone()).await;
                return Err(e.into());
            }
        }
        super::state_journal::crash_point("create-after-storage");
        self.add_watches(&id, &storages);
        let cgroup = match self.make_cgroup(&id, &spec, &cgroup_rel).await {
            Ok(cg) => cg,
            Err(e) => {
                self.rollback(&id, &dir, None, planned_cgroup.clone()).await;
                return Err(e);
            }
        };
        let (mut cfg, own_pid_ns) = self.init_config(&sb, &spec, pause.as_deref(), join_pidns);
        cfg.cgroup = cgroup.as_ref().map(|c| c.join()).unwrap_or_default();
        if !is_pause && cfg.rootfs.as_deref().is_none_or(|r| !r.is_dir()) {
            self.rollback(&id, &dir, None, planned_cgroup.clone()).await;
            return Err(AgentError::invalid(
                "OCI.Root.Path",
                format!("rootfs {:?} is not a directory in the guest", spec.rootfs),
            ));
        }
        let spawned = match spawn::start(&dir.join("init.json"), &cfg, id.as_str()).await {
            Ok(s) => s,
            Err(SpawnError { pid, reason }) => {
                self.rollback(&id, &dir, pid, planned_cgroup.clone()).await;
                return Err(AgentError::SetupFailed { cid: id, reason });
            }
        };
        self.forget_helper(spawned.helper_pid);
        if let Err(reason) = self.share_mounts(&spec.shared_mounts, spawned.process.pid).await {
            self.rollback(&id, &dir, Some(spawned.process.pid), planned_cgroup.clone())
                .await;
            return Err(AgentError::SetupFailed { cid: id, reason });
        }
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
            },
            spawned.gate,
            Some(spawned.report),
        ));
        {
            let mut st = self.state();
            if !st.containers.contains_key(&id) {
                st.removed.remove(&id);
                st.containers.insert(id.clone(), c);
                drop(st);
                self.persist()?;
                info!(self.log, "container created"; "cid" => %id, "pid" => pid, "pause" => is_pause, "builtin_pause" => cfg.payload == Payload::BuiltinPause);
                return Ok(());
            }
        }
        // A concurrent create with the same id won: undo ours.
        self.rollback(&id, &dir, Some(pid), planned_cgroup.clone()).await;
        Err(AgentError::ContainerExists(id))
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
        // The pod's network namespace is the agent's (the guest's), as in Kata.
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

    /// The container's cgroup at `rel` (its `cgroupsPath` or its id)
    /// below the agent's parent. Two containers never share one, nor nest
    /// one inside the other: removing one would kill the other's tasks.
    fn plan_cgroup(&self, rel: &Path) -> Result<crate::cgroup::Cgroup, AgentError> {
        let planned = self.cgroups.child(rel);
        let mine = planned.dirs.first().map(|(_, d)| d.clone());
        for other in self.state().containers.values() {
            let theirs = other
                .cgroup
                .as_ref()
                .and_then(|c| c.dirs.first())
                .map(|(_, d)| d.clone());
            if let (Some(a), Some(b)) = (&mine, &theirs) {
                if a.starts_with(b) || b.starts_with(a) {
                    return Err(AgentError::invalid(
                        "OCI.Linux.CgroupsPath",
                        format!(
                            "{} is (or nests with) the cgroup of container {:?}; give each container its own",
                            rel.display(),
                            other.id.as_str()
                        ),
                    ));
                }
            }
        }
        Ok(planned)
    }

    /// The helper exits right after reporting; collect and forget its status.
    fn forget_helper(&self, pid: u32) {
        let reaper = self.reaper.clone();
        tokio::spawn(async move {
            reaper.wait(pid as i32).await;
            reaper.forget(pid as i32);
        });
    }

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
        let gate = c.gate.lock().expect("gate lock").take();
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

    /// ExecProcess: a new process in every namespace of the container.
    pub async fn exec_process(
        &self,
        id: &ContainerId,
        exec_id: String,
        process: ProcessSpec,
    ) -> Result<(), AgentError> {
        let c = self.container(id)?;
        let status = c.status(self.init_exited(&c));
        if !status.can_exec() {
            return Err(AgentError::WrongState {
                cid: id.clone(),
                state: status.name(),
                action: "exec in it (it must be running)",
            });
        }
        if c.has_exec(&exec_id) || exec_id == id.as_str() {
            return Err(AgentError::ExecIdInUse {
                cid: id.clone(),
                exec_id,
            });
        }
        let pid = c.init.pid;
        let kinds = [NsKind::Uts, NsKind::Ipc, NsKind::Net, NsKind::Pid, NsKind::Mnt];
        let cfg = InitConfig {
            cgroup: c.cgroup.as_ref().map(|c| c.join()).unwrap_or_default(),
            namespaces: kinds.iter().map(|k| (*k, ns_path(pid, *k))).collect(),
            rootfs: None,
            readonly_rootfs: false,
            mounts: Vec::new(),
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            devices: Vec::new(),
            hostname: None,
            sysctls: Vec::new(),
            wait_for_start: false,
            payload: Payload::Exec(Box::new(process)),
        };
        let spawned = spawn::start(&c.dir.join(format!("exec-{exec_id}.json")), &cfg, &exec_id)
            .await
            .map_err(|e| AgentError::SetupFailed {
                cid: id.clone(),
                reason: e.reason,
            })?;
        self.forget_helper(spawned.helper_pid);
        let p = spawned.process;
        info!(self.log, "process exec'd"; "cid" => %id, "exec_id" => &exec_id, "pid" => p.pid);
        let added = c.add_exec(p.clone());
        if added {
            self.persist()?;
        }
        if !added {
            let _ = crate::sys::process::kill(p.pid, nix::sys::signal::Signal::SIGKILL as i32);
            return Err(AgentError::ExecIdInUse {
                cid: id.clone(),
                exec_id,
            });
        }
        Ok(())
    }
}

/// A digest of a create request, canonical across processes (serde_json
/// sorts map keys), for idempotent create.
fn digest(spec: &ContainerSpec, storages: &[StorageSpec], join_pidns: bool) -> String {
    let v = serde_json::json!({ "spec": spec, "storages": storages, "join_pidns": join_pidns });
    format!("{:016x}", crate::journal::fnv64(v.to_string().as_bytes()))
}
