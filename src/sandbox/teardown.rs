//! RemoveContainer, DestroySandbox and the rollback of a failed create: one
//! teardown path that runs every step, collects what failed, and can be
//! called again to finish.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use slog::{info, warn, Logger};

use super::Sandbox;
use crate::container::{Container, Status};
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::mount::fsutil::remove_dir_same_fs;
use crate::mount::ledger::{Kind, Ledger, Owner};
use crate::mount::umount::{self, Unmounted, BUSY_INTERVAL, BUSY_RETRIES};
use crate::sys::process as sysproc;

/// Bound on waiting for killed processes when the caller gave none
/// (timeout 0). SIGKILL is final; only a task stuck in the kernel lasts.
pub const DEFAULT_KILL_WAIT: Duration = Duration::from_secs(30);

/// The outcome of each teardown step.
#[derive(Debug, Default)]
pub struct TeardownReport {
    steps: Vec<(&'static str, Result<String, String>)>,
}

impl TeardownReport {
    /// Records one step.
    pub fn run(&mut self, step: &'static str, outcome: Result<String, String>) {
        self.steps.push((step, outcome));
    }

    /// True when every step succeeded (or had nothing to do).
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|(_, r)| r.is_ok())
    }

    /// The failed steps, for the error message.
    pub fn failures(&self) -> String {
        self.steps
            .iter()
            .filter_map(|(s, r)| r.as_ref().err().map(|e| format!("{s}: {e}")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|(s, r)| match r {
                Ok(d) => format!("{s}: ok ({d})"),
                Err(e) => format!("{s}: FAILED ({e})"),
            })
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// Undoes the ledger entries of `owner`, newest first. Every entry is
/// tried; the ones that fail stay in the ledger for the next call.
pub fn unmount_owned(ledger: &Mutex<Ledger>, owner: &Owner, log: &Logger) -> Result<String, String> {
    let entries = ledger.lock().expect("ledger lock").owned_by(owner);
    let (mut done, mut gone, mut errors) = (0, 0, Vec::new());
    for e in entries {
        let r = match e.kind {
            Kind::Mount => umount::unmount(&e.target, BUSY_RETRIES, BUSY_INTERVAL).map_err(|err| err.to_string()),
            Kind::Dir => remove_dir_same_fs(&e.target)
                .map(|_| Unmounted::Done)
                .map_err(|err| format!("remove {}: {err}", e.target.display())),
        };
        match r {
            Ok(how) => {
                match how {
                    Unmounted::Done => done += 1,
                    Unmounted::AlreadyGone => gone += 1,
                    Unmounted::Detached => {
                        done += 1;
                        warn!(log, "umount busy, detached"; "target" => %e.target.display(), "attempts" => BUSY_RETRIES + 1);
                    }
                }
                ledger.lock().expect("ledger lock").remove(e.seq);
            }
            Err(err) => errors.push(err),
        }
    }
    if errors.is_empty() {
        Ok(format!("{done} unmounted, {gone} already gone"))
    } else {
        Err(errors.join(", "))
    }
}

impl Sandbox {
    async fn unmount_owned_async(&self, owner: Owner) -> Result<String, String> {
        let (ledger, log) = (self.ledger.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || unmount_owned(&ledger, &owner, &log))
            .await
            .map_err(|e| format!("unmount task: {e}"))?
    }

    /// SIGKILL every live process of `c` (the ones bosun started and any
    /// other task in its cgroup), then wait until all are reaped and the
    /// cgroup is empty.
    async fn kill_all(&self, c: &Container, wait: Duration) -> Result<String, String> {
        c.gate.lock().expect("gate lock").take(); // a created container's init would wait forever
        if let Some(cg) = &c.cgroup {
            let _ = cg.freeze(false); // frozen tasks cannot act on SIGKILL
        }
        let known: Vec<i32> = c
            .processes()
            .iter()
            .map(|p| p.pid)
            .filter(|p| self.reaper.status(*p).is_none())
            .collect();
        let in_cgroup = || c.cgroup.as_ref().map(|cg| cg.pids()).unwrap_or_default();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            for pid in known
                .iter()
                .filter(|p| self.reaper.status(**p).is_none())
                .copied()
                .chain(in_cgroup())
            {
                match sysproc::kill(pid, nix::sys::signal::Signal::SIGKILL as i32) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(format!("kill pid {pid}: {e}")),
                }
            }
            let all = futures::future::join_all(known.iter().map(|p| self.reaper.wait(*p)));
            let done = tokio::time::timeout_at(deadline, all).await.is_ok() && in_cgroup().is_empty();
            if done {
                return Ok(format!("{} killed", known.len()));
            }
            if tokio::time::Instant::now() >= deadline {
                let left: Vec<String> = known
                    .iter()
                    .filter(|p| self.reaper.status(**p).is_none())
                    .copied()
                    .chain(in_cgroup())
                    .map(|p| p.to_string())
                    .collect();
                return Err(format!("still alive after {wait:?}: pids {}", left.join(",")));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn teardown_container(&self, c: &Container, wait: Duration) -> TeardownReport {
        let mut report = TeardownReport::default();
        report.run("kill", self.kill_all(c, wait).await);
        for p in c.processes() {
            p.stdout.abandon();
            p.stderr.abandon();
            p.close_stdin().await;
        }
        report.run("umount", self.unmount_owned_async(Owner::Container(c.id.clone())).await);
        report.run("cgroup", self.remove_cgroup(&c.id).await);
        report.run(
            "rmdir",
            remove_dir_same_fs(&c.dir)
                .map(|_| "removed".to_string())
                .map_err(|e| format!("{}: {e}", c.dir.display())),
        );
        report
    }

    /// Removes the cgroup of `id` (found by name, so a rollback and a
    /// second call find it too).
    async fn remove_cgroup(&self, id: &ContainerId) -> Result<String, String> {
        let cg = self.cgroups.child(id.as_str());
        let r = tokio::task::spawn_blocking(move || cg.remove())
            .await
            .map_err(|e| format!("cgroup task: {e}"))?;
        r.map(|_| "removed".to_string()).map_err(|e| e.to_string())
    }

    /// RemoveContainer. Idempotent: an id bosun removed answers OK; a
    /// teardown that failed halfway is finished by the next call.
    pub async fn remove_container(&self, id: &ContainerId, wait: Duration) -> Result<(), AgentError> {
        let c = match self.container(id) {
            Ok(c) => c,
            Err(e) => {
                return if self.state().removed.contains(id) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        };
        if c.is_pause && self.state().containers.len() > 1 {
            return Err(AgentError::WrongState {
                cid: id.clone(),
                state: "the pause container of a pod with workloads",
                action: "remove it first; remove the workloads or call DestroySandbox",
            });
        }
        let _op = c.op.lock().await;
        if !self.state().containers.contains_key(id) {
            return Ok(()); // a concurrent call finished the job while we waited
        }
        c.set_status(Status::Removing);
        let wait = if wait.is_zero() { DEFAULT_KILL_WAIT } else { wait };
        let report = self.teardown_container(&c, wait).await;
        if !report.ok() {
            warn!(self.log, "container teardown incomplete"; "cid" => %id, "report" => %report);
            return Err(AgentError::TeardownIncomplete {
                what: format!("container {id:?}"),
                failures: report.failures(),
            });
        }
        for p in c.processes() {
            self.reaper.forget(p.pid);
        }
        let mut st = self.state();
        st.containers.remove(id);
        st.removed.insert(id.clone());
        drop(st);
        info!(self.log, "container removed"; "cid" => %id, "report" => %report);
        Ok(())
    }

    /// Undoes a create that failed: kill the process if one exists, then
    /// the same unmount and directory steps as RemoveContainer.
    pub(super) async fn rollback(&self, id: &ContainerId, dir: &std::path::Path, pid: Option<i32>) {
        let mut report = TeardownReport::default();
        if let Some(pid) = pid {
            let _ = sysproc::kill(pid, nix::sys::signal::Signal::SIGKILL as i32);
            let waited = tokio::time::timeout(DEFAULT_KILL_WAIT, self.reaper.wait(pid)).await;
            report.run(
                "kill",
                waited
                    .map(|_| "1 killed".to_string())
                    .map_err(|_| format!("pid {pid} still alive")),
            );
            self.reaper.forget(pid);
        }
        report.run("umount", self.unmount_owned_async(Owner::Container(id.clone())).await);
        report.run("cgroup", self.remove_cgroup(id).await);
        report.run(
            "rmdir",
            remove_dir_same_fs(dir)
                .map(|_| "removed".to_string())
                .map_err(|e| e.to_string()),
        );
        info!(self.log, "create rolled back"; "cid" => %id, "report" => %report);
    }

    pub(super) async fn teardown_sandbox_storages(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        report.run("umount", self.unmount_owned_async(Owner::Sandbox).await);
        report
    }

    /// DestroySandbox: workloads first, then the pause container, then the
    /// sandbox storages and directory. Idempotent.
    pub async fn destroy_sandbox(&self) -> Result<(), AgentError> {
        let mut failures = Vec::new();
        let all = self.containers();
        let (pause, workloads): (Vec<Arc<Container>>, Vec<Arc<Container>>) = all.into_iter().partition(|c| c.is_pause);
        for c in workloads.iter().chain(pause.iter()) {
            if let Err(e) = self.remove_container(&c.id, DEFAULT_KILL_WAIT).await {
                failures.push(e.to_string());
            }
        }
        let mut report = self.teardown_sandbox_storages().await;
        report.run(
            "rmdir",
            remove_dir_same_fs(&self.sandbox_dir())
                .map(|_| "removed".to_string())
                .map_err(|e| e.to_string()),
        );
        let _ = std::fs::remove_dir(self.containers_dir());
        self.cgroups.remove_if_empty();
        if !report.ok() {
            failures.push(report.failures());
        }
        if !failures.is_empty() {
            return Err(AgentError::TeardownIncomplete {
                what: "sandbox".into(),
                failures: failures.join("; "),
            });
        }
        let mut st = self.state();
        let sid = st.sandbox.take().map(|s| s.id).unwrap_or_default();
        st.removed.clear();
        drop(st);
        info!(self.log, "sandbox destroyed"; "sid" => sid);
        Ok(())
    }
}
