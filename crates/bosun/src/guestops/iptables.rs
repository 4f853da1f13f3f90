//! GetIPTables and SetIPTables, through the guest's own `iptables-save` and
//! `iptables-restore` (or the ip6tables ones), as the Kata agent does: the
//! rules are the pod network namespace's, which is the agent's.

use std::process::Command;
use std::time::Duration;

use crate::error::AgentError;
use crate::process::reaper::Reaper;

/// Bound on one iptables-save/-restore run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest rule set accepted (the Kata agent has no bound; 16 MiB is far
/// beyond any pod's and keeps a request from filling the guest).
const MAX_RULES: usize = 16 << 20;

fn tool(v6: bool, what: &str) -> String {
    format!("{}-{what}", if v6 { "ip6tables" } else { "iptables" })
}

fn find(name: &str) -> Result<std::path::PathBuf, AgentError> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| AgentError::Unavailable(format!("{name} is not in this guest image; add iptables to it")))
}

/// The rules, as `iptables-save` prints them.
pub async fn get(reaper: &Reaper, v6: bool) -> Result<Vec<u8>, AgentError> {
    let name = tool(v6, "save");
    let out = reaper
        .output(Command::new(find(&name)?), b"", TOOL_TIMEOUT)
        .await
        .map_err(|e| AgentError::Internal(format!("{name}: {e}")))?;
    if out.status != 0 {
        return Err(AgentError::Internal(format!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Replaces the rules with `data` (`iptables-restore` input); returns what
/// it printed.
pub async fn set(reaper: &Reaper, v6: bool, data: &[u8]) -> Result<Vec<u8>, AgentError> {
    if data.len() > MAX_RULES {
        return Err(AgentError::invalid(
            "data",
            format!("{} bytes; at most {MAX_RULES}", data.len()),
        ));
    }
    let name = tool(v6, "restore");
    let out = reaper
        .output(Command::new(find(&name)?), data, TOOL_TIMEOUT)
        .await
        .map_err(|e| AgentError::Internal(format!("{name}: {e}")))?;
    if out.status != 0 {
        return Err(AgentError::invalid(
            "data",
            format!(
                "{name} refused the rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(out.stdout)
}
