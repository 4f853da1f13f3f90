//! A container process's identity before exec: resource limits,
//! capabilities, user and groups.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};

use crate::container::init_config::CapabilitySets;

/// Parses an OCI rlimit type ("RLIMIT_NOFILE").
pub fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// Applies every rlimit.
pub fn set_rlimits(limits: &[(String, u64, u64)]) -> Result<(), String> {
    for (name, soft, hard) in limits {
        let r = rlimit_resource(name).ok_or_else(|| format!("unknown rlimit {name}"))?;
        setrlimit(r, *soft, *hard).map_err(|e| format!("setrlimit {name} {soft}/{hard}: {e}"))?;
    }
    Ok(())
}

/// Parses capability names ("CAP_NET_ADMIN").
pub fn parse_caps(names: &[String]) -> Result<CapsHashSet, String> {
    names
        .iter()
        .map(|n| Capability::from_str(n).map_err(|_| format!("unknown capability {n}")))
        .collect()
}

/// Drops the bounding set and keeps the permitted set across the uid
/// change; call before `set_credentials`.
pub fn before_credentials(c: &CapabilitySets) -> Result<(), String> {
    let keep: HashSet<Capability> = parse_caps(&c.bounding)?;
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("drop {cap} from the bounding set: {e}"))?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e: Errno| format!("keep caps: {e}"))
}

/// Sets the effective, permitted, inheritable and ambient sets; call after
/// `set_credentials`.
pub fn after_credentials(c: &CapabilitySets) -> Result<(), String> {
    let set = |which, names: &[String], what: &str| {
        caps::set(None, which, &parse_caps(names)?).map_err(|e| format!("set {what} capabilities: {e}"))
    };
    set(CapSet::Inheritable, &c.inheritable, "inheritable")?;
    set(CapSet::Permitted, &c.permitted, "permitted")?;
    set(CapSet::Effective, &c.effective, "effective")?;
    // Ambient capabilities must be permitted and inheritable; an absent
    // ambient list clears the set.
    set(CapSet::Ambient, &c.ambient, "ambient")?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("clear keep caps: {e}"))
}
