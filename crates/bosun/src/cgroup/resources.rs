//! Resource limits: memory, CPU and pids, written for v1 or v2.

use std::fs;
use std::io;

use super::{Cgroup, Version};

/// The limits bosun applies (from the spec at create, or UpdateContainer).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    /// Bytes; -1 for no limit.
    pub memory_limit: Option<i64>,
    /// Relative CPU weight (v1 shares, 2..=262144).
    pub cpu_shares: Option<u64>,
    /// CFS quota in µs per period; -1 for no limit.
    pub cpu_quota: Option<i64>,
    /// CFS period in µs.
    pub cpu_period: Option<u64>,
    /// Most tasks; -1 or 0 for no limit.
    pub pids_limit: Option<i64>,
}

impl Resources {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn write(cg: &Cgroup, controller: &str, file: &str, value: &str) -> io::Result<()> {
    let d = cg
        .dir(controller)
        .ok_or_else(|| io::Error::other(format!("the {controller} controller is not available")))?;
    fs::write(d.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("write {value:?} to {}: {e}", d.join(file).display())))
}

/// v1 shares (2..=262144) to v2 weight (1..=10000), as runc converts them.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// Writes every limit that is set.
pub fn apply(cg: &Cgroup, r: &Resources) -> io::Result<()> {
    let v2 = cg.version == Version::V2;
    if let Some(m) = r.memory_limit {
        match (v2, m) {
            (true, m) if m < 0 => write(cg, "memory", "memory.max", "max")?,
            (true, m) => write(cg, "memory", "memory.max", &m.to_string())?,
            (false, m) => write(cg, "memory", "memory.limit_in_bytes", &m.max(-1).to_string())?,
        }
    }
    if let Some(s) = r.cpu_shares {
        if v2 {
            write(cg, "cpu", "cpu.weight", &shares_to_weight(s).to_string())?;
        } else {
            write(cg, "cpu", "cpu.shares", &s.to_string())?;
        }
    }
    if r.cpu_quota.is_some() || r.cpu_period.is_some() {
        let period = r.cpu_period.unwrap_or(100_000);
        let quota = r.cpu_quota.unwrap_or(-1);
        if v2 {
            let q = if quota <= 0 {
                "max".to_string()
            } else {
                quota.to_string()
            };
            write(cg, "cpu", "cpu.max", &format!("{q} {period}"))?;
        } else {
            write(cg, "cpu", "cpu.cfs_period_us", &period.to_string())?;
            write(cg, "cpu", "cpu.cfs_quota_us", &quota.to_string())?;
        }
    }
    if let Some(p) = r.pids_limit {
        let v = if p <= 0 { "max".to_string() } else { p.to_string() };
        write(cg, "pids", "pids.max", &v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        for (shares, weight) in [
            (0, 100),
            (2, 1),
            (1024, 39),
            (262_144, 10_000),
            (1, 1),
            (1 << 40, 10_000),
        ] {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }
}
