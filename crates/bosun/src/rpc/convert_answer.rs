//! Answers built from domain figures: StatsContainer, GetVolumeStats.

use crate::cgroup::stats::Stats;
use crate::netstats::NetStats;
use crate::protocols::agent::{
    BlkioStats, BlkioStatsEntry, CgroupStats, CpuStats, CpuUsage, MemoryData, MemoryStats, NetworkStats, PidsStats,
    StatsContainerResponse,
};

/// GetVolumeStats's answer.
pub fn volume_stats(u: &crate::guestops::volume::Usage) -> crate::protocols::agent::VolumeStatsResponse {
    use crate::protocols::agent::{volume_usage, VolumeCondition, VolumeStatsResponse, VolumeUsage};
    let usage = |(total, used, available): (u64, u64, u64), unit| {
        let mut v = VolumeUsage::new();
        (v.total, v.used, v.available, v.unit) = (total, used, available, unit);
        v
    };
    let mut r = VolumeStatsResponse::new();
    r.usage = vec![
        usage(u.bytes, volume_usage::Unit::BYTES.into()),
        usage(u.inodes, volume_usage::Unit::INODES.into()),
    ];
    let mut cond = VolumeCondition::new();
    (cond.abnormal, cond.message) = (false, "OK".into());
    r.volume_condition = Some(cond).into();
    r
}

/// StatsContainer's answer from the cgroup and network statistics.
pub fn stats_response(s: &Stats, net: &[NetStats]) -> StatsContainerResponse {
    let mut cpu = CpuUsage::new();
    cpu.total_usage = s.cpu_total_ns;
    cpu.percpu_usage = s.cpu_percpu_ns.clone();
    cpu.usage_in_kernelmode = s.cpu_kernel_ns;
    cpu.usage_in_usermode = s.cpu_user_ns;
    let mut cpu_stats = CpuStats::new();
    cpu_stats.cpu_usage = Some(cpu).into();
    let mut usage = MemoryData::new();
    usage.usage = s.memory_usage;
    usage.max_usage = s.memory_max_usage;
    usage.failcnt = s.memory_failcnt;
    usage.limit = s.memory_limit;
    let mut mem = MemoryStats::new();
    mem.cache = s
        .memory_stat
        .get("cache")
        .or_else(|| s.memory_stat.get("file"))
        .copied()
        .unwrap_or(0);
    mem.usage = Some(usage).into();
    mem.stats = s.memory_stat.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut pids = PidsStats::new();
    pids.current = s.pids_current;
    pids.limit = s.pids_limit;
    let mut blkio = BlkioStats::new();
    blkio.io_service_bytes_recursive = s
        .io_bytes
        .iter()
        .map(|(major, minor, op, value)| {
            let mut e = BlkioStatsEntry::new();
            (e.major, e.minor, e.op, e.value) = (*major, *minor, op.clone(), *value);
            e
        })
        .collect();
    let mut cg = CgroupStats::new();
    cg.blkio_stats = Some(blkio).into();
    cg.cpu_stats = Some(cpu_stats).into();
    cg.memory_stats = Some(mem).into();
    cg.pids_stats = Some(pids).into();
    let mut r = StatsContainerResponse::new();
    r.cgroup_stats = Some(cg).into();
    r.network_stats = net
        .iter()
        .map(|n| {
            let mut x = NetworkStats::new();
            x.name = n.name.clone();
            (x.rx_bytes, x.rx_packets, x.rx_errors, x.rx_dropped) =
                (n.rx_bytes, n.rx_packets, n.rx_errors, n.rx_dropped);
            (x.tx_bytes, x.tx_packets, x.tx_errors, x.tx_dropped) =
                (n.tx_bytes, n.tx_packets, n.tx_errors, n.tx_dropped);
            x
        })
        .collect();
    r
}
