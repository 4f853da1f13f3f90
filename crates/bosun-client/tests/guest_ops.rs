//! The guest-wide calls besides pods: GetMetrics, GetVolumeStats,
//! ResizeVolume (root: real ext4 on a loop device), SetPolicy, the memory
//! agent, iptables without the tools, and the calls that change the
//! machine itself (swap, hot-plug, entropy), which bosun refuses outside a
//! guest (`make vm-test` serves them in the VM).

mod common;

use std::time::Duration;

use bosun_client::Client;
use bosun_protocols::agent::*;
use common::pod::Pod;
use common::{rt, Agent};

type Failure = (ttrpc::Code, String);

fn status(e: ttrpc::Error) -> Failure {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        o => (ttrpc::Code::UNKNOWN, o.to_string()),
    }
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_calls() {
    let agent = Agent::start();
    let text = rt().block_on(async {
        let c = Client::connect(&agent.addr, Duration::from_secs(5)).await.unwrap();
        for _ in 0..3 {
            c.check().await.unwrap();
        }
        // One failed call, counted under its code.
        let mut w = WaitProcessRequest::new();
        w.container_id = "nope".into();
        let _ = c.agent.wait_process(c.ctx(), &w).await;
        c.agent
            .get_metrics(c.ctx(), &GetMetricsRequest::new())
            .await
            .unwrap()
            .metrics
    });
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| s.value.clone())
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
    };
    match value(
        "bosun_rpc_requests_total",
        &[("method", "WaitProcess"), ("code", "NOT_FOUND")],
    ) {
        prometheus_parse::Value::Counter(n) | prometheus_parse::Value::Untyped(n) => assert_eq!(n, 1.0),
        other => panic!("{other:?}"),
    }
    match value("bosun_rpc_duration_seconds", &[("method", "WaitProcess")]) {
        prometheus_parse::Value::Histogram(h) => {
            assert_eq!(h.last().map(|b| b.count), Some(1.0), "{h:?}");
        }
        other => panic!("a histogram: {other:?}"),
    }
    for (m, l) in [
        ("process_resident_memory_bytes", vec![]),
        ("process_open_fds", vec![]),
        ("guest_memory_bytes", vec![("field", "MemTotal")]),
        ("guest_cpu_seconds_total", vec![("mode", "idle")]),
        ("guest_load_average", vec![("window", "1m")]),
    ] {
        let v = match value(m, &l) {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("{m}: {other:?}"),
        };
        assert!(v >= 0.0 && (m == "guest_load_average" || v > 0.0), "{m} = {v}");
    }
}

#[test]
fn memory_agent_and_machine_wide_calls() {
    let agent = Agent::start();
    rt().block_on(async {
        let c = Client::connect(&agent.addr, Duration::from_secs(5)).await.unwrap();
        let (code, msg) = status(
            c.agent
                .mem_agent_memcg_set(c.ctx(), &MemAgentMemcgConfig::new())
                .await
                .unwrap_err(),
        );
        assert_eq!(code, ttrpc::Code::UNIMPLEMENTED, "{msg}");
        assert!(msg.contains("memory agent"), "{msg}");
        // Changing the machine's swap, memory, CPUs or entropy pool is for
        // the guest's init only: refused here, nothing changed.
        let mut swap = AddSwapRequest::new();
        swap.PCIPath = vec![4];
        let mut path = AddSwapPathRequest::new();
        path.path = "/swapfile".into();
        let mut seed = ReseedRandomDevRequest::new();
        seed.data = vec![7; 64];
        let mut probe = MemHotplugByProbeRequest::new();
        probe.memHotplugProbeAddr = vec![0x1_0000_0000];
        let results = [
            ("AddSwap", c.agent.add_swap(c.ctx(), &swap).await.map(|_| ())),
            ("AddSwapPath", c.agent.add_swap_path(c.ctx(), &path).await.map(|_| ())),
            (
                "ReseedRandomDev",
                c.agent.reseed_random_dev(c.ctx(), &seed).await.map(|_| ()),
            ),
            (
                "MemHotplugByProbe",
                c.agent.mem_hotplug_by_probe(c.ctx(), &probe).await.map(|_| ()),
            ),
            (
                "OnlineCPUMem",
                c.agent
                    .online_cpu_mem(c.ctx(), &OnlineCPUMemRequest::new())
                    .await
                    .map(|_| ()),
            ),
        ];
        for (i, (m, r)) in results.into_iter().enumerate() {
            let (code, msg) = status(r.unwrap_err());
            assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "test[{i}]: {m}: {msg}");
            assert!(msg.contains("PID 1"), "test[{i}]: {m}: {msg}");
        }
        c.agent
            .remove_stale_virtiofs_share_mounts(c.ctx(), &RemoveStaleVirtiofsShareMountsRequest::new())
            .await
            .expect("RemoveStaleVirtiofsShareMounts");
        // iptables: bosun's netns rules through the guest's own tools; a
        // guest without them gets a clear answer.
        let have = ["/usr/sbin/iptables-save", "/sbin/iptables-save"]
            .iter()
            .any(|p| std::path::Path::new(p).exists());
        let r = c.agent.get_ip_tables(c.ctx(), &GetIPTablesRequest::new()).await;
        match (have, r) {
            (false, Err(e)) => {
                let (code, msg) = status(e);
                assert_eq!(code, ttrpc::Code::UNAVAILABLE, "{msg}");
                assert!(msg.contains("iptables-save"), "{msg}");
            }
            (true, Ok(_)) => {}
            (have, r) => panic!("iptables-save present: {have}; GetIPTables: {r:?}"),
        }
    });
}

