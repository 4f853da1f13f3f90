//! The agent's own CPU share (`--agent-cgroup`, off by default): bosun moves itself into a cgroup of its own
//! (`<its cgroup>/<name>`, beside the containers' parent) whose CPU weight
//! is ten times the default, so that a pod VM whose workload saturates its
//! vCPUs still answers its runtime promptly. Containers never inherit it:
//! their processes are forked into their own cgroups under the parent.
//!
//! v2: `cpu.weight` 1000 (the default is 100), the cpu controller enabled
//! in the agent's former cgroup once bosun has left it (a v2 cgroup with
//! processes cannot pass controllers on). v1: the cpu hierarchy only,
//! `cpu.shares` 10240 (the default is 1024).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{detect, own_path, Version, ROOT};

/// v2 weight and v1 shares: ten times the defaults.
const V2_WEIGHT: u32 = 1000;
const V1_SHARES: u32 = 10240;

/// Where the agent went, and where it came from (to go back at a clean
/// exit and remove its cgroup).
#[derive(Debug)]
pub struct AgentCgroup {
    /// The agent's cgroup (the cpu hierarchy's on v1).
    pub dir: PathBuf,
    from: PathBuf,
}

/// The cpu controller's directory for the agent's own cgroup.
fn own_cpu_dir() -> io::Result<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup")?;
    Ok(match detect() {
        Version::V2 => Path::new(ROOT).join(own_path(&own, None)),
        Version::V1 => {
            let base = ["cpu", "cpu,cpuacct"]
                .iter()
                .map(|c| Path::new(ROOT).join(c))
                .find(|p| p.join("cpu.shares").exists())
                .ok_or_else(|| io::Error::other("no v1 cpu hierarchy"))?;
            base.join(own_path(&own, Some("cpu")))
        }
    })
}

/// Moves this process (all its threads) into `<own cgroup>/<name>` and
/// gives that cgroup ten times the default CPU weight.
pub fn enter(name: &str) -> io::Result<AgentCgroup> {
    let from = own_cpu_dir()?;
    let dir = from.join(name);
    fs::create_dir_all(&dir)?;
    let pid = std::process::id().to_string();
    match detect() {
        Version::V2 => {
            fs::write(dir.join("cgroup.procs"), &pid)?;
            // Now that the former cgroup holds no process of ours, it may
            // pass the cpu controller on (the root always may).
            let _ = fs::write(from.join("cgroup.subtree_control"), "+cpu");
            fs::write(dir.join("cpu.weight"), V2_WEIGHT.to_string())?;
        }
        Version::V1 => {
            fs::write(dir.join("cpu.shares"), V1_SHARES.to_string())?;
            fs::write(dir.join("cgroup.procs"), &pid)?;
        }
    }
    Ok(AgentCgroup { dir, from })
}

impl AgentCgroup {
    /// Back to where bosun came from, and the cgroup removed (a clean
    /// exit; after a crash the next start finds and reuses it).
    pub fn leave(&self) -> io::Result<()> {
        fs::write(self.from.join("cgroup.procs"), std::process::id().to_string())?;
        fs::remove_dir(&self.dir)
    }
}
