//! Writing the sandbox to the journal, and reading it back after a restart.
//! The record types are the sandbox's: the journal only stores them.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use slog::{error, info, warn};

use super::{Sandbox, SandboxSpec};
use crate::cgroup::Cgroup;
use crate::container::{Container, ContainerInfo, Status};
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::journal::{JournalError, Versioned};
use crate::mount::ledger::{Kind, Ledger, State, Whose};
use crate::process::Process;

/// Format version of `Snapshot`.
pub const VERSION: u32 = 1;

/// A process as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcRecord {
    /// Exec id (the container id for its init).
    pub exec_id: String,
    /// Pid in the agent's namespace.
    pub pid: i32,
    /// Start time (`process::start_time`): a pid reused by another
    /// process never matches.
    pub start_time: u64,
    /// Exit status, once known.
    pub exit: Option<i32>,
}

/// A container as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRecord {
    /// Id.
    pub id: String,
    /// Run directory.
    pub dir: PathBuf,
    /// Pause container.
    pub is_pause: bool,
    /// Protected from bulk operations.
    pub protected: bool,
    /// Own pid namespace.
    pub own_pid_ns: bool,
    /// Status when written.
    pub status: Status,
    /// Digest of the create request (idempotent create).
    pub digest: String,
    /// Its cgroup.
    pub cgroup: Option<Cgroup>,
    /// Init.
    pub init: ProcRecord,
    /// Exec'd processes.
    pub execs: Vec<ProcRecord>,
    /// Its CRI name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Everything bosun owns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Format version.
    pub version: u32,
    /// The sandbox, if created.
    pub sandbox: Option<SandboxSpec>,
    /// Containers.
    pub containers: Vec<ContainerRecord>,
    /// Ids removed (a second remove answers OK).
    pub removed: Vec<String>,
    /// The mount ledger.
    pub ledger: Ledger,
    /// Paths CopyFile created (removed at DestroySandbox).
    #[serde(default)]
    pub copied: Vec<PathBuf>,
    /// watchable-bind copies kept in step: (container, source, copy).
    #[serde(default)]
    pub watches: Vec<(String, PathBuf, PathBuf)>,
}

impl Versioned for Snapshot {
    const VERSION: u32 = VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

fn record(p: &Process, exit: Option<i32>) -> ProcRecord {
    ProcRecord {
        exec_id: p.exec_id.clone(),
        pid: p.pid,
        start_time: p.start_time,
        exit,
    }
}

impl Sandbox {
    fn snapshot(&self) -> Snapshot {
        let st = self.state();
        let containers = st
            .containers
            .values()
            .map(|c| {
                let procs = c.processes();
                ContainerRecord {
                    id: c.id.as_str().to_string(),
                    dir: c.dir.clone(),
                    is_pause: c.is_pause,
                    protected: c.protected,
                    own_pid_ns: c.own_pid_ns,
                    status: c.status(self.init_exited(c)),
                    digest: c.digest.clone(),
                    cgroup: c.cgroup.clone(),
                    init: record(&c.init, self.exit_of(&c.init)),
                    execs: procs.iter().skip(1).map(|p| record(p, self.exit_of(p))).collect(),
                    name: c.name.clone(),
                }
            })
            .collect();
        let removed = st.removed.iter().map(|i| i.as_str().to_string()).collect();
        let sandbox = st.sandbox.clone();
        let copied = st.copied.clone();
        let watches = st
            .watches
            .iter()
            .map(|(c, s, d)| (c.as_str().to_string(), s.clone(), d.clone()))
            .collect();
        drop(st);
        Snapshot {
            version: VERSION,
            sandbox,
            containers,
            removed,
            ledger: crate::sync::lock(&self.ledger).clone(),
            copied,
            watches,
        }
    }

    /// Writes the journal (or removes it when bosun owns nothing). Called
    /// after every change, before the reply.
    pub(crate) fn persist(&self) -> Result<(), AgentError> {
        // Snapshot and write in one: the file always holds the newest state.
        let _writer = self.journal.write_lock();
        let s = self.snapshot();
        let r = if s.sandbox.is_none() && s.containers.is_empty() && s.ledger.all().is_empty() && s.copied.is_empty() {
            self.journal.remove().map_err(|source| JournalError::WriteStateFile {
                path: self.journal.path().to_path_buf(),
                source,
            })
        } else {
            self.journal.save(&s)
        };
        r.map_err(|e| {
            error!(self.log, "journal write failed"; "error" => %e);
            AgentError::from(e)
        })
    }

