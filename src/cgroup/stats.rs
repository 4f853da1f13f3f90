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
    s.memory_stat = kv(&read(cg, "memory", "memory.stat").unwrap_or_default());
    s.pids_current = num(cg, "pids", "pids.current");
    s.pids_limit = match limit(cg, "pids", "pids.max") {
        u64::MAX => 0,
        l => l,
    };
    s
}
