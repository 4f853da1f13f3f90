//! What bosun tells its `bosun init` helper to set up: namespaces, rootfs,
//! mounts, hostname and the process to run. Written by the agent as JSON
//! into the container's run directory, read by the helper.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroup::CgroupJoin;
pub use crate::sys::identity::CapabilitySets;

/// A namespace kind bosun manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsKind {
    /// Mount.
    Mnt,
    /// Hostname and domain name.
    Uts,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Network.
    Net,
    /// Process ids.
    Pid,
    /// Users and ids (joined by path only).
    User,
    /// The cgroup root (joined by path only).
    Cgroup,
}

impl NsKind {
    /// The file name under /proc/PID/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::Mnt => "mnt",
            Self::Uts => "uts",
            Self::Ipc => "ipc",
            Self::Net => "net",
            Self::Pid => "pid",
            Self::User => "user",
            Self::Cgroup => "cgroup",
        }
    }

    /// Parses an OCI namespace type.
    pub fn from_oci(s: &str) -> Option<Self> {
        Some(match s {
            // The OCI names, and the short ones Kata's Rust conversion
            // sends (oci-spec's Display: "mnt", "net").
            "mount" | "mnt" => Self::Mnt,
            "uts" => Self::Uts,
            "ipc" => Self::Ipc,
            "network" | "net" => Self::Net,
            "pid" => Self::Pid,
            "user" => Self::User,
            "cgroup" => Self::Cgroup,
            _ => return None,
        })
    }
}

/// Whether a namespace is new or joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsMode {
    /// A fresh namespace of this kind.
    New,
    /// Join the namespace at this path (/proc/PID/ns/KIND).
    Join(PathBuf),
}

/// One mount inside the container, relative to its rootfs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Source (a path for binds, a name for pseudo filesystems).
    pub source: String,
    /// Filesystem type; "bind" or "none" with a bind option for binds.
    pub fstype: String,
    /// OCI mount options.
    pub options: Vec<String>,
}

/// A device node made in the container (Linux.Devices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Path inside the container.
    pub path: PathBuf,
    /// `c`, `u` (character), `b` (block) or `p` (FIFO).
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The process to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// argv; args[0] is looked up in PATH.
    pub args: Vec<String>,
    /// KEY=VALUE.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: PathBuf,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// PR_SET_NO_NEW_PRIVS before exec.
    pub no_new_privileges: bool,
    /// A terminal of (rows, columns) instead of pipes.
    #[serde(default)]
    pub terminal: Option<(u16, u16)>,
    /// Resource limits: (RLIMIT_* name, soft, hard).
    #[serde(default)]
    pub rlimits: Vec<(String, u64, u64)>,
    /// Capability sets; `None` keeps the helper's (root's) sets.
    #[serde(default)]
    pub capabilities: Option<CapabilitySets>,
    /// Process.OOMScoreAdj, written to /proc/self/oom_score_adj before
    /// exec (so the process never inherits the agent's own score).
    #[serde(default)]
    pub oom_score_adj: i32,
}

/// What the helper does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Exec the process.
    Exec(Box<ProcessSpec>),
    /// Run bosun's built-in pause loop (no rootfs needed).
    BuiltinPause,
}

/// Everything the helper needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitConfig {
    /// Namespaces, each new or joined.
    pub namespaces: Vec<(NsKind, NsMode)>,
    /// The rootfs to pivot into; `None` keeps the current root (built-in
    /// pause, or an exec joining a container's mount namespace).
    pub rootfs: Option<PathBuf>,
    /// Remount the rootfs read-only.
    pub readonly_rootfs: bool,
    /// Mounts made inside the rootfs, in order.
    pub mounts: Vec<MountSpec>,
    /// Paths hidden from the container (Linux.MaskedPaths).
    #[serde(default)]
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only (Linux.ReadonlyPaths).
    #[serde(default)]
    pub readonly_paths: Vec<PathBuf>,
    /// Device nodes made inside the rootfs (Linux.Devices).
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// Hostname to set in a new UTS namespace.
    pub hostname: Option<String>,
    /// Namespaced sysctls (path below /proc/sys, value), written once the
    /// container's namespaces are entered.
    #[serde(default)]
    pub sysctls: Vec<(PathBuf, String)>,
    /// The container's cgroup, which the process is in before anything
    /// else runs (its children, the container process included, inherit it).
    pub cgroup: CgroupJoin,
    /// Wait for StartContainer before running the payload.
    pub wait_for_start: bool,
    /// What to run.
    pub payload: Payload,
}
