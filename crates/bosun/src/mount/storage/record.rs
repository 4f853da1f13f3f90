//! The ledger's sequence for one storage, written once for every driver:
//! record the intent, create the missing directories, note what was on
//! top at the target, journal, act, then mark it done, or forget it and
//! remove what it created.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::{io_errno, make_dirs, remove_created};
use crate::mount::ledger::{Kind, Ledger, Owner};
use crate::mount::mountinfo::{self, MountId};
use crate::mount::MountError;

/// Where a storage goes in the ledger, and how its intent is journaled.
pub struct Record<'a> {
    /// The ledger.
    pub ledger: &'a std::sync::Mutex<Ledger>,
    /// Whose the storage is.
    pub owner: &'a Owner,
    /// Its mount point.
    pub target: &'a Path,
    /// Writes the journal (the intent on disk before the act).
    pub journal: &'a dyn Fn(),
}

impl Record<'_> {
    /// A mount: `mount` is the mount(2) call; the mount's identity is
    /// read from mountinfo right after it (see `Entry::whose`).
    pub fn mount(
        &self,
        source: &str,
        fstype: &str,
        layers: &[String],
        mount: impl FnOnce() -> Result<(), Errno>,
    ) -> Result<(), MountError> {
        self.run(Kind::Mount, source, fstype, layers, |_| {
            mount().map_err(|errno| self.error("mount", source, errno))?;
            // Unreadable, teardown falls back to the type check.
            Ok(mountinfo::identity_at(self.target).ok().flatten())
        })
    }

    /// A directory bosun makes (and removes whole at teardown, if it made
    /// the mount point itself): `act` fills it, given the directories
    /// created for it.
    pub fn dir(
        &self,
        source: &str,
        what: &str,
        act: impl FnOnce(&[PathBuf]) -> Result<(), MountError>,
    ) -> Result<(), MountError> {
        self.run(Kind::Dir, source, what, &[], |created| act(created).map(|_| None))
    }

    /// A failure at the target.
    pub fn error(&self, op: &'static str, source: &str, errno: Errno) -> MountError {
        MountError {
            op,
            target: self.target.to_path_buf(),
            from: Some(source.to_string()),
            errno,
        }
    }

    fn run(
        &self,
        kind: Kind,
        source: &str,
        fstype: &str,
        layers: &[String],
        act: impl FnOnce(&[PathBuf]) -> Result<Option<MountId>, MountError>,
    ) -> Result<(), MountError> {
        let ledger = || crate::sync::lock(self.ledger);
        let seq = ledger().intend(self.owner.clone(), kind, source, self.target, fstype);
        ledger().set_layers(seq, layers.to_vec());
        let undo = |created: &[PathBuf]| {
            ledger().remove(seq);
            remove_created(created);
        };
        let created = make_dirs(self.target).map_err(|e| {
            undo(&[]);
            self.error("mkdir", source, io_errno(&e))
        })?;
        ledger().set_created_dirs(seq, created.clone());
        if kind == Kind::Mount {
            let covered = mountinfo::identity_at(self.target).map_err(|e| {
                undo(&created);
                self.error("read mountinfo", source, io_errno(&e))
            })?;
            ledger().set_covered(seq, covered);
        }
        (self.journal)();
        crate::faults::crash_point("storage-before-mount");
        match act(&created) {
            Ok(ident) => {
                ledger().mark_mounted(seq, ident);
                Ok(())
            }
            Err(e) => {
                undo(&created);
                Err(e)
            }
        }
    }
}
