//! A container process's identity before exec: resource limits,
//! capabilities, user and groups.

use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::errno::Errno;
use nix::sys::resource::{setrlimit, Resource};

/// The five capability sets of a process, as masks (bit n: capability n,
/// `Capability::bitmask`). The agent parses the names once (`mask`); the
/// helper applies the masks, with no parsing between StartContainer and
/// the exec.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CapabilitySets {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Ambient set.
    pub ambient: u64,
}

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

/// Parses one capability name as the runtimes send it: `CAP_CHOWN` (the
/// Go runtime, OCI), `CHOWN` (Kata's Rust protocol conversion, used by
/// runtime-rs and kata-agent-ctl), in any case, and, as the Kata agent
/// also accepts, JSON-quoted (`"CAP_CHOWN"`). Returns the canonical name.
pub fn parse_cap(name: &str) -> Result<Capability, String> {
    let bare = name.trim();
    let bare = bare.strip_prefix('"').and_then(|b| b.strip_suffix('"')).unwrap_or(bare);
    Capability::from_str(&caps::to_canonical(bare)).map_err(|_| format!("unknown capability {name:?}"))
}

/// Parses capability names (see `parse_cap`) into a mask (see
/// `CapabilitySets`).
pub fn mask(names: &[String]) -> Result<u64, String> {
    names.iter().try_fold(0u64, |m, n| Ok(m | parse_cap(n)?.bitmask()))
}

/// The capabilities of a mask.
fn in_mask(mask: u64) -> impl Iterator<Item = Capability> {
    caps::all().into_iter().filter(move |c| mask & c.bitmask() != 0)
}

/// Drops the bounding set and keeps the permitted set across the uid
/// change; call before `set_credentials`.
pub fn before_credentials(c: &CapabilitySets) -> Result<(), String> {
    for cap in in_mask(!c.bounding) {
        // Dropped without reading first (one prctl, not two: dropping an
        // absent one succeeds). A capability this kernel does not know
        // fails the drop (EINVAL) and is in no bounding set: nothing to drop.
        if let Err(e) = caps::drop(None, CapSet::Bounding, cap) {
            if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                return Err(format!("drop {cap} from the bounding set: {e}"));
            }
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e: Errno| format!("keep caps: {e}"))
}

/// Sets the effective, permitted and inheritable sets in one capset(2),
/// then the ambient set; call after `set_credentials`.
///
/// One call, as runc does: set one at a time, some valid specs fail
/// whatever the order (shrinking permitted first is refused while
/// effective still holds more; the kernel checks effective ⊆ permitted
/// on every call). In one call the kernel checks the final sets only:
/// permitted ⊆ the old permitted, effective ⊆ permitted, inheritable ⊆
/// bounding ∪ old inheritable.
pub fn after_credentials(c: &CapabilitySets) -> Result<(), String> {
    let (e, p, i) = (c.effective, c.permitted, c.inheritable);
    capset_self(e, p, i).map_err(|err| {
        format!("set capabilities (effective {e:#x}, permitted {p:#x}, inheritable {i:#x}): capset: {err}")
    })?;
    // Ambient capabilities must be permitted and inheritable; an absent
    // ambient list clears the set.
    caps::set(None, CapSet::Ambient, &in_mask(c.ambient).collect())
        .map_err(|e| format!("set ambient capabilities: {e}"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("clear keep caps: {e}"))
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets in two 32-bit words.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) on the calling thread with all three sets at once.
fn capset_self(effective: u64, permitted: u64, inheritable: u64) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let word = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
    let data = [false, true].map(|hi| CapData {
        effective: word(effective, hi),
        permitted: word(permitted, hi),
        inheritable: word(inheritable, hi),
    });
    // SAFETY: header and data are live, correctly laid out v3 structures
    // (one header, two data words) for the duration of the call; the
    // kernel only reads them (and may write the header's version).
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_names_as_every_runtime_sends_them() {
        let cases = [
            ("CAP_CHOWN", Some(Capability::CAP_CHOWN)),
            ("CHOWN", Some(Capability::CAP_CHOWN)),
            ("setpcap", Some(Capability::CAP_SETPCAP)),
            ("cap_net_raw", Some(Capability::CAP_NET_RAW)),
            ("Cap_Kill", Some(Capability::CAP_KILL)),
            ("\"CAP_MKNOD\"", Some(Capability::CAP_MKNOD)),
            ("AUDIT_WRITE", Some(Capability::CAP_AUDIT_WRITE)),
            ("CAP_DOES_NOT_EXIST", None),
            ("", None),
            ("CAP_", None),
            ("CAPCHOWN", None),
        ];
        for (i, (name, want)) in cases.iter().enumerate() {
            let got = parse_cap(name).ok();
            assert_eq!(got, *want, "test[{i}]: {name:?}");
        }
        let err = mask(&["CHOWN".into(), "BOGUS".into()]).unwrap_err();
        assert!(err.contains("\"BOGUS\""), "the error names the bad one: {err}");
    }
}
