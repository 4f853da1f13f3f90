//! Container cgroups on v1 (one hierarchy per controller) and v2 (unified):
//! create, join, limit, freeze, kill, stats, remove.
//!
//! Each agent keeps its containers under one parent (`--cgroup-parent`,
//! default `bosun`), nested under the agent's own cgroup, and only ever
//! removes directories it created there.

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

/// The agent's own cgroup path in a hierarchy ("" for v2's line "0::").
fn own_path(controller: Option<&str>) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
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

/// One container's cgroup (a directory per controller on v1).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// Layout.
    pub version: Version,
    /// v2: one directory; v1: (controller, directory) pairs.
    pub dirs: Vec<(String, PathBuf)>,
}

/// Where an agent's cgroups live.
#[derive(Clone, Debug)]
pub struct Parent {
    version: Version,
    name: String,
}

impl Parent {
    /// Containers go under `name` (one path component).
    pub fn new(name: &str) -> Self {
        Self {
            version: detect(),
            name: name.to_string(),
        }
    }

    fn parent_dirs(&self) -> Vec<(String, PathBuf)> {
        match self.version {
            Version::V2 => vec![(String::new(), Path::new(ROOT).join(own_path(None)).join(&self.name))],
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| (c.to_string(), Path::new(ROOT).join(c)))
                .filter(|(_, p)| p.join("cgroup.procs").exists())
                .map(|(c, p)| {
                    let own = own_path(Some(&c));
                    (c, p.join(own).join(&self.name))
                })
                .collect(),
        }
    }

    /// The cgroup of container `id` (not created).
    pub fn child(&self, id: &str) -> Cgroup {
        Cgroup {
            version: self.version,
            dirs: self.parent_dirs().into_iter().map(|(c, p)| (c, p.join(id))).collect(),
        }
    }

    /// Removes the parent directories if empty (at DestroySandbox).
    pub fn remove_if_empty(&self) {
        for (_, d) in self.parent_dirs() {
            let _ = fs::remove_dir(d);
        }
    }

    /// Creates the cgroup of `id`, enabling v2 controllers on the way.
    pub fn create(&self, id: &str) -> io::Result<Cgroup> {
        let cg = self.child(id);
        if self.version == Version::V2 {
            let parent = &self.parent_dirs()[0].1;
            fs::create_dir_all(parent)?;
            // Best effort: a controller the kernel lacks is skipped; the
            // limits and stats that need it report it missing.
            for dir in [parent.parent().unwrap_or(Path::new(ROOT)), parent.as_path()] {
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

    /// The cgroup.procs files a process writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
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
    /// task is still exiting) is retried briefly.
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
        }
        Ok(())
    }
}
