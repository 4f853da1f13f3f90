//! Requests → validated domain types. The only place that reads protobuf
//! request fields; the domain never sees them.

use std::path::PathBuf;

use crate::cgroup::resources::Resources;
use crate::container::init_config::{CapabilitySets, MountSpec, NsKind, ProcessSpec};
use crate::container::spec::ContainerSpec;
use crate::error::AgentError;
use crate::ids::guest_path as check_guest_path;
use crate::mount::storage::{Driver, StorageSpec};
use crate::protocols::agent::{CreateSandboxRequest, Storage};
use crate::protocols::oci;
use crate::sandbox::SandboxSpec;

use super::bounds::{cap, check_strings, DEFAULT_PATH, MAX_HOSTNAME, MAX_ITEMS};
pub use super::convert_answer::{stats_response, volume_stats};
use super::convert_container::{devices, sysctls};
pub use super::convert_container::{guest_devices, shared_mounts, with_pause_bundle};

/// Checks a hostname: 1..=64 bytes of letters, digits, '-' and '.'.
pub fn hostname(field: &'static str, h: &str) -> Result<(), AgentError> {
    if h.len() > MAX_HOSTNAME || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err(AgentError::invalid(
            field,
            format!(
                "{:?} is not a hostname (letters, digits, '-', '.', at most {MAX_HOSTNAME})",
                h.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Storages of a request.
pub fn storages(v: &[Storage]) -> Result<Vec<StorageSpec>, AgentError> {
    cap("storages", v, MAX_ITEMS)?;
    v.iter()
        .map(|s| {
            check_strings("storage.options", &s.options)?;
            let spec = StorageSpec {
                driver: Driver::parse(&s.driver)?,
                source: s.source.clone(),
                fstype: s.fstype.clone(),
                options: s.options.clone(),
                mount_point: check_guest_path("storage.mount_point", &s.mount_point)?,
                layers: Vec::new(),
            };
            if let Some(Err(e)) = spec.device() {
                return Err(AgentError::invalid("storage.source", e.to_string()));
            }
            Ok(spec)
        })
        .collect()
}

/// CreateSandbox.
pub fn sandbox(req: &CreateSandboxRequest) -> Result<SandboxSpec, AgentError> {
    if !req.hostname.is_empty() {
        hostname("hostname", &req.hostname)?;
    }
    cap("dns", &req.dns, MAX_ITEMS)?;
    if req.dns.iter().any(|l| l.contains('\n') || l.len() > 1024) {
        return Err(AgentError::invalid(
            "dns",
            "each entry is one resolv.conf line of at most 1024 bytes",
        ));
    }
    if !req.sandbox_id.is_empty() {
        crate::ids::ContainerId::parse(&req.sandbox_id)
            .map_err(|_| AgentError::invalid("sandbox_id", "must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}"))?;
    }
    cap("kernel_modules", &req.kernel_modules, MAX_ITEMS)?;
    let kernel_modules = req
        .kernel_modules
        .iter()
        .map(|m| crate::kmod::KernelModule::new(&m.name, &m.parameters))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::invalid("kernel_modules", e.to_string()))?;
    Ok(SandboxSpec {
        id: req.sandbox_id.clone(),
        hostname: req.hostname.clone(),
        dns: req.dns.clone(),
        storages: storages(&req.storages)?,
        sandbox_pidns: req.sandbox_pidns,
        guest_hook_path: match req.guest_hook_path.as_str() {
            "" => None,
            p => Some(check_guest_path("guest_hook_path", p)?),
        },
        kernel_modules,
    })
}

/// What marks a confidential-containers sealed secret (the Kata agent's
/// `SEALED_SECRET_PREFIX`), which its Confidential Data Hub unseals.
const SEALED_SECRET_PREFIX: &str = "sealed.";

/// A sealed secret in the environment: bosun has no Confidential Data Hub
/// to unseal it, and handing the sealed text to the workload as if it were
/// the secret would fail later and elsewhere. Only the variable is named.
fn refuse_sealed(env: &[String]) -> Result<(), AgentError> {
    match env
        .iter()
        .find_map(|e| e.split_once('=').filter(|(_, v)| v.starts_with(SEALED_SECRET_PREFIX)))
    {
        Some((name, _)) => Err(AgentError::Unimplemented(format!(
            "environment variable {name:?} holds a sealed secret; bosun has no Confidential Data Hub to unseal it"
        ))),
        None => Ok(()),
    }
}

/// Terminal size used when the spec gives none (the VT100 default).
pub const DEFAULT_CONSOLE: (u16, u16) = (24, 80);

/// An OCI process (init or exec).
pub fn process(p: &oci::Process) -> Result<ProcessSpec, AgentError> {
    if p.Args.is_empty() || p.Args[0].is_empty() {
        return Err(AgentError::invalid(
            "Process.Args",
            "empty; the first argument is the program to run",
        ));
    }
    check_strings("Process.Args", &p.Args)?;
    check_strings("Process.Env", &p.Env)?;
    refuse_sealed(&p.Env)?;
    let mut env = p.Env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(DEFAULT_PATH.to_string());
    }
    let cwd = match p.Cwd.as_str() {
        "" | "/" => PathBuf::from("/"),
        c => check_guest_path("Process.Cwd", c)?,
    };
    let user = p.User.as_ref();
    let groups = user.map(|u| u.AdditionalGids.clone()).unwrap_or_default();
    cap("Process.User.AdditionalGids", &groups, 65536)?;
    let terminal = p.Terminal.then(|| match p.ConsoleSize.as_ref() {
        Some(b) if b.Height > 0 && b.Width > 0 => (
            b.Height.min(u16::MAX as u32) as u16,
            b.Width.min(u16::MAX as u32) as u16,
        ),
        _ => DEFAULT_CONSOLE,
    });
    Ok(ProcessSpec {
        args: p.Args.clone(),
        env,
        cwd,
        uid: user.map(|u| u.UID).unwrap_or(0),
        gid: user.map(|u| u.GID).unwrap_or(0),
        additional_gids: groups,
        no_new_privileges: p.NoNewPrivileges,
        terminal,
        rlimits: rlimits(&p.Rlimits)?,
        capabilities: p.Capabilities.as_ref().map(capabilities).transpose()?,
        oom_score_adj: oom_score_adj(p.OOMScoreAdj)?,
    })
}

/// The kernel's range for /proc/PID/oom_score_adj.
const OOM_SCORE_ADJ: std::ops::RangeInclusive<i64> = -1000..=1000;

fn oom_score_adj(v: i64) -> Result<i32, AgentError> {
    if !OOM_SCORE_ADJ.contains(&v) {
        return Err(AgentError::invalid(
            "Process.OOMScoreAdj",
            format!("{v}: must be within -1000..=1000"),
        ));
    }
    Ok(v as i32)
}

fn rlimits(v: &[oci::POSIXRlimit]) -> Result<Vec<(String, u64, u64)>, AgentError> {
    cap("Process.Rlimits", v, 64)?;
    v.iter()
        .map(|r| {
            if crate::sys::identity::rlimit_resource(&r.Type).is_none() {
                return Err(AgentError::invalid(
                    "Process.Rlimits",
                    format!("unknown type {:?}", r.Type),
                ));
            }
            if r.Soft > r.Hard {
                return Err(AgentError::invalid(
                    "Process.Rlimits",
                    format!("{}: soft {} above hard {}", r.Type, r.Soft, r.Hard),
                ));
            }
            Ok((r.Type.clone(), r.Soft, r.Hard))
        })
        .collect()
}

fn capabilities(c: &oci::LinuxCapabilities) -> Result<CapabilitySets, AgentError> {
    // Names arrive as each runtime spells them (`CHOWN` from Kata's Rust
    // conversion, `CAP_CHOWN` from the Go runtime); the helper gets masks.
    let canonical = |v: &[String]| -> Result<u64, AgentError> {
        cap("Process.Capabilities", v, 128)?;
        crate::sys::identity::mask(v).map_err(|e| AgentError::invalid("Process.Capabilities", e))
    };
    Ok(CapabilitySets {
        bounding: canonical(&c.Bounding)?,
        effective: canonical(&c.Effective)?,
        inheritable: canonical(&c.Inheritable)?,
        permitted: canonical(&c.Permitted)?,
        ambient: canonical(&c.Ambient)?,
    })
}

/// The OCI spec of CreateContainer.
pub fn container(spec: Option<&oci::Spec>) -> Result<ContainerSpec, AgentError> {
    let spec = spec.ok_or_else(|| AgentError::invalid("OCI", "missing; CreateContainer needs an OCI spec"))?;
    let process = process(
        spec.Process
            .as_ref()
            .ok_or_else(|| AgentError::invalid("OCI.Process", "missing"))?,
    )?;
    let rootfs = match spec.Root.as_ref().map(|r| r.Path.as_str()).unwrap_or("") {
        "" => None,
        p => Some(check_guest_path("OCI.Root.Path", p)?),
    };
    cap("OCI.Mounts", &spec.Mounts, MAX_ITEMS)?;
    let mounts = spec
        .Mounts
        .iter()
        .map(|m| {
            check_strings("OCI.Mounts.options", &m.options)?;
            Ok(MountSpec {
                destination: check_guest_path("OCI.Mounts.destination", &m.destination)?,
                source: m.source.clone(),
                fstype: m.type_.clone(),
                options: m.options.clone(),
            })
        })
        .collect::<Result<Vec<_>, AgentError>>()?;
    if !spec.Hostname.is_empty() {
        hostname("OCI.Hostname", &spec.Hostname)?;
    }
    let new_pid_ns = spec
        .Linux
        .as_ref()
        .map(|l| l.Namespaces.iter().any(|n| n.Type == "pid" && n.Path.is_empty()))
        .unwrap_or(false);
    Ok(ContainerSpec {
        rootfs,
        readonly_rootfs: spec.Root.as_ref().map(|r| r.Readonly).unwrap_or(false),
        process,
        mounts,
        hostname: (!spec.Hostname.is_empty()).then(|| spec.Hostname.clone()),
        annotations: spec.Annotations.clone(),
        new_pid_ns,
        joins: namespace_joins(spec.Linux.as_ref().map(|l| l.Namespaces.as_slice()).unwrap_or(&[]))?,
        resources: resources(spec.Linux.as_ref().and_then(|l| l.Resources.as_ref()))?,
        has_seccomp: spec.Linux.as_ref().is_some_and(|l| l.Seccomp.is_some()),
        masked_paths: guest_paths(
            "OCI.Linux.MaskedPaths",
            spec.Linux.as_ref().map(|l| l.MaskedPaths.as_slice()).unwrap_or(&[]),
        )?,
        readonly_paths: guest_paths(
            "OCI.Linux.ReadonlyPaths",
            spec.Linux.as_ref().map(|l| l.ReadonlyPaths.as_slice()).unwrap_or(&[]),
        )?,
        cgroups_path: match spec.Linux.as_ref().map(|l| l.CgroupsPath.as_str()).unwrap_or("") {
            "" => None,
            p => {
                Some(crate::cgroup::relative_path("", p).map_err(|e| AgentError::invalid("OCI.Linux.CgroupsPath", e))?)
            }
        },
        sysctls: sysctls(spec.Linux.as_ref().map(|l| &l.Sysctl))?,
        devices: devices(spec.Linux.as_ref().map(|l| l.Devices.as_slice()).unwrap_or(&[]))?,
        shared_mounts: Vec::new(),
        guest_devices: Vec::new(),
    })
}

/// OCI namespaces with a path: network, mount, user and cgroup ones are
/// joined; the sandbox's own ipc, uts and pid are used whatever path a
/// spec names, as the Kata agent does.
fn namespace_joins(v: &[oci::LinuxNamespace]) -> Result<Vec<(NsKind, PathBuf)>, AgentError> {
    cap("OCI.Linux.Namespaces", v, MAX_ITEMS)?;
    let mut out = Vec::new();
    for n in v.iter().filter(|n| !n.Path.is_empty()) {
        let kind = NsKind::from_oci(&n.Type).ok_or_else(|| {
            AgentError::invalid(
                "OCI.Linux.Namespaces",
                format!(
                    "{:?} with a path: network, mount, user, cgroup, ipc, uts or pid",
                    n.Type
                ),
            )
        })?;
        if matches!(kind, NsKind::Net | NsKind::Mnt | NsKind::User | NsKind::Cgroup) {
            let path = check_guest_path("OCI.Linux.Namespaces.path", &n.Path)?;
            out.retain(|(k, _)| *k != kind);
            out.push((kind, path));
        }
    }
    Ok(out)
}

fn guest_paths(field: &'static str, v: &[String]) -> Result<Vec<PathBuf>, AgentError> {
    cap(field, v, MAX_ITEMS)?;
    v.iter().map(|p| Ok(check_guest_path(field, p)?)).collect()
}

/// Linux.Resources (at create, or UpdateContainer): the limits bosun applies.
pub fn resources(r: Option<&oci::LinuxResources>) -> Result<Resources, AgentError> {
    let Some(r) = r else { return Ok(Resources::default()) };
    let mut out = Resources::default();
    if let Some(m) = r.Memory.as_ref() {
        if m.Limit < -1 {
            return Err(AgentError::invalid(
                "Resources.Memory.Limit",
                format!("{} bytes; use -1 for no limit", m.Limit),
            ));
        }
        out.memory_limit = (m.Limit != 0).then_some(m.Limit);
    }
    if let Some(c) = r.CPU.as_ref() {
        if c.Quota < -1 || (c.Period != 0 && !(1_000..=1_000_000).contains(&c.Period)) {
            return Err(AgentError::invalid(
                "Resources.CPU",
                format!(
                    "quota {} / period {}: quota -1 or more, period 1000..=1000000 µs",
                    c.Quota, c.Period
                ),
            ));
        }
        out.cpu_shares = (c.Shares != 0).then_some(c.Shares);
        out.cpu_quota = (c.Quota != 0).then_some(c.Quota);
        out.cpu_period = (c.Period != 0).then_some(c.Period);
    }
    if let Some(p) = r.Pids.as_ref() {
        if p.Limit < -1 {
            return Err(AgentError::invalid(
                "Resources.Pids.Limit",
                format!("{}; use -1 or 0 for no limit", p.Limit),
            ));
        }
        out.pids_limit = (p.Limit != 0).then_some(p.Limit);
    }
    Ok(out)
}

#[cfg(test)]
mod fuzz {
    //! Random bytes and random messages through decode and validation:
    //! nothing panics, and whatever is accepted is well-formed.
    use std::path::Component;

    use proptest::prelude::*;
    use protobuf::Message;

    use super::*;
    use crate::protocols::agent::{CreateContainerRequest, ExecProcessRequest};

    fn path_ok(p: &std::path::Path) -> bool {
        p.is_absolute() && !p.components().any(|c| c == Component::ParentDir)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(r) = CreateContainerRequest::parse_from_bytes(&bytes) {
                let _ = container(r.OCI.as_ref());
                let _ = storages(&r.storages);
            }
            if let Ok(r) = CreateSandboxRequest::parse_from_bytes(&bytes) {
                let _ = sandbox(&r);
            }
            if let Ok(r) = ExecProcessRequest::parse_from_bytes(&bytes) {
                if let Some(p) = r.process.as_ref() {
                    let _ = process(p);
                }
            }
            if let Ok(r) = crate::protocols::agent::UpdateInterfaceRequest::parse_from_bytes(&bytes) {
                if let Some(i) = r.interface.as_ref() {
                    let _ = super::super::convert_net::iface(i);
                }
            }
            if let Ok(r) = crate::protocols::agent::UpdateRoutesRequest::parse_from_bytes(&bytes) {
                let _ = super::super::convert_net::routes(r.routes.as_ref().map(|r| r.Routes.as_slice()).unwrap_or(&[]));
            }
        }

        #[test]
        fn accepted_specs_are_well_formed(
            root in "(/[a-z.]{0,4}){0,4}",
            dests in proptest::collection::vec("(/[a-z.]{0,3}){1,3}", 0..4),
            args in proptest::collection::vec("[ -~]{0,8}", 0..4),
            cwd in "(/[a-z.]{0,3}){0,3}",
            limit in any::<i64>(),
        ) {
            let mut s = oci::Spec::new();
            let mut p = oci::Process::new();
            (p.Args, p.Cwd) = (args, cwd);
            s.Process = Some(p).into();
            let mut r = oci::Root::new();
            r.Path = root;
            s.Root = Some(r).into();
            s.Mounts = dests.into_iter().map(|d| { let mut m = oci::Mount::new(); m.destination = d; m }).collect();
            let mut l = oci::Linux::new();
            let mut res = oci::LinuxResources::new();
            let mut m = oci::LinuxMemory::new();
            m.Limit = limit;
            res.Memory = Some(m).into();
            l.Resources = Some(res).into();
            s.Linux = Some(l).into();
            if let Ok(c) = container(Some(&s)) {
                prop_assert!(c.rootfs.as_deref().map(path_ok).unwrap_or(true));
                prop_assert!(c.mounts.iter().all(|m| path_ok(&m.destination)));
                prop_assert!(path_ok(&c.process.cwd));
                prop_assert!(!c.process.args.is_empty() && !c.process.args[0].is_empty());
                prop_assert!(c.resources.memory_limit.is_none_or(|l| l >= -1));
            }
        }
    }
}

#[cfg(test)]
mod sealed {
    use super::*;

    #[test]
    fn sealed_secrets_in_the_environment_are_refused_by_name() {
        let mut p = oci::Process::new();
        p.Args = vec!["sh".into()];
        p.Env = vec![
            "A=1".into(),
            "NOT=notsealed.x".into(),
            "TOKEN=sealed.eyJhbGciOi.payload.sig".into(),
        ];
        let e = process(&p).unwrap_err();
        assert!(matches!(e, AgentError::Unimplemented(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("\"TOKEN\"") && !msg.contains("eyJ"), "{msg}");
        p.Env.pop();
        assert!(process(&p).is_ok());
    }
}
