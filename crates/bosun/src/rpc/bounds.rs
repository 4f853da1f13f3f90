//! Bounds on what a request may carry, and the checks that apply them:
//! shared by every conversion of requests into domain types.

use crate::error::AgentError;

/// Most args or env entries a process may have; far above real workloads.
pub const MAX_PROCESS_STRINGS: usize = 4096;
/// Longest single arg or env entry (the kernel's MAX_ARG_STRLEN is 128 KiB;
/// 32 KiB keeps hostile specs from filling the agent).
pub const MAX_STRING_LEN: usize = 32 << 10;
/// Most mounts in a spec, storages in a request, DNS lines in a sandbox.
pub const MAX_ITEMS: usize = 1024;
/// Longest hostname (HOST_NAME_MAX).
pub const MAX_HOSTNAME: usize = 64;
/// PATH used when the spec gives none, so `sh` is found as in runc.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// At most `max` entries in `v`.
pub fn cap<T>(field: &'static str, v: &[T], max: usize) -> Result<(), AgentError> {
    if v.len() > max {
        return Err(AgentError::invalid(
            field,
            format!("{} entries; at most {max}", v.len()),
        ));
    }
    Ok(())
}

/// A process's strings (args, env): counted, bounded, without NUL.
pub fn check_strings(field: &'static str, v: &[String]) -> Result<(), AgentError> {
    cap(field, v, MAX_PROCESS_STRINGS)?;
    match v.iter().find(|s| s.len() > MAX_STRING_LEN || s.contains('\0')) {
        Some(s) => Err(AgentError::invalid(
            field,
            format!(
                "an entry of {} bytes or with a NUL byte; at most {MAX_STRING_LEN} bytes",
                s.len()
            ),
        )),
        None => Ok(()),
    }
}
