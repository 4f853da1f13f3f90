//! CreateContainer's parts beyond the process: the pod VM's pause bundle,
//! guest devices, shared mounts, Linux.Devices and sysctls.

use std::path::PathBuf;

use super::bounds::{cap, check_strings, MAX_ITEMS};
use crate::error::AgentError;
use crate::ids::guest_path as check_guest_path;
use crate::protocols::oci;

/// The sandbox container of remote-hypervisor mode (an `image_guest_pull`
/// storage of `pause`, annotated as the sandbox) runs, as with the Kata
/// agent, from the pod VM's pause bundle when there is one: its rootfs and
/// its process replace the request's. `None`: the request's spec stands
/// (and without a rootfs, bosun's built-in pause runs).
pub fn with_pause_bundle(
    req: &crate::protocols::agent::CreateContainerRequest,
    bundle: &std::path::Path,
) -> Result<Option<oci::Spec>, AgentError> {
    let pulls_pause = req
        .storages
        .iter()
        .any(|s| s.driver == "image_guest_pull" && s.source == "pause");
    let Some(spec) = req.OCI.as_ref().filter(|_| pulls_pause) else {
        return Ok(None);
    };
    let sandbox = ["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"]
        .iter()
        .any(|k| spec.Annotations.get(*k).map(String::as_str) == Some("sandbox"));
    if !sandbox || !bundle.join("config.json").is_file() || !bundle.join("rootfs").is_dir() {
        return Ok(None);
    }
    let b = bosun_protocols::bundle::load(bundle).map_err(|e| AgentError::invalid("pause bundle", e))?;
    let mut s = spec.clone();
    s.Process = b.Process;
    let mut root = oci::Root::new();
    (root.Path, root.Readonly) = (bundle.join("rootfs").display().to_string(), true);
    s.Root = Some(root).into();
    Ok(Some(s))
}

/// CreateContainer `devices`.
pub fn guest_devices(v: &[crate::protocols::agent::Device]) -> Result<Vec<crate::device::ContainerDevice>, AgentError> {
    cap("devices", v, MAX_ITEMS)?;
    v.iter()
        .map(|d| {
            let path = check_guest_path("devices.container_path", &d.container_path)?;
            crate::device::ContainerDevice::parse(&d.type_, &d.id, &d.vm_path, path)
                .map_err(|e| AgentError::invalid("devices", e.to_string()))
        })
        .collect()
}

/// CreateContainer `shared_mounts`.
pub fn shared_mounts(
    v: &[crate::protocols::agent::SharedMount],
) -> Result<Vec<crate::container::shared_mount::SharedMount>, AgentError> {
    cap("shared_mounts", v, MAX_ITEMS)?;
    v.iter()
        .map(|m| {
            if m.src_ctr.is_empty() {
                return Err(AgentError::invalid(
                    "shared_mounts.src_ctr",
                    format!("{:?}: empty", m.name),
                ));
            }
            Ok(crate::container::shared_mount::SharedMount {
                name: m.name.clone(),
                src_ctr: m.src_ctr.clone(),
                src_path: check_guest_path("shared_mounts.src_path", &m.src_path)?,
                dst_path: check_guest_path("shared_mounts.dst_path", &m.dst_path)?,
            })
        })
        .collect()
}

pub(super) fn devices(v: &[oci::LinuxDevice]) -> Result<Vec<crate::container::init_config::DeviceSpec>, AgentError> {
    cap("OCI.Linux.Devices", v, MAX_ITEMS)?;
    v.iter()
        .map(|d| {
            let bad = |why: String| AgentError::invalid("OCI.Linux.Devices", format!("{:?}: {why}", d.Path));
            let path = check_guest_path("OCI.Linux.Devices.Path", &d.Path)?;
            let kind = match d.Type.as_str() {
                "c" | "u" | "b" | "p" => d.Type.chars().next().unwrap_or('c'),
                t => return Err(bad(format!("type {t:?} is not c, u, b or p"))),
            };
            let num = |n: i64, what: &str| u64::try_from(n).map_err(|_| bad(format!("{what} {n} is negative")));
            // Only permission bits: a Go os.FileMode may carry its own
            // type bits (ModeDevice, ModeCharDevice), as the Kata agent
            // also ignores.
            let perm = d.FileMode & 0o7777;
            Ok(crate::container::init_config::DeviceSpec {
                path,
                kind,
                major: num(d.Major, "major")?,
                minor: num(d.Minor, "minor")?,
                mode: if perm == 0 { 0o666 } else { perm },
                uid: d.UID,
                gid: d.GID,
            })
        })
        .collect()
}

/// Sysctls a container may set: those the kernel keeps per namespace and
/// the container has its own of (or shares with its pod), as runc allows.
/// Anything else would change the whole guest.
const NAMESPACED_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];
/// Prefixes of namespaced sysctl families (IPC message queues; the
/// network namespace, which in a pod VM is the pod's).
const NAMESPACED_SYSCTL_PREFIXES: &[&str] = &["fs.mqueue.", "net."];

pub(super) fn sysctls(
    m: Option<&std::collections::HashMap<String, String>>,
) -> Result<Vec<(PathBuf, String)>, AgentError> {
    let Some(m) = m else { return Ok(Vec::new()) };
    cap("OCI.Linux.Sysctl", &m.keys().collect::<Vec<_>>(), MAX_ITEMS)?;
    let mut out = Vec::new();
    for (name, value) in m {
        // Kubernetes allows '/' as the separator, then dots are literal
        // (net/ipv4/conf/eth0.100/forwarding).
        let parts: Vec<&str> = if name.contains('/') {
            name.split('/').collect()
        } else {
            name.split('.').collect()
        };
        let dotted = parts.join(".");
        let ok_part = |p: &&str| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if !parts.iter().all(ok_part) {
            return Err(AgentError::invalid("OCI.Linux.Sysctl", format!("bad name {name:?}")));
        }
        let namespaced = NAMESPACED_SYSCTLS.contains(&dotted.as_str())
            || NAMESPACED_SYSCTL_PREFIXES.iter().any(|p| dotted.starts_with(p));
        if !namespaced {
            return Err(AgentError::invalid(
                "OCI.Linux.Sysctl",
                format!("{name:?} is not namespaced: setting it would change the whole guest, not the container"),
            ));
        }
        check_strings("OCI.Linux.Sysctl", std::slice::from_ref(value))?;
        out.push((parts.iter().collect::<PathBuf>(), value.clone()));
    }
    out.sort();
    Ok(out)
}
