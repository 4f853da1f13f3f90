//! ExecProcess: a new process in every namespace and the cgroup of a
//! running container.
//!
//! Like a create, an exec runs detached from its call; if the caller is
//! gone by the time the process runs (its deadline passed), the process is
//! killed and forgotten: a cancelled exec leaves nothing, and its id can
//! be used again.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slog::{info, warn};

use super::create_container::ns_path;
use super::Sandbox;
use crate::container::init_config::{InitConfig, NsKind, Payload, ProcessSpec};
use crate::container::spawn;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::process::monitor::exit_file;
use crate::sys::process as sysproc;

impl Sandbox {
    /// ExecProcess.
    pub async fn exec_process(
        self: &Arc<Self>,
        id: &ContainerId,
        exec_id: String,
        process: ProcessSpec,
    ) -> Result<(), AgentError> {
        let (sb, undo) = (self.clone(), self.clone());
        let id = id.clone();
        let cid = id.clone();
        super::detached(
            Box::pin(async move {
                let _op = sb.pod_ops.clone().read_owned().await;
                sb.exec_claimed(&id, exec_id, process).await
            }),
            move |(exec_id, pid)| async move { undo.abandon_exec(&cid, &exec_id, pid).await },
        )
        .await
        .map(|_| ())
    }

    async fn exec_claimed(
        &self,
        id: &ContainerId,
        exec_id: String,
        process: ProcessSpec,
    ) -> Result<(String, i32), AgentError> {
        let c = self.container(id)?;
        let status = c.status(self.init_exited(&c));
        if !status.can_exec() {
            return Err(AgentError::WrongState {
                cid: id.clone(),
                state: status.name(),
                action: "exec in it (it must be running)",
            });
        }
        if exec_id == id.as_str() || !c.reserve_exec(&exec_id) {
            return Err(AgentError::ExecIdInUse {
                cid: id.clone(),
                exec_id,
            });
        }
        let pid = c.init.pid;
        let mut kinds = vec![NsKind::Uts, NsKind::Ipc, NsKind::Net, NsKind::Pid, NsKind::Mnt];
        // A user or cgroup namespace the container joined by path (joining
        // the agent's own again is refused by the kernel).
        for k in [NsKind::User, NsKind::Cgroup] {
            let theirs =
                crate::sys::ns::namespace_of(std::path::Path::new(&format!("/proc/{pid}/ns/{}", k.proc_name())));
            let ours = crate::sys::ns::namespace_of(std::path::Path::new(&format!("/proc/self/ns/{}", k.proc_name())));
            if let (Ok(t), Ok(o)) = (theirs, ours) {
                if t.inode != o.inode {
                    kinds.insert(0, k);
                }
            }
        }
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
        let config = exec_config(&c.dir, &exec_id);
        let mut spawned = match spawn::start(&config, &cfg, &exec_id, self.output_buffer).await {
            Ok(s) => s,
            Err(e) => {
                c.release_exec(&exec_id);
                let _ = std::fs::remove_file(&config);
                if let Some(pid) = e.pid {
                    // Set up but never reported exec'd (a timeout): it must not linger.
                    let _ = sysproc::kill(pid, nix::sys::signal::Signal::SIGKILL as i32);
                }
                return Err(AgentError::SetupFailed {
                    cid: id.clone(),
                    reason: e.reason,
                });
            }
        };
        crate::faults::crash_point("exec-after-spawn");
        self.watch_spawned(&mut spawned, &c.dir);
        let p = spawned.process;
        info!(self.log, "process exec'd"; "cid" => %id, "exec_id" => &exec_id, "pid" => p.pid);
        let pid = p.pid;
        c.add_exec(p);
        self.persist()?;
        Ok((exec_id, pid))
    }

    /// Undoes an exec whose caller is gone: forgets it (its id is free
    /// again at once), kills its process and waits for it.
    async fn abandon_exec(&self, id: &ContainerId, exec_id: &str, pid: i32) {
        warn!(self.log, "exec's caller is gone; killing the process"; "cid" => %id, "exec_id" => exec_id, "pid" => pid);
        let removed = self.container(id).ok().and_then(|c| {
            remove_exec_files(&c.dir, exec_id);
            c.remove_exec(exec_id)
        });
        let _ = self.persist();
        let _ = sysproc::kill(pid, nix::sys::signal::Signal::SIGKILL as i32);
        if let Some(p) = removed {
            let _ = tokio::time::timeout(super::teardown::DEFAULT_KILL_WAIT, p.wait()).await;
            p.release_monitor();
            p.stdout.abandon();
            p.stderr.abandon();
            p.close_stdin().await;
        }
    }
}

/// Where an exec's helper config is written, in its container's directory.
fn exec_config(dir: &Path, exec_id: &str) -> PathBuf {
    dir.join(format!("exec-{exec_id}.json"))
}

/// Removes what an exec left in its container's directory: its config and
/// its exit file.
pub(super) fn remove_exec_files(dir: &Path, exec_id: &str) {
    let _ = std::fs::remove_file(exec_config(dir, exec_id));
    let _ = std::fs::remove_file(exit_file(dir, exec_id));
}
