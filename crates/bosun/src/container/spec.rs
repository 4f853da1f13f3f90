//! The validated parts of an OCI spec bosun acts on. Built from the
//! request by `rpc::convert`; the domain never sees protobuf types.

use std::collections::HashMap;
use std::path::PathBuf;

use super::init_config::{MountSpec, ProcessSpec};

/// A container as the request describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContainerSpec {
    /// Rootfs directory in the guest (`Root.Path`); empty for none.
    pub rootfs: Option<PathBuf>,
    /// `Root.Readonly`.
    pub readonly_rootfs: bool,
    /// The init process.
    pub process: ProcessSpec,
    /// Mounts inside the container.
    pub mounts: Vec<MountSpec>,
    /// `Hostname`.
    pub hostname: Option<String>,
    /// Annotations.
    pub annotations: HashMap<String, String>,
    /// The spec asks for a pid namespace of its own.
    pub new_pid_ns: bool,
    /// Namespaces the spec names by path (network, mount, user, cgroup),
    /// joined as the Kata agent joins them: a peer-pods forwarder adds the
    /// pod's network namespace (`/run/netns/podns`) to every container.
    pub joins: Vec<(super::init_config::NsKind, PathBuf)>,
    /// The spec carries a seccomp profile (not applied; see README).
    pub has_seccomp: bool,
    /// Linux.MaskedPaths.
    pub masked_paths: Vec<PathBuf>,
    /// Linux.ReadonlyPaths.
    pub readonly_paths: Vec<PathBuf>,
    /// Linux.Resources.
    pub resources: crate::cgroup::resources::Resources,
    /// Linux.CgroupsPath as a path below the agent's cgroup parent
    /// (`cgroup::relative_path`); `None`: the container id.
    pub cgroups_path: Option<PathBuf>,
    /// Linux.Sysctl, validated as namespaced: (path below /proc/sys, value).
    pub sysctls: Vec<(PathBuf, String)>,
    /// Linux.Devices.
    pub devices: Vec<super::init_config::DeviceSpec>,
    /// CreateContainer `shared_mounts` (not part of the OCI spec).
    pub shared_mounts: Vec<super::shared_mount::SharedMount>,
    /// CreateContainer `devices`: guest devices shown in the container.
    pub guest_devices: Vec<crate::device::ContainerDevice>,
}
