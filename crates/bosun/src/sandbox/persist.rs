//! Writing the sandbox to the journal (`recover.rs` reads it back after a
//! restart). The record types are the sandbox's: the journal only stores
//! them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use slog::error;

use super::{Sandbox, SandboxSpec};
use crate::cgroup::Cgroup;
use crate::container::Status;
use crate::error::AgentError;
use crate::journal::{JournalError, Versioned};
use crate::mount::ledger::Ledger;
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
    /// Its monitor's pid and start time, while it has one.
    #[serde(default)]
    pub monitor: Option<(i32, u64)>,
    /// It runs on a terminal (the monitor keeps the master).
    #[serde(default)]
    pub tty: bool,
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

fn record(p: &Process) -> ProcRecord {
    ProcRecord {
        exec_id: p.exec_id.clone(),
        pid: p.pid,
        start_time: p.start_time,
        exit: p.exit_status(),
        monitor: p.monitor.as_ref().map(|m| (m.pid, m.start_time)),
        tty: p.tty.is_some(),
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
                    init: record(&c.init),
                    execs: procs.iter().skip(1).map(|p| record(p)).collect(),
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
}