    /// Reloads the journal after a restart: re-adopts live processes
    /// (pid + start time), marks dead ones exited, reconciles the mount
    /// ledger with mountinfo, and rolls back creates the restart cut short.
    pub async fn recover(&self) {
        let snap = match self.journal.load::<Snapshot>() {
            Ok(None) => return,
            Ok(Some(s)) => s,
            Err(e @ JournalError::Corrupt { .. }) => {
                // Nothing in it can be trusted: keep it for a human, act on none of it.
                let kept = self
                    .journal
                    .quarantine()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(could not move it: {e})"));
                error!(self.log, "state journal rejected; starting empty, touching nothing it described"; "error" => %e, "kept_as" => kept);
                return;
            }
            Err(e) => {
                error!(self.log, "state journal unreadable; starting empty"; "error" => %e);
                return;
            }
        };
        let mut adopted = 0;
        for r in &snap.containers {
            let Ok(id) = ContainerId::parse(&r.id) else { continue };
            let init = Arc::new(Process::adopted(
                r.init.exec_id.clone(),
                r.init.pid,
                r.init.start_time,
                r.init.exit,
            ));
            let c = Container::new(
                ContainerInfo {
                    id: id.clone(),
                    dir: r.dir.clone(),
                    is_pause: r.is_pause,
                    protected: r.protected,
                    own_pid_ns: r.own_pid_ns,
                    digest: r.digest.clone(),
                    init,
                    cgroup: r.cgroup.clone(),
                    name: r.name.clone(),
                },
                None,
                None,
            );
            c.set_status(if r.status == Status::Created {
                Status::Stopped
            } else {
                r.status
            });
            for e in &r.execs {
                c.add_exec(Arc::new(Process::adopted(
                    e.exec_id.clone(),
                    e.pid,
                    e.start_time,
                    e.exit,
                )));
            }
            adopted += 1;
            self.state().containers.insert(id, Arc::new(c));
        }
        {
            let mut st = self.state();
            st.sandbox = snap.sandbox.clone();
            st.removed = snap.removed.iter().filter_map(|i| ContainerId::parse(i).ok()).collect();
            st.copied = snap.copied.clone();
            st.watches = snap
                .watches
                .iter()
                .filter_map(|(c, s, d)| Some((ContainerId::parse(c).ok()?, s.clone(), d.clone())))
                .collect();
        }
        *crate::sync::lock(&self.ledger) = snap.ledger.clone();
        self.reconcile_ledger();
        // What a create or teardown cut short by the restart left: ledger
        // entries, run directories and cgroups of no recorded container.
        let mut swept = super::teardown::TeardownReport::default();
        self.sweep_orphans(&mut swept).await;
        if !swept.ok() {
            warn!(self.log, "leftovers of the previous run not all removed; DestroySandbox tries again"; "report" => %swept);
        }
        info!(self.log, "state recovered"; "containers" => adopted, "swept" => %swept, "sandbox" => snap.sandbox.map(|s| s.id).unwrap_or_default());
        let _ = self.persist();
    }

    /// Intended mounts: bosun's if mountinfo shows a new mount on top at
    /// the target since the intent (the crash came after mount(2)), with
    /// its identity recorded now; forgotten otherwise, with the
    /// directories bosun created for them.
    fn reconcile_ledger(&self) {
        let table = match crate::mount::mountinfo::table() {
            Ok(t) => t,
            Err(e) => {
                warn!(self.log, "mountinfo unreadable; intended mounts kept as they are"; "error" => %e);
                return;
            }
        };
        let mut ledger = crate::sync::lock(&self.ledger);
        let intended: Vec<_> = ledger
            .all()
            .iter()
            .filter(|e| e.state == State::Intended && e.kind == Kind::Mount)
            .cloned()
            .collect();
        for e in intended {
            match e.whose(&table) {
                Whose::Ours => {
                    let ident = crate::mount::mountinfo::top_at(&table, &e.target).map(|r| r.ident.clone());
                    ledger.mark_mounted(e.seq, ident);
                }
                Whose::Gone | Whose::NotOurs(_) => {
                    ledger.remove(e.seq);
                    crate::mount::storage::remove_created(&e.created_dirs);
                }
            }
        }
    }
}
