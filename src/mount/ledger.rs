//! The mount ledger: every mount (and storage directory) bosun makes is
//! recorded *before* it is made and marked done after; teardown walks only
//! these entries, newest first. Nothing bosun did not record is touched.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::ContainerId;

/// Who a mount belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Owner {
    /// The sandbox (sandbox-wide storages).
    Sandbox,
    /// One container.
    Container(ContainerId),
}

/// What an entry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A mount at `target`.
    Mount,
    /// A directory bosun created for a `local` storage; removed at teardown.
    Dir,
}

/// How far an entry got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Recorded; the mount call may or may not have happened (a crash
    /// between the two is possible), so teardown treats it as maybe mounted.
    Intended,
    /// The mount call succeeded.
    Mounted,
}

/// One ledger entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Order of recording; teardown goes by descending `seq`.
    pub seq: u64,
    /// Owner.
    pub owner: Owner,
    /// Mount or directory.
    pub kind: Kind,
    /// Source as given to mount(2).
    pub source: String,
    /// Mount point.
    pub target: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Progress.
    pub state: State,
    /// Directories bosun created for this entry (the target and missing
    /// ancestors), deepest first: removed, if empty, after the unmount.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    /// Image layers the mount reads (an image overlay): in use while the
    /// entry exists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

/// The ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    next: u64,
    entries: Vec<Entry>,
}

impl Ledger {
    /// Records an intended mount; returns its sequence number.
    pub fn intend(&mut self, owner: Owner, kind: Kind, source: &str, target: &Path, fstype: &str) -> u64 {
        self.next += 1;
        let seq = self.next;
        self.entries.push(Entry {
            seq,
            owner,
            kind,
            source: source.to_string(),
            target: target.to_path_buf(),
            fstype: fstype.to_string(),
            state: State::Intended,
            created_dirs: Vec::new(),
            layers: Vec::new(),
        });
        seq
    }

    /// Records the directories created for an entry.
    pub fn set_created_dirs(&mut self, seq: u64, dirs: Vec<PathBuf>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.created_dirs = dirs;
        }
    }

    /// Records the image layers an entry's mount reads.
    pub fn set_layers(&mut self, seq: u64, layers: Vec<String>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.layers = layers;
        }
    }

    /// Whether an entry of `owner` reads image layers.
    pub fn reads_layers(&self, owner: &Owner) -> bool {
        self.entries.iter().any(|e| &e.owner == owner && !e.layers.is_empty())
    }

    /// Every image layer some entry reads.
    pub fn layers_in_use(&self) -> std::collections::HashSet<String> {
        self.entries.iter().flat_map(|e| e.layers.iter().cloned()).collect()
    }

    /// Marks an entry as mounted.
    pub fn mark_mounted(&mut self, seq: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.state = State::Mounted;
        }
    }

    /// Forgets an entry: its mount failed, or it was unmounted.
    pub fn remove(&mut self, seq: u64) {
        self.entries.retain(|e| e.seq != seq);
    }

    /// The entries of `owner`, newest first (the order to undo them in).
    pub fn owned_by(&self, owner: &Owner) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.entries.iter().filter(|e| &e.owner == owner).cloned().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.seq));
        v
    }

    /// Every entry, oldest first.
    pub fn all(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_order_per_owner() {
        let mut l = Ledger::default();
        let a = ContainerId::parse("a").unwrap();
        let s1 = l.intend(Owner::Sandbox, Kind::Mount, "tmpfs", Path::new("/run/s"), "tmpfs");
        let a1 = l.intend(
            Owner::Container(a.clone()),
            Kind::Mount,
            "/dev/loop0",
            Path::new("/run/a/1"),
            "ext4",
        );
        let a2 = l.intend(
            Owner::Container(a.clone()),
            Kind::Mount,
            "overlay",
            Path::new("/run/a/2"),
            "overlay",
        );
        l.mark_mounted(a1);
        let seqs: Vec<u64> = l.owned_by(&Owner::Container(a.clone())).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![a2, a1]);
        assert_eq!(l.owned_by(&Owner::Container(a.clone()))[1].state, State::Mounted);
        assert_eq!(l.owned_by(&Owner::Container(a.clone()))[0].state, State::Intended);
        l.remove(a2);
        assert_eq!(l.owned_by(&Owner::Container(a)).len(), 1);
        assert_eq!(l.owned_by(&Owner::Sandbox)[0].seq, s1);
    }
}
