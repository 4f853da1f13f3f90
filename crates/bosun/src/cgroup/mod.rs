//! Container cgroups on v1 (one hierarchy per controller) and v2 (unified):
//! create, join, limit, freeze, kill, stats, remove.
//!
//! Each agent keeps its containers under one parent (`--cgroup-parent`,
//! default `bosun`), nested under the agent's own cgroup, and only ever
//! removes directories it created there.

pub mod agent;
pub mod resources;
pub mod stats;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers bosun uses. cpuacct gives usage; freezer pauses.
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "blkio", "freezer"];
/// v2 controllers bosun enables for its children.
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io"];
/// rmdir of a cgroup whose last task just died can briefly fail with EBUSY.
const RMDIR_RETRIES: u32 = 50;
const RMDIR_INTERVAL: Duration = Duration::from_millis(10);

/// Which cgroup layout the guest has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

/// Detects the layout from /sys/fs/cgroup.
pub fn detect() -> Version {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// The agent's own cgroup path in a hierarchy ("" for v2's line "0::"),
/// from the text of /proc/self/cgroup.
fn own_path(text: &str, controller: Option<&str>) -> String {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        if hit {
            return path.trim_start_matches('/').to_string();
        }
    }
    String::new()
}

/// How the helper puts the container's process in its cgroup.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupJoin {
    /// No cgroup (the guest has no usable cgroup filesystem).
    #[default]
    None,
    /// v1: the helper writes "0" to each hierarchy's `tasks` file.
    V1Tasks(Vec<PathBuf>),
    /// v2: the helper forks the process straight into this directory.
    V2Dir(PathBuf),
}

/// One container's cgroup (a directory per controller on v1).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// Layout.
    pub version: Version,
    /// v2: one directory; v1: (controller, directory) pairs.
    pub dirs: Vec<(String, PathBuf)>,
    /// How many path components the cgroup lies below the agent's parent
    /// (1 for `<parent>/<id>`; more for a nested `cgroupsPath`): removal
    /// walks up that far, removing the ancestors that are empty.
    #[serde(default = "one_level")]
    pub levels: usize,
}

fn one_level() -> usize {
    1
}

/// Deepest `cgroupsPath` bosun accepts: kubelet's deepest is
/// `kubepods/<qos>/pod<uid>/<cid>` (4), systemd's expansion of it 5.
const MAX_CGROUP_DEPTH: usize = 16;

/// Where a container's cgroup lies below the agent's parent: the spec's
/// `cgroupsPath` when given, else the container id.
///
/// - cgroupfs form, `/kubepods/burstable/pod<uid>/<cid>`: that path,
///   made relative (nested under bosun's own cgroup, so nothing escapes it);
/// - systemd form, `slice:prefix:name` (containerd and CRI-O with the
///   systemd driver): the slice expanded as systemd does
///   (`kubepods-burstable.slice` is `kubepods.slice/kubepods-burstable.slice`)
///   and the unit `prefix-name.scope` below it, as runc lays it out on
///   cgroupfs; there is no systemd in the guest to ask.
pub fn relative_path(id: &str, cgroups_path: &str) -> Result<PathBuf, String> {
    let parts: Vec<String> = if cgroups_path.is_empty() {
        vec![id.to_string()]
    } else if !cgroups_path.starts_with('/') && cgroups_path.matches(':').count() == 2 {
        systemd_path(cgroups_path)?
    } else {
        cgroups_path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    if parts.is_empty() || parts.len() > MAX_CGROUP_DEPTH {
        return Err(format!("{cgroups_path:?}: 1 to {MAX_CGROUP_DEPTH} path components"));
    }
    for c in &parts {
        let bad_char = c.chars().any(|ch| ch.is_control() || ch == '/');
        if c == "." || c == ".." || c.len() > 255 || bad_char {
            return Err(format!("{cgroups_path:?}: bad path component {c:?}"));
        }
    }
    Ok(parts.iter().collect())
}

/// `slice:prefix:name` as runc's systemd driver names it.
fn systemd_path(p: &str) -> Result<Vec<String>, String> {
    let mut it = p.splitn(3, ':');
    let (slice, prefix, name) = (
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
        it.next().unwrap_or(""),
    );
    if name.is_empty() {
        return Err(format!("{p:?}: systemd form is slice:prefix:name with a name"));
    }
    let mut out = Vec::new();
    if !slice.is_empty() && slice != "-.slice" {
        let base = slice
            .strip_suffix(".slice")
            .filter(|b| !b.is_empty() && !b.starts_with('-') && !b.ends_with('-') && !b.contains("--"))
            .ok_or_else(|| format!("{p:?}: bad slice {slice:?}"))?;
        let mut acc = String::new();
        for word in base.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(word);
            out.push(format!("{acc}.slice"));
        }
    }
    out.push(if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    });
    Ok(out)
}

