//! The call sequence a kata shim sends for a pod's life, replayed against
//! bosun over a unix socket (root, private network namespace).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bosun_protocols::agent::*;
use bosun_protocols::health::CheckRequest;
use bosun_protocols::oci;
use common::pod::{spec, Pod};

fn mount(dest: &str, ty: &str, src: &str, opts: &[&str]) -> oci::Mount {
    let mut m = oci::Mount::new();
    (m.destination, m.type_, m.source) = (dest.into(), ty.into(), src.into());
    m.options = opts.iter().map(|o| o.to_string()).collect();
    m
}

fn storage(driver: &str, source: &str, fstype: &str, opts: &[&str], mp: &str) -> Storage {
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) = (driver.into(), source.into(), fstype.into(), mp.into());
    s.options = opts.iter().map(|o| o.to_string()).collect();
    s
}

fn annotations(kind: &str, sid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.cri.container-type".to_string(), kind.to_string()),
        ("io.kubernetes.cri.sandbox-id".to_string(), sid.to_string()),
        (
            "io.katacontainers.pkg.oci.container_type".to_string(),
            if kind == "sandbox" {
                "pod_sandbox"
            } else {
                "pod_container"
            }
            .to_string(),
        ),
    ])
}

#[test]
#[ignore = "needs root"]
fn kata_shim_call_sequence() {
    assert!(
        common::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    let pod = Pod::start();
    let (rt, c) = (&pod.rt, &pod.c);
    let sid = "4f1d2c";
    let run = pod.run_dir();
    let shm = pod.mnt("sandbox/shm");
    let shared = pod.mnt("shared/containers");
    let host_rootfs = common::busybox_rootfs(pod.dir());

    // Start-up: health, guest details.
    rt.block_on(c.health.check(c.ctx(), &CheckRequest::new())).unwrap();
    let mut gd = GuestDetailsRequest::new();
    (gd.mem_block_size, gd.mem_hotplug_probe) = (true, true);
    let details = rt.block_on(c.agent.get_guest_details(c.ctx(), &gd)).unwrap();
    // Every driver the agent serves, from its one table (the list drifted
    // when it was written by hand: no mmioblk, nvdimm, watchable-bind or
    // image_guest_pull).
    let handlers = &details.agent_details.storage_handlers;
    for d in [
        "virtio-fs",
        "mmioblk",
        "nvdimm",
        "watchable-bind",
        "image_guest_pull",
        "scsi",
    ] {
        assert!(handlers.contains(&d.to_string()), "{d} not advertised: {handlers:?}");
    }
    assert!(!handlers.contains(&"blk-ccw".to_string()), "blk-ccw is not served");

    // CreateSandbox with the sandbox-wide shm storage.
    let mut cs = CreateSandboxRequest::new();
    (cs.hostname, cs.sandbox_id) = ("kata-pod".into(), sid.into());
    cs.dns = vec!["nameserver 10.0.0.10".into(), "search svc.cluster.local".into()];
    cs.storages = vec![storage(
        "ephemeral",
        "shm",
        "tmpfs",
        &["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
        shm.to_str().unwrap(),
    )];
    rt.block_on(c.agent.create_sandbox(c.ctx(), &cs)).unwrap();

    // The pause container: no rootfs in remote-hypervisor mode.
    let mut ps = spec(None, &["/pause"]);
    ps.Annotations = annotations("sandbox", sid);
    ps.Mounts
        .push(mount("/dev/shm", "bind", shm.to_str().unwrap(), &["rbind"]));
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.exec_id) = (sid.into(), sid.into());
    cc.OCI = Some(ps).into();
    rt.block_on(c.agent.create_container(c.ctx(), &cc)).unwrap();
    let mut st = StartContainerRequest::new();
    st.container_id = sid.into();
    rt.block_on(c.agent.start_container(c.ctx(), &st)).unwrap();

    // A workload whose rootfs the host shares (virtio-fs in a VM; a bind of
    // a guest directory here), mounted by a container storage.
    let cid = "a0b1c2d3";
    let rootfs = shared.join(cid).join("rootfs");
    let mut ws = spec(
        Some(&rootfs),
        &[
            "sh",
            "-c",
            "cat /etc/resolv.conf; echo written > /dev/shm/x; hostname; sleep 300",
        ],
    );
    ws.Annotations = annotations("container", sid);
    ws.Mounts
        .push(mount("/dev/shm", "bind", shm.to_str().unwrap(), &["rbind"]));
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.exec_id) = (cid.into(), cid.into());
    cc.OCI = Some(ws).into();
    cc.storages = vec![storage(
        "bind",
        host_rootfs.to_str().unwrap(),
        "bind",
        &[],
        rootfs.to_str().unwrap(),
    )];
    rt.block_on(c.agent.create_container(c.ctx(), &cc)).unwrap();

    // The shim starts copying output as soon as the container exists.
    let reader = {
        let c = c.clone();
        let cid = cid.to_string();
        rt.spawn(async move {
            let mut out = Vec::new();
            let mut r = ReadStreamRequest::new();
            (r.container_id, r.exec_id, r.len) = (cid.clone(), cid, 32 * 1024);
            loop {
                let d = c.agent.read_stdout(c.long_poll(), &r).await.unwrap().data;
                if d.is_empty() {
                    return out;
                }
                out.extend(d);
            }
        })
    };
    st.container_id = cid.into();
    rt.block_on(c.agent.start_container(c.ctx(), &st)).unwrap();

    // Exec (as crictl exec does), stats, then the stop sequence.
    pod.exec(cid, "exec-1", &["cat", "/dev/shm/x"]).unwrap();
    assert_eq!(pod.read_all(cid, "exec-1", false).unwrap(), b"written\n");
    assert_eq!(pod.wait(cid, "exec-1").unwrap(), 0);
    let mut sr = StatsContainerRequest::new();
    sr.container_id = cid.into();
    assert!(rt
        .block_on(c.agent.stats_container(c.ctx(), &sr))
        .unwrap()
        .cgroup_stats
        .is_some());

    for id in [cid, sid] {
        pod.signal(id, "", 15).unwrap();
        let status = pod.wait(id, "").unwrap();
        assert!(status == 143 || status == 0, "{id}: {status}");
        let mut rm = RemoveContainerRequest::new();
        (rm.container_id, rm.timeout) = (id.into(), 10);
        rt.block_on(c.agent.remove_container(c.ctx(), &rm)).unwrap();
    }
    let out = String::from_utf8(
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), reader).await })
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out, "nameserver 10.0.0.10\nsearch svc.cluster.local\nkata-pod\n");
    rt.block_on(c.agent.destroy_sandbox(c.ctx(), &DestroySandboxRequest::new()))
        .unwrap();
    assert_eq!(common::mounts_under(pod.dir()), Vec::<std::path::PathBuf>::new());
    assert_eq!(pod.cgroup_dirs(), Vec::<std::path::PathBuf>::new());
    assert!(!run.join("containers").exists() && !run.join("sandbox").exists());
    assert!(!pod.dir().join("mnt").exists(), "storage mount points left");
}
