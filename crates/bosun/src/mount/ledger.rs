//! The mount ledger: every mount (and storage directory) bosun makes is
//! recorded *before* it is made and marked done after; teardown walks only
//! these entries, newest first. Nothing bosun did not record is touched.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::mountinfo::{top_at, MountId, MountRecord};
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
    /// The mount bosun made, as mountinfo showed it right after mount(2):
    /// how teardown tells it from a mount someone else made at the same
    /// path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounted_as: Option<MountId>,
    /// The mount that was on top at the target before bosun's (none: the
    /// target was not a mount point). After a crash between mount(2) and
    /// recording its identity, a different top mount is bosun's; the same
    /// one means the mount never happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered: Option<MountId>,
}

/// Whose the mount at an entry's target is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Whose {
    /// bosun's, on top: unmounting the target unmounts it.
    Ours,
    /// bosun's mount is not there any more (or never was made).
    Gone,
    /// bosun's mount is there but something else is on top of it, or the
    /// top mount is not provably bosun's: reported, never unmounted.
    NotOurs(String),
}

impl Entry {
    /// Decides by identity, never by path alone, whether unmounting the
    /// target would unmount bosun's mount (see `mounted_as`, `covered`).
    pub fn whose(&self, table: &[MountRecord]) -> Whose {
        let top = top_at(table, &self.target);
        let not_ours = |why: &str| {
            Whose::NotOurs(format!(
                "{}: {why} (bosun mounted {} there); left in place",
                self.target.display(),
                self.fstype
            ))
        };
        match &self.mounted_as {
            Some(me) if top.is_some_and(|t| t.ident == *me) => Whose::Ours,
            // Under another mount at the same path. Elsewhere in the table,
            // the pair is not bosun's mount: the kernel reuses a freed mount
            // id and anonymous device (a tmpfs unmounted behind bosun's back,
            // then another tmpfs mounted anywhere, took both in the root suite).
            Some(me) if table.iter().any(|r| r.ident == *me && r.point == self.target) => {
                not_ours("another mount sits on bosun's")
            }
            Some(_) => Whose::Gone,
            None => match top {
                None => Whose::Gone,
                Some(t) if Some(&t.ident) == self.covered.as_ref() => Whose::Gone,
                // Identity not recorded (a crash right after mount(2), or
                // a journal from before identities): the top changed since
                // the intent was recorded and is of the type bosun mounted.
                Some(t) if self.fstype == "bind" || t.fstype == self.fstype => Whose::Ours,
                Some(t) => not_ours(&format!("the {} mount there is not provably bosun's", t.fstype)),
            },
        }
    }
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
            mounted_as: None,
            covered: None,
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

    /// Whether any entry is `owner`'s.
    pub fn owns_any(&self, owner: &Owner) -> bool {
        self.entries.iter().any(|e| &e.owner == owner)
    }

    /// Whether an entry of `owner` reads image layers.
    pub fn reads_layers(&self, owner: &Owner) -> bool {
        self.entries.iter().any(|e| &e.owner == owner && !e.layers.is_empty())
    }

    /// Every image layer some entry reads.
    pub fn layers_in_use(&self) -> std::collections::HashSet<String> {
        self.entries.iter().flat_map(|e| e.layers.iter().cloned()).collect()
    }

    /// Records what was on top at an entry's target before its mount.
    pub fn set_covered(&mut self, seq: u64, covered: Option<MountId>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.covered = covered;
        }
    }

    /// Marks an entry as mounted, as the mount `ident` (none for a
    /// directory entry).
    pub fn mark_mounted(&mut self, seq: u64, ident: Option<MountId>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.seq == seq) {
            e.state = State::Mounted;
            e.mounted_as = ident;
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
        l.mark_mounted(a1, None);
        let seqs: Vec<u64> = l.owned_by(&Owner::Container(a.clone())).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![a2, a1]);
        assert_eq!(l.owned_by(&Owner::Container(a.clone()))[1].state, State::Mounted);
        assert_eq!(l.owned_by(&Owner::Container(a.clone()))[0].state, State::Intended);
        l.remove(a2);
        assert_eq!(l.owned_by(&Owner::Container(a)).len(), 1);
        assert_eq!(l.owned_by(&Owner::Sandbox)[0].seq, s1);
    }

    #[test]
    fn a_mount_is_ours_by_identity_not_by_path() {
        let rec = |id: u32, parent: u32, fstype: &str| MountRecord {
            ident: MountId {
                id,
                dev: format!("0:{id}"),
            },
            parent,
            point: "/m".into(),
            fstype: fstype.into(),
            source: "x".into(),
        };
        let id = |n: u32| Some(rec(n, 1, "").ident);
        let entry = |state, mounted_as, covered| Entry {
            seq: 1,
            owner: Owner::Sandbox,
            kind: Kind::Mount,
            source: "tmpfs".into(),
            target: "/m".into(),
            fstype: "tmpfs".into(),
            state,
            created_dirs: Vec::new(),
            layers: Vec::new(),
            mounted_as,
            covered,
        };
        let (foreign, mine, over_mine) = (rec(40, 1, "tmpfs"), rec(41, 40, "tmpfs"), rec(42, 41, "tmpfs"));
        let cases = [
            (
                "ours on top",
                entry(State::Mounted, id(41), id(40)),
                vec![foreign.clone(), mine.clone()],
                "ours",
            ),
            (
                "ours gone, a foreign tmpfs at the path",
                entry(State::Mounted, id(41), id(40)),
                vec![foreign.clone()],
                "gone",
            ),
            (
                "ours under another",
                entry(State::Mounted, id(41), None),
                vec![foreign.clone(), mine.clone(), over_mine],
                "not",
            ),
            (
                "ours gone, its id and device reused by a mount elsewhere",
                entry(State::Mounted, id(41), id(40)),
                vec![
                    foreign.clone(),
                    MountRecord {
                        point: "/elsewhere".into(),
                        ..mine.clone()
                    },
                ],
                "gone",
            ),
            (
                "intended, never mounted, foreign below",
                entry(State::Intended, None, id(40)),
                vec![foreign.clone()],
                "gone",
            ),
            (
                "intended, mounted before the crash",
                entry(State::Intended, None, id(40)),
                vec![foreign.clone(), mine.clone()],
                "ours",
            ),
            (
                "intended on a bare path",
                entry(State::Intended, None, None),
                vec![],
                "gone",
            ),
            (
                "intended, another type on top",
                entry(State::Intended, None, None),
                vec![rec(41, 1, "ext4")],
                "not",
            ),
        ];
        for (i, (what, e, table, want)) in cases.into_iter().enumerate() {
            let got = match e.whose(&table) {
                Whose::Ours => "ours",
                Whose::Gone => "gone",
                Whose::NotOurs(_) => "not",
            };
            assert_eq!(got, want, "test[{i}]: {what}");
        }
    }
}
