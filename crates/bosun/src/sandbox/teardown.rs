//! RemoveContainer, DestroySandbox and the rollback of a failed create: one
//! teardown path that runs every step, collects what failed, and can be
//! called again to finish.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use slog::{info, warn, Logger};

use super::Sandbox;
use crate::container::Container;
use crate::ids::ContainerId;
use crate::mount::fsutil::remove_dir_same_fs;
use crate::mount::ledger::{Kind, Ledger, Owner, Whose};
use crate::mount::umount::{self, Unmounted, BUSY_INTERVAL, BUSY_RETRIES};
use crate::sync::lock;
use crate::sys::process as sysproc;

/// How long processes get to exit on SIGTERM before SIGKILL. Short: a
/// remove is a forced stop, and a PID 1 without a SIGTERM handler (common
/// in containers) ignores SIGTERM, so every such remove pays it in full.
pub const TERM_GRACE: Duration = Duration::from_millis(500);

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
    let entries = lock(ledger).owned_by(owner);
    let (mut done, mut gone, mut errors) = (0, 0, Vec::new());
    for e in entries {
        let r = match e.kind {
            Kind::Mount => unmount_entry(&e),
            // A directory bosun created goes whole (never across a mount);
            // one that was there before is the owner's, and stays.
            Kind::Dir if e.created_dirs.contains(&e.target) => remove_dir_same_fs(&e.target)
                .map(|_| Unmounted::Done)
                .map_err(|err| format!("remove {}: {err}", e.target.display())),
            Kind::Dir => Ok(Unmounted::AlreadyGone),
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
                crate::mount::storage::remove_created(&e.created_dirs);
                lock(ledger).remove(e.seq);
                crate::faults::crash_point("remove-after-unmount");
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

/// Unmounts an entry's mount if, by identity, the mount on top at its
/// target is the one bosun made (`Entry::whose`): a mount someone else
/// made at the same path is never unmounted.
fn unmount_entry(e: &crate::mount::ledger::Entry) -> Result<Unmounted, String> {
    let table = crate::mount::mountinfo::table().map_err(|err| format!("read mountinfo: {err}"))?;
    match e.whose(&table) {
        Whose::Ours => umount::unmount(&e.target, BUSY_RETRIES, BUSY_INTERVAL).map_err(|err| err.to_string()),
        Whose::Gone => Ok(Unmounted::AlreadyGone),
        Whose::NotOurs(why) => Err(why),
    }
}

impl Sandbox {
    pub(super) async fn unmount_owned_async(&self, owner: Owner) -> Result<String, String> {
        // Nothing recorded (a rootfs the runtime mounted, no storages): no
        // trip to a blocking thread.
        if !lock(&self.ledger).owns_any(&owner) {
            return Ok("0 unmounted, 0 already gone".to_string());
        }
        let (ledger, log) = (self.ledger.clone(), self.log.clone());
        tokio::task::spawn_blocking(move || unmount_owned(&ledger, &owner, &log))
            .await
            .map_err(|e| format!("unmount task: {e}"))?
    }

    /// Stops every live process of `c` (the ones bosun started and any other
    /// task in its cgroup): SIGTERM, up to `TERM_GRACE` for them to exit,
    /// then SIGKILL until all are reaped and the cgroup is empty, within
    /// `wait` in all.
    async fn kill_all(&self, c: &Container, wait: Duration) -> Result<String, String> {
        crate::sync::lock(&c.gate).take(); // a created container's init would wait forever
        if let Some(cg) = &c.cgroup {
            let _ = cg.freeze(false); // frozen tasks cannot act on signals
        }
        let known: Vec<std::sync::Arc<crate::process::Process>> = c
            .processes()
            .into_iter()
            .filter(|p| p.exit_status().is_none())
            .collect();
        let alive = || {
            let mut v: Vec<i32> = known
                .iter()
                .filter(|p| p.exit_status().is_none())
                .map(|p| p.pid)
                .collect();
            v.extend(c.cgroup.as_ref().map(|cg| cg.pids()).unwrap_or_default());
            v
        };
        let signal_all = |sig: nix::sys::signal::Signal| -> Result<(), String> {
            for pid in alive() {
                // bosun never signals itself or the guest's init, whatever
                // put them in the container's cgroup.
                self.guard.check_pid(pid).map_err(|e| e.to_string())?;
                match sysproc::kill(pid, sig as i32) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(e) => return Err(format!("{sig} to pid {pid}: {e}")),
                }
            }
            Ok(())
        };
        let start = tokio::time::Instant::now();
        let deadline = start + wait;
        let all_reaped = || futures::future::join_all(known.iter().map(|p| p.wait()));
        if !alive().is_empty() {
            signal_all(nix::sys::signal::Signal::SIGTERM)?;
            let _ = tokio::time::timeout_at(start + TERM_GRACE.min(wait), all_reaped()).await;
        }
        loop {
            if alive().is_empty() {
                return Ok(format!("{} stopped in {} ms", known.len(), start.elapsed().as_millis()));
            }
            if tokio::time::Instant::now() >= deadline {
                let left: Vec<String> = alive().iter().map(|p| p.to_string()).collect();
                return Err(format!("still alive after {wait:?}: pids {}", left.join(",")));
            }
            signal_all(nix::sys::signal::Signal::SIGKILL)?;
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
                all_reaped(),
            )
            .await;
        }
    }

    pub(super) async fn teardown_container(&self, c: &Container, wait: Duration) -> TeardownReport {
        let mut report = TeardownReport::default();
        self.drop_watches(&c.id);
        report.run("kill", self.kill_all(c, wait).await);
        crate::faults::crash_point("remove-after-kill");
        // poststop hooks: a failure is logged (in run_hooks), not fatal.
        let _ = self.run_hooks(super::hooks::HookKind::Poststop, c).await;
        for p in c.processes() {
            p.release_monitor();
            p.stdout.abandon();
            p.stderr.abandon();
            p.close_stdin().await;
        }
        // Monitors of execs a crash kept out of the record: only a
        // container from before a restart can have one, and the scan reads
        // every process's cmdline (0.2 ms with 75 processes).
        if c.readopted {
            for (pid, config) in crate::process::monitor::monitors_under(&c.dir) {
                crate::process::monitor::kill_monitor(pid, &config);
            }
        }
        let owner = Owner::Container(c.id.clone());
        let had_layers = lock(&self.ledger).reads_layers(&owner);
        report.run("umount", self.unmount_owned_async(owner).await);
        if had_layers {
            report.run("image layers", self.collect_layers().await);
        }
        let cg = c
            .cgroup
            .clone()
            .unwrap_or_else(|| self.cgroups.child(Path::new(c.id.as_str())));
        report.run("cgroup", self.remove_cgroup(cg).await);
        crate::faults::crash_point("remove-after-cgroup");
        report.run(
            "rmdir",
            remove_dir_same_fs(&c.dir)
                .map(|_| "removed".to_string())
                .map_err(|e| format!("{}: {e}", c.dir.display())),
        );
        report
    }

    /// Removes a container's cgroup (and its empty ancestors below the
    /// agent's parent).
    async fn remove_cgroup(&self, cg: crate::cgroup::Cgroup) -> Result<String, String> {
        let r = tokio::task::spawn_blocking(move || cg.remove())
            .await
            .map_err(|e| format!("cgroup task: {e}"))?;
        r.map(|_| "removed".to_string()).map_err(|e| e.to_string())
    }

    /// Undoes a create that failed (see `create_container::Undo`): kills
    /// its process if one exists, then the same unmount, cgroup and
    /// directory steps as RemoveContainer, for what it got to make.
    pub(super) async fn rollback(
        &self,
        id: &ContainerId,
        dir: Option<&Path>,
        pid: Option<i32>,
        cgroup: Option<crate::cgroup::Cgroup>,
    ) {
        self.drop_watches(id);
        let mut report = TeardownReport::default();
        if let Some(pid) = pid {
            // The process is the monitor's child: when it died before its
            // monitor was ended, the monitor reaped it and bosun's reaper
            // never hears of it. Its pidfd tells its exit either way, and
            // the signal goes to it and to no process that reused its pid.
            let killed = match crate::sys::pidfd::open(pid) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok("already gone".to_string()),
                Err(e) => Err(format!("pidfd of {pid}: {e}")),
                Ok(fd) => {
                    let _ = crate::sys::pidfd::send_signal(&fd, nix::sys::signal::Signal::SIGKILL);
                    match tokio::time::timeout(DEFAULT_KILL_WAIT, crate::sys::pidfd::exited(&fd)).await {
                        Ok(Ok(())) => {
                            // A zombie of bosun's own: its reaper collects
                            // it first, so that the `forget` below leaves no
                            // status for a later process reusing the pid.
                            if crate::sys::pidfd::is_unreaped_child(&fd) {
                                let _ = tokio::time::timeout(DEFAULT_KILL_WAIT, self.reaper.wait(pid)).await;
                            }
                            Ok("1 killed".to_string())
                        }
                        Ok(Err(e)) => Err(format!("wait for {pid}: {e}")),
                        Err(_) => Err(format!("pid {pid} still alive")),
                    }
                }
            };
            report.run("kill", killed);
            self.reaper.forget(pid);
        }
        report.run("umount", self.unmount_owned_async(Owner::Container(id.clone())).await);
        if let Some(cg) = cgroup {
            report.run("cgroup", self.remove_cgroup(cg).await);
        }
        if let Some(dir) = dir {
            report.run(
                "rmdir",
                remove_dir_same_fs(dir)
                    .map(|_| "removed".to_string())
                    .map_err(|e| e.to_string()),
            );
        }
        info!(self.log, "create rolled back"; "cid" => %id, "report" => %report);
        self.keep_report(id.as_str(), format!("create rolled back: {report}"));
        let _ = self.persist();
    }
}