/// GetVolumeStats and ResizeVolume on a real ext4 volume (a loop device):
/// the disk grows behind the filesystem (as a runtime grows a block
/// volume), ResizeVolume grows the filesystem online.
#[test]
#[ignore = "needs root"]
fn volume_stats_and_online_grow() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start();
    pod.create_sandbox("vol", false).unwrap();
    let img = pod.dir().join("vol.img");
    let st = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .arg("16M")
        .status()
        .expect("mkfs.ext4");
    assert!(st.success());
    let lo = common::Loop::attach(&img);
    let mp = pod.mnt("vol");
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) =
        ("blk".into(), lo.0.clone(), "ext4".into(), mp.display().to_string());
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.exec_id) = ("vol".into(), "vol".into());
    let rootfs = common::busybox_rootfs(pod.dir());
    cc.OCI = Some(common::pod::spec(Some(&rootfs), &["sleep", "300"])).into();
    cc.storages = vec![s];
    pod.send_create_container(&cc).unwrap();
    let stats = |pod: &Pod| {
        let mut q = VolumeStatsRequest::new();
        q.volume_guest_path = mp.display().to_string();
        pod.rt
            .block_on(pod.c.agent.get_volume_stats(pod.c.ctx(), &q))
            .map_err(status)
    };
    let before = stats(&pod).unwrap();
    let bytes = |r: &VolumeStatsResponse| r.usage.iter().find(|u| u.unit.value() == 1).map(|u| u.total).unwrap();
    let inodes = |r: &VolumeStatsResponse| r.usage.iter().find(|u| u.unit.value() == 2).map(|u| u.total).unwrap();
    assert!(bytes(&before) > 10 << 20 && bytes(&before) <= 16 << 20, "{before:?}");
    assert!(inodes(&before) > 0);
    assert_eq!(before.volume_condition.message, "OK");

    // The disk grows to 48 MiB; the filesystem does not yet.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    assert!(std::process::Command::new("losetup")
        .args(["-c", &lo.0])
        .status()
        .unwrap()
        .success());
    let resize = |size: u64| {
        let mut q = ResizeVolumeRequest::new();
        (q.volume_guest_path, q.size) = (mp.display().to_string(), size);
        pod.rt
            .block_on(pod.c.agent.resize_volume(pod.c.ctx(), &q))
            .map_err(status)
    };
    assert_eq!(
        resize(8 << 20).unwrap_err().0,
        ttrpc::Code::INVALID_ARGUMENT,
        "no shrinking"
    );
    // The kernel grows ext4 only for a holder of CAP_SYS_RESOURCE, which a
    // guest's init has and some hosts' root lacks (this machine's does).
    if !has_cap_sys_resource() {
        let (code, msg) = resize(32 << 20).unwrap_err();
        assert_eq!(code, ttrpc::Code::UNAVAILABLE, "{msg}");
        assert!(msg.contains("CAP_SYS_RESOURCE"), "{msg}");
        assert_eq!(bytes(&stats(&pod).unwrap()), bytes(&before), "nothing changed");
    } else {
        resize(32 << 20).unwrap();
        let mid = bytes(&stats(&pod).unwrap());
        assert!(mid > 28 << 20 && mid <= 32 << 20, "grown to 32 MiB: {mid}");
        resize(0).unwrap();
        let after = bytes(&stats(&pod).unwrap());
        assert!(after > 44 << 20 && after <= 48 << 20, "grown to the device: {after}");
    }
    let mut q = VolumeStatsRequest::new();
    q.volume_guest_path = "/no/such/volume".into();
    let e = pod
        .rt
        .block_on(pod.c.agent.get_volume_stats(pod.c.ctx(), &q))
        .map_err(status)
        .unwrap_err();
    assert_eq!(e.0, ttrpc::Code::INVALID_ARGUMENT, "{e:?}");
    pod.remove("vol").unwrap();
    pod.destroy().unwrap();
    assert!(common::mounts_under(pod.dir()).is_empty());
}

/// CAP_SYS_RESOURCE (bit 24) in this process's effective set (the agent
/// runs with the same).
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    u64::from_str_radix(&eff, 16).unwrap() & (1 << 24) != 0
}
