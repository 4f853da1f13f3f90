//! After a restart: the journal reloaded, live processes re-adopted,
//! dead ones marked exited, the mount ledger reconciled with mountinfo by
//! identity, and what a call cut short by the restart left swept.

use std::path::Path;
use std::sync::Arc;

use slog::{error, info, warn};

use super::persist::{ProcRecord, Snapshot};
use super::Sandbox;
use crate::container::{Container, ContainerInfo, Status};
use crate::ids::ContainerId;
use crate::journal::JournalError;
use crate::mount::ledger::{Kind, State, Whose};
use crate::process::monitor::{exit_file, reattach};
use crate::process::{Process, Streams};

impl Sandbox {
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
            let init = self.readopt(&r.dir, &r.init);
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
                    readopted: true,
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
                c.add_exec(self.readopt(&r.dir, e));
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

    /// A process of the journal: with its streams and its exit to come
    /// when its monitor still runs (it kept them while bosun was down),
    /// with the status its monitor wrote when it has ended.
    fn readopt(&self, dir: &Path, r: &ProcRecord) -> Arc<Process> {
        let kept = r.monitor.and_then(|(pid, start)| reattach(pid, start));
        let (streams, monitor, exit) = match kept {
            Some(k) if r.tty => {
                let streams = k.stdin.and_then(|m| Streams::terminal(m).ok());
                (streams.unwrap_or_else(Streams::closed), Some(k.monitor), k.exit)
            }
            Some(k) => (Streams::pipes(k.stdin, k.stdout, k.stderr), Some(k.monitor), k.exit),
            None => (Streams::closed(), None, None),
        };
        let p = Arc::new(Process::new(r.exec_id.clone(), r.pid, r.start_time, streams, monitor));
        if let Some(s) = r.exit {
            p.set_exit(s);
        }
        self.watch_exit(p.clone(), exit, exit_file(dir, &r.exec_id));
        p
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
