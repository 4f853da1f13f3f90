//! Usage read from the cgroup files, for StatsContainer.

use std::collections::BTreeMap;
use std::fs;

use super::{Cgroup, Version};

/// What StatsContainer reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Total CPU time, ns.
    pub cpu_total_ns: u64,
    /// Per-CPU time, ns (v1 only).
    pub cpu_percpu_ns: Vec<u64>,
    /// Kernel-mode CPU time, ns.
    pub cpu_kernel_ns: u64,
    /// User-mode CPU time, ns.
    pub cpu_user_ns: u64,
    /// Memory in use, bytes.
    pub memory_usage: u64,
    /// Peak memory, bytes (0 where the kernel does not track it).
    pub memory_max_usage: u64,
    /// Times the limit was hit.
    pub memory_failcnt: u64,
    /// Limit, bytes (u64::MAX for none).
    pub memory_limit: u64,
    /// memory.stat.
    pub memory_stat: BTreeMap<String, u64>,
    /// Tasks now.
    pub pids_current: u64,
    /// Task limit (0 for none).
    pub pids_limit: u64,
    /// Bytes moved per device and direction: (major, minor, "Read"/"Write", bytes).
    pub io_bytes: Vec<(u64, u64, String, u64)>,
}

/// v1 `blkio.throttle.io_service_bytes_recursive`: "8:0 Read 4096".
fn io_v1(text: &str) -> Vec<(u64, u64, String, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, op, v) = (f.next()?, f.next()?, f.next()?);
            let (ma, mi) = dev.split_once(':')?;
            Some((ma.parse().ok()?, mi.parse().ok()?, op.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// v2 `io.stat`: "8:0 rbytes=4096 wbytes=0 rios=1 ...".
fn io_v2(text: &str) -> Vec<(u64, u64, String, u64)> {
    let mut out = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let Some((ma, mi)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
            continue;
        };
        for kv in f {
            let op = match kv.split_once('=') {
                Some(("rbytes", v)) => ("Read", v),
                Some(("wbytes", v)) => ("Write", v),
                _ => continue,
            };
            if let Ok(v) = op.1.parse() {
                out.push((ma, mi, op.0.to_string(), v));
            }
        }
    }
    out
}

fn read(cg: &Cgroup, controller: &str, file: &str) -> Option<String> {
    fs::read_to_string(cg.dir(controller)?.join(file)).ok()
}

fn num(cg: &Cgroup, controller: &str, file: &str) -> u64 {
    read(cg, controller, file)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn limit(cg: &Cgroup, controller: &str, file: &str) -> u64 {
    match read(cg, controller, file).as_deref().map(str::trim) {
        Some("max") | None => u64::MAX,
        Some(v) => v.parse().unwrap_or(u64::MAX),
    }
}

fn kv(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

/// Clock ticks per second for cpuacct.stat (USER_HZ, 100 on Linux).
const USER_HZ_NS: u64 = 10_000_000;

/// Reads every statistic bosun reports.
pub fn read_stats(cg: &Cgroup) -> Stats {
    let mut s = Stats::default();
    match cg.version {
        Version::V1 => {
            s.cpu_total_ns = num(cg, "cpuacct", "cpuacct.usage");
            s.cpu_percpu_ns = read(cg, "cpuacct", "cpuacct.usage_percpu")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let st = kv(&read(cg, "cpuacct", "cpuacct.stat").unwrap_or_default());
            s.cpu_user_ns = st.get("user").copied().unwrap_or(0) * USER_HZ_NS;
            s.cpu_kernel_ns = st.get("system").copied().unwrap_or(0) * USER_HZ_NS;
            s.memory_usage = num(cg, "memory", "memory.usage_in_bytes");
            s.memory_max_usage = num(cg, "memory", "memory.max_usage_in_bytes");
            s.memory_failcnt = num(cg, "memory", "memory.failcnt");
            s.memory_limit = limit(cg, "memory", "memory.limit_in_bytes");
        }
        Version::V2 => {
            let st = kv(&read(cg, "cpu", "cpu.stat").unwrap_or_default());
            s.cpu_total_ns = st.get("usage_usec").copied().unwrap_or(0) * 1000;
            s.cpu_user_ns = st.get("user_usec").copied().unwrap_or(0) * 1000;
            s.cpu_kernel_ns = st.get("system_usec").copied().unwrap_or(0) * 1000;
            s.memory_usage = num(cg, "memory", "memory.current");
            s.memory_max_usage = num(cg, "memory", "memory.peak");
            s.memory_failcnt = kv(&read(cg, "memory", "memory.events").unwrap_or_default())
                .get("max")
                .copied()
                .unwrap_or(0);
            s.memory_limit = limit(cg, "memory", "memory.max");
        }
    }
    s.io_bytes = match cg.version {
        Version::V1 => io_v1(&read(cg, "blkio", "blkio.throttle.io_service_bytes_recursive").unwrap_or_default()),
        Version::V2 => io_v2(&read(cg, "io", "io.stat").unwrap_or_default()),
    };
    s.memory_stat = kv(&read(cg, "memory", "memory.stat").unwrap_or_default());
    s.pids_current = num(cg, "pids", "pids.current");
    s.pids_limit = match limit(cg, "pids", "pids.max") {
        u64::MAX => 0,
        l => l,
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_formats() {
        assert_eq!(
            io_v1("8:0 Read 4096\n8:0 Write 512\nTotal 4608\n"),
            vec![(8, 0, "Read".into(), 4096), (8, 0, "Write".into(), 512)]
        );
        assert_eq!(
            io_v2("254:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"),
            vec![(254, 0, "Read".into(), 10), (254, 0, "Write".into(), 20)]
        );
    }
}