/// Where an agent's cgroups live.
#[derive(Clone, Debug)]
pub struct Parent {
    version: Version,
    /// (controller, directory) of the parent: found once, at start (the
    /// agent's own cgroup does not move), not at every container.
    dirs: Vec<(String, PathBuf)>,
}

impl Parent {
    /// Containers go under `name` (one path component).
    pub fn new(name: &str) -> Self {
        let version = detect();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let dirs = match version {
            Version::V2 => vec![(String::new(), Path::new(ROOT).join(own_path(&own, None)).join(name))],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| (c.to_string(), Path::new(ROOT).join(c)))
                .filter(|(_, p)| p.join("cgroup.procs").exists())
                .map(|(c, p)| {
                    let own = own_path(&own, Some(&c));
                    (c, p.join(own).join(name))
                })
                .collect(),
        };
        Self { version, dirs }
    }

    /// The cgroup at `rel` below the parent (see `relative_path`; not
    /// created).
    pub fn child(&self, rel: &Path) -> Cgroup {
        Cgroup {
            version: self.version,
            dirs: self.dirs.iter().map(|(c, p)| (c.clone(), p.join(rel))).collect(),
            levels: rel.components().count().max(1),
        }
    }

    /// The cgroups below the parent that are neither one of `known` nor
    /// hold one, deepest first (a create cut short, a crash): bosun made
    /// every directory under its parent, so these are its own leftovers.
    /// A known cgroup's own sub-cgroups (made by its workload) are its.
    pub fn orphans(&self, known: &[Cgroup]) -> Vec<Cgroup> {
        let Some((_, root)) = self.dirs.first() else {
            return Vec::new();
        };
        let known: Vec<&Path> = known
            .iter()
            .filter_map(|c| c.dirs.first().map(|(_, d)| d.as_path()))
            .collect();
        let mut out = Vec::new();
        let mut stack = vec![(root.clone(), false)];
        // Post-order: a directory after everything below it.
        while let Some((dir, visited)) = stack.pop() {
            let holds_known = known.iter().any(|k| k.starts_with(&dir));
            let inside_known = known.iter().any(|k| dir.starts_with(k));
            if inside_known {
                continue;
            }
            if visited {
                if !holds_known && dir != *root {
                    if let Ok(rel) = dir.strip_prefix(root) {
                        out.push(Cgroup {
                            levels: 1,
                            ..self.child(rel)
                        });
                    }
                }
                continue;
            }
            stack.push((dir.clone(), true));
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), false));
                    }
                }
            }
        }
        out
    }

    /// Removes the parent directories if empty (at DestroySandbox).
    pub fn remove_if_empty(&self) {
        for (_, d) in &self.dirs {
            let _ = fs::remove_dir(d);
        }
    }

    /// Creates the cgroup at `rel`, enabling v2 controllers on the way
    /// down (a nested leaf gets them only if every ancestor passes them on).
    pub fn create(&self, rel: &Path) -> io::Result<Cgroup> {
        let cg = self.child(rel);
        if self.version == Version::V2 {
            let parent = &self.dirs[0].1;
            fs::create_dir_all(parent)?;
            let mut chain = vec![parent.parent().unwrap_or(Path::new(ROOT)).to_path_buf(), parent.clone()];
            let mut at = parent.clone();
            for c in rel.parent().into_iter().flat_map(|p| p.components()) {
                at.push(c);
                fs::create_dir_all(&at)?;
                chain.push(at.clone());
            }
            // Best effort: a controller the kernel lacks is skipped; the
            // limits and stats that need it report it missing.
            for dir in chain {
                for c in V2_CONTROLLERS {
                    let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
        }
        for (_, d) in &cg.dirs {
            fs::create_dir_all(d)?;
        }
        Ok(cg)
    }
}

impl Cgroup {
    /// The directory of `controller` (v2: the one directory).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match self.version {
            Version::V2 => self.dirs.first().map(|(_, p)| p.as_path()),
            Version::V1 => self
                .dirs
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, p)| p.as_path()),
        }
    }

    /// How a new process gets in, for the helper (`bosun init`).
    ///
    /// v1: the helper writes "0" to each `tasks` file. Moving the writer's
    /// own thread is the one migration the kernel makes without
    /// write-locking the global threadgroup rwsem, whose first writer after
    /// an idle spell waits out an RCU grace period (about 7 ms per container
    /// on a 2-core VM, measured). The helper is single-threaded, so its
    /// thread is the whole process.
    /// v2: the helper's fork puts the child in the directory at birth
    /// (CLONE_INTO_CGROUP), with no migration at all.
    pub fn join(&self) -> CgroupJoin {
        match self.version {
            Version::V1 => CgroupJoin::V1Tasks(self.dirs.iter().map(|(_, d)| d.join("tasks")).collect()),
            Version::V2 => self
                .dirs
                .first()
                .map(|(_, d)| CgroupJoin::V2Dir(d.clone()))
                .unwrap_or_default(),
        }
    }

    /// Pids in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let Some((_, d)) = self.dirs.first() else {
            return Vec::new();
        };
        fs::read_to_string(d.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many tasks the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (controller_file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let Some(d) = self.dir("memory") else { return 0 };
        fs::read_to_string(d.join(controller_file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Freezes (true) or thaws (false) every process.
    pub fn freeze(&self, frozen: bool) -> io::Result<()> {
        match self.version {
            Version::V2 => fs::write(
                self.dir("").expect("v2 dir").join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
            Version::V1 => {
                let d = self
                    .dir("freezer")
                    .ok_or_else(|| io::Error::other("no freezer controller"))?;
                fs::write(d.join("freezer.state"), if frozen { "FROZEN" } else { "THAWED" })
            }
        }
    }

    /// Removes every directory; a missing one is done. EBUSY (the last
    /// task is still exiting) is retried briefly. Then the ancestors up to
    /// the agent's parent that are empty now (a nested `cgroupsPath`); one
    /// still holding another container's cgroup stays, and the removal of
    /// that container takes it.
    pub fn remove(&self) -> io::Result<()> {
        for (_, d) in &self.dirs {
            let mut tries = 0;
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) && tries < RMDIR_RETRIES => {
                        tries += 1;
                        std::thread::sleep(RMDIR_INTERVAL);
                    }
                    Err(e) => return Err(io::Error::new(e.kind(), format!("rmdir {}: {e}", d.display()))),
                }
            }
            for up in d.ancestors().skip(1).take(self.levels.saturating_sub(1)) {
                match fs::remove_dir(up) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => break, // in use by a sibling: its removal takes it
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_in_both_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("c1")),
            ("/kubepods/besteffort/pod1234/c1", Some("kubepods/besteffort/pod1234/c1")),
            ("kubepods/c1", Some("kubepods/c1")),
            (
                "kubepods-besteffort-pod1234.slice:cri-containerd:c1",
                Some("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice/cri-containerd-c1.scope"),
            ),
            ("system.slice:docker:c1", Some("system.slice/docker-c1.scope")),
            (":crio:c1", Some("crio-c1.scope")),
            ("-.slice::c1", Some("c1.scope")),
            ("machine.slice:x:sub.slice", Some("machine.slice/sub.slice")),
            ("/kubepods/../../escape", None),
            ("/a/./b", None),
            ("/", None),
            ("bad-.slice:p:c1", None),
            ("a--b.slice:p:c1", None),
            ("kubepods.slice:p:", None),
            ("/a/b\nc", None),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let got = relative_path("c1", input).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "test[{i}]: {input:?}");
        }
        let deep = "/x".repeat(MAX_CGROUP_DEPTH + 1);
        assert!(relative_path("c1", &deep).is_err());
    }
}
