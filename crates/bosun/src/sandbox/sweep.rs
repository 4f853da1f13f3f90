//! What a call cut off halfway, a crash or a restart can leave that no
//! container record holds: ledger entries of a container that was never
//! recorded, run directories of containers bosun does not know, and
//! cgroups under the agent's parent that belong to no container. All of it
//! is bosun's by construction (its ledger, its run directory, its cgroup
//! parent), so it is removed; nothing outside those three is touched.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use slog::warn;

use super::teardown::{TeardownReport, DEFAULT_KILL_WAIT};
use super::Sandbox;
use crate::cgroup::Cgroup;
use crate::ids::ContainerId;
use crate::mount::fsutil::remove_dir_same_fs;
use crate::mount::ledger::Owner;

/// How often a swept cgroup is checked for its last task.
const EMPTY_POLL: Duration = Duration::from_millis(10);

impl Sandbox {
    /// Removes the orphans described above, each kind a report step.
    pub(super) async fn sweep_orphans(&self, report: &mut TeardownReport) {
        let known: HashSet<ContainerId> = {
            let st = self.state();
            st.containers.keys().chain(st.creating.keys()).cloned().collect()
        };
        let mut owners: Vec<ContainerId> = crate::sync::lock(&self.ledger)
            .all()
            .iter()
            .filter_map(|e| match &e.owner {
                Owner::Container(id) if !known.contains(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        owners.sort();
        owners.dedup();
        let mut errors = Vec::new();
        for id in &owners {
            warn!(self.log, "unmounting what a cut-off create left"; "cid" => %id);
            if let Err(e) = self.unmount_owned_async(Owner::Container(id.clone())).await {
                errors.push(e);
            }
        }
        report.run("orphan mounts", outcome(owners.len(), errors));
        report.run("orphan monitors", self.sweep_monitors(&known));
        report.run("orphan dirs", self.sweep_dirs(&known));
        let cgroups: Vec<Cgroup> = self.containers().iter().filter_map(|c| c.cgroup.clone()).collect();
        let (parent, guard, log) = (self.cgroups.clone(), self.guard.clone(), self.log.clone());
        let swept = tokio::task::spawn_blocking(move || sweep_cgroups(&parent, &cgroups, &guard, &log))
            .await
            .unwrap_or_else(|e| Err(format!("cgroup sweep task: {e}")));
        report.run("orphan cgroups", swept);
    }

    /// Monitors of containers bosun has no record of (a create cut off
    /// after its process started): they are outside the container's
    /// cgroup, so the cgroup sweep would not end them.
    fn sweep_monitors(&self, known: &HashSet<ContainerId>) -> Result<String, String> {
        let dir = self.containers_dir();
        let mut n = 0;
        for (pid, config) in crate::process::monitor::monitors_under(&dir) {
            let cid = config
                .strip_prefix(&dir)
                .ok()
                .and_then(|r| r.iter().next())
                .map(|c| c.to_string_lossy().into_owned());
            if cid
                .and_then(|c| ContainerId::parse(&c).ok())
                .is_some_and(|id| known.contains(&id))
            {
                continue;
            }
            warn!(self.log, "ending the monitor of a container bosun has no record of"; "pid" => pid, "config" => %config.display());
            crate::process::monitor::kill_monitor(pid, &config);
            n += 1;
        }
        Ok(if n == 0 { "none".into() } else { format!("{n} ended") })
    }

    /// Run directories of containers bosun has no record of.
    fn sweep_dirs(&self, known: &HashSet<ContainerId>) -> Result<String, String> {
        let Ok(entries) = std::fs::read_dir(self.containers_dir()) else {
            return Ok("none".into());
        };
        let mut errors = Vec::new();
        let mut n = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ContainerId::parse(&name).is_ok_and(|id| known.contains(&id)) {
                continue;
            }
            n += 1;
            if let Err(err) = remove_dir_same_fs(&e.path()) {
                errors.push(format!("{}: {err}", e.path().display()));
            }
        }
        outcome(n, errors)
    }
}

/// Kills the tasks of every cgroup below `parent` that is not (and does
/// not hold) one of `known`, deepest first, and removes it.
fn sweep_cgroups(
    parent: &crate::cgroup::Parent,
    known: &[Cgroup],
    guard: &crate::protect::Guard,
    log: &slog::Logger,
) -> Result<String, String> {
    let orphans = parent.orphans(known);
    let mut errors = Vec::new();
    for cg in &orphans {
        warn!(log, "removing a cgroup no container owns"; "target" => ?cg.dirs.first().map(|(_, d)| d));
        if let Err(e) = kill_tasks(cg, guard) {
            errors.push(e);
            continue;
        }
        if let Err(e) = cg.remove() {
            errors.push(e.to_string());
        }
    }
    outcome(orphans.len(), errors)
}

/// SIGKILLs every task of `cg` and waits (bounded) until it is empty.
fn kill_tasks(cg: &Cgroup, guard: &crate::protect::Guard) -> Result<(), String> {
    let deadline = Instant::now() + DEFAULT_KILL_WAIT;
    loop {
        let pids = cg.pids();
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("tasks {pids:?} still alive after {DEFAULT_KILL_WAIT:?}"));
        }
        for pid in pids {
            guard.check_pid(pid).map_err(|e| e.to_string())?;
            let _ = crate::sys::process::kill(pid, nix::sys::signal::Signal::SIGKILL as i32);
        }
        std::thread::sleep(EMPTY_POLL);
    }
}

fn outcome(n: usize, errors: Vec<String>) -> Result<String, String> {
    if errors.is_empty() {
        Ok(format!("{n} removed"))
    } else {
        Err(errors.join(", "))
    }
}
