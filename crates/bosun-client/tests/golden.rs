//! Golden requests: CreateSandbox, CopyFile and CreateContainer exactly as
//! the Kata runtimes build them (tests/fixtures/, each named in
//! tests/fixtures/README.md with the upstream source it mirrors), sent as
//! they are and driven end to end: create, start, output, exec, remove,
//! destroy, then nothing left.
//!
//! What a test changes in a fixture is only what cannot exist on this
//! machine, and it says so where it does it: the rootfs path of
//! kata-agent-ctl's bundle, the virtio-fs share (a bind of a host
//! directory here), and an image the guest would pull.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bosun_protocols::agent::{CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, Storage};
use common::fixtures::{fixture, fixture_list};
use common::pod::Pod;

fn mask(names: &[String]) -> u64 {
    use std::str::FromStr;
    names
        .iter()
        .map(|n| {
            let c = caps::to_canonical(n);
            caps::Capability::from_str(&c).unwrap().bitmask()
        })
        .fold(0, |m, b| m | b)
}

/// The cgroup directories (one per v1 hierarchy, or the v2 one) at `rel`
/// below this agent's cgroup parent.
fn cgroup_dirs(pod: &Pod, rel: &str) -> Vec<PathBuf> {
    pod.cgroup_dirs().into_iter().map(|d| d.join(rel)).collect()
}

fn memory_limit(pod: &Pod, rel: &str) -> Option<String> {
    cgroup_dirs(pod, rel).into_iter().find_map(|d| {
        ["memory.max", "memory.limit_in_bytes"]
            .iter()
            .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
            .map(|s| s.trim().to_string())
    })
}

fn assert_torn_down(pod: &Pod, what: &str) {
    assert!(
        pod.agent.mounts_under("/run/kata-containers").is_empty(),
        "{what}: mounts left: {:?}",
        pod.agent.mounts_under("/run/kata-containers")
    );
    assert!(
        pod.cgroup_dirs().is_empty(),
        "{what}: cgroups left: {:?}",
        pod.cgroup_dirs()
    );
    pod.destroy()
        .unwrap_or_else(|e| panic!("{what}: second DestroySandbox: {e:?}"));
}

/// kata-agent-ctl's CreateContainer: its OCI template converted by Kata's
/// Rust protocol code (capability names without CAP_, in HashSet order;
/// namespace types "net" and "mnt"; no annotations; an empty exec_id).
#[test]
#[ignore = "needs root"]
fn agent_ctl_template() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start();
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.send_create_sandbox(&fixture("agent-ctl-CreateSandbox.json", &[]))
        .unwrap();
    // Only the rootfs differs from the fixture: kata-agent-ctl points
    // Root.Path at the bundle it unpacked on its host.
    let req: CreateContainerRequest = fixture(
        "agent-ctl-CreateContainer.json",
        &[("@ROOTFS@", rootfs.to_str().unwrap())],
    );
    let id = req.container_id.clone();
    pod.send_create_container(&req).unwrap();
    pod.start_c(&id).unwrap();
    // exec_id "" is the container's init in the Kata protocol.
    let out = pod.read_until(&id, "", "CapEff").unwrap();
    assert!(out.starts_with("agent-ctl\n"), "{out}");
    let want = mask(&req.OCI.Process.Capabilities.Effective);
    assert!(
        out.contains(&format!("CapEff:\t{want:016x}")),
        "14 capabilities effective: {out}"
    );

    // kata-agent-ctl's ExecProcess sends the template's process again with
    // the command it is given.
    let mut p = req.OCI.Process.clone().unwrap();
    p.Args = vec!["sh".into(), "-c".into(), "grep ^NoNewPrivs /proc/self/status".into()];
    pod.exec_with(&id, "e1", p).unwrap();
    let out = String::from_utf8(pod.read_all(&id, "e1", false).unwrap()).unwrap();
    assert_eq!(out, "NoNewPrivs:\t1\n");
    assert_eq!(pod.wait(&id, "e1").unwrap(), 0);

    pod.signal(&id, "", 9).unwrap();
    assert_eq!(pod.wait(&id, "").unwrap(), 137);
    pod.remove(&id).unwrap();
    pod.destroy().unwrap();
    assert!(
        common::mounts_under(&rootfs).is_empty(),
        "{:?}",
        common::mounts_under(&rootfs)
    );
    assert_torn_down(&pod, "agent-ctl");
}

/// runtime-rs with a remote hypervisor (peer pods): only an ephemeral shm
/// storage for the sandbox, the pod's files sent by CopyFile, the pause as
/// an `image_guest_pull` of "pause", the workload pulled in the guest.
#[test]
#[ignore = "needs root"]
fn runtime_rs_remote_hypervisor_pod() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start_isolated();
    let sb: CreateSandboxRequest = fixture("runtime-rs-remote-CreateSandbox.json", &[]);
    pod.send_create_sandbox(&sb).unwrap();
    assert_eq!(
        pod.agent.mounts_under("/run/kata-containers"),
        vec!["/run/kata-containers/sandbox/shm".to_string()]
    );

    let copies: Vec<CopyFileRequest> = fixture_list("runtime-rs-remote-CopyFile.json");
    for (i, c) in copies.iter().enumerate() {
        pod.copy_file(c)
            .unwrap_or_else(|e| panic!("CopyFile[{i}] {}: {e:?}", c.path));
    }
    let sa = copies
        .iter()
        .find(|c| c.path.ends_with("-serviceaccount"))
        .unwrap()
        .path
        .clone();
    let seen = |p: &str| pod.agent.seen(p);
    assert_eq!(
        std::fs::read_link(seen(&format!("{sa}/token"))).unwrap(),
        Path::new("..data/token")
    );
    assert_eq!(
        std::fs::read_to_string(seen(&format!("{sa}/namespace"))).unwrap(),
        "default"
    );
    let mode = std::fs::metadata(seen(&sa)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777, "the directory's own mode, not dir_mode");
    // The runtime re-sends a file when it changes: replaced whole.
    let mut again = copies[0].clone();
    again.data = b"nameserver 10.96.0.11\n".to_vec();
    again.file_size = again.data.len() as i64;
    pod.copy_file(&again).unwrap();
    assert_eq!(
        std::fs::read_to_string(seen(&again.path)).unwrap(),
        "nameserver 10.96.0.11\n"
    );

    // The pause: nothing is pulled; bosun's built-in pause runs.
    let pause: CreateContainerRequest = fixture("runtime-rs-remote-CreateContainer-pause.json", &[]);
    pod.send_create_container(&pause).unwrap();
    pod.start_c(&pause.container_id).unwrap();

    // The workload as sent: bosun pulls docker.io/library/busybox:1.36
    // itself, and this agent's network namespace reaches no registry, so
    // the answer is UNAVAILABLE naming it (tests/image_pull.rs pulls from
    // a real registry).
    let wl: CreateContainerRequest = fixture("runtime-rs-remote-CreateContainer-workload.json", &[]);
    let (code, msg) = pod.send_create_container(&wl).unwrap_err();
    assert_eq!(code, ttrpc::Code::UNAVAILABLE, "{msg}");
    assert!(msg.contains("registry docker.io unavailable"), "{msg}");
    // Everything else of it, with the image's rootfs where the pull would
    // have mounted it (the storage's mount_point, which is Root.Path).
    let rootfs = common::busybox_rootfs(pod.dir());
    let mut wl2 = wl.clone();
    let mut s = Storage::new();
    s.driver = "bind".into();
    s.source = rootfs.to_str().unwrap().into();
    s.fstype = "bind".into();
    s.mount_point = wl.storages[0].mount_point.clone();
    wl2.storages = vec![s];
    pod.send_create_container(&wl2).unwrap();
    let id = wl.container_id.clone();
    pod.start_c(&id).unwrap();
    let out = pod.read_until(&id, &id, "default\n").unwrap();
    assert!(out.starts_with("hello from web-0\nnameserver 10.96.0.10\n"), "{out}");
    assert!(
        out.contains("namespace\ntoken\n"),
        "the projected volume, bound read-only: {out}"
    );

    // The pod's sysctls (set on the pause) are in the pod's namespaces; the
    // workload's oom_score_adj, cgroup and limits are as sent.
    let p = bosun_client::spec::process(&[
        "sh".into(),
        "-c".into(),
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/self/oom_score_adj; touch /var/run/secrets/kubernetes.io/serviceaccount/x 2>/dev/null || echo read-only".into(),
    ]);
    pod.exec_with(&id, "probe", p).unwrap();
    let out = String::from_utf8(pod.read_all(&id, "probe", false).unwrap()).unwrap();
    assert_eq!(out, "0\n0\nread-only\n");
    let slice =
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6dad7281_57ff_49e4_b844_c588ceabec16.slice";
    let wl_cg = format!("{slice}/cri-containerd-{id}.scope");
    assert_eq!(memory_limit(&pod, &wl_cg).as_deref(), Some("268435456"));

    pod.remove(&id).unwrap();
    pod.remove(&pause.container_id).unwrap();
    pod.destroy().unwrap();
    assert!(!seen(&sa).exists(), "CopyFile'd files go with the sandbox");
    assert!(!seen("/run/kata-containers/shared").exists());
    assert_torn_down(&pod, "runtime-rs remote");
}

/// The Go runtime (and runtime-rs) with a local VM sharing the host's
/// container directory over virtio-fs (tag kataShared).
#[test]
#[ignore = "needs root"]
fn go_runtime_virtio_fs_pod() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start_isolated();
    // The host side of the share, as the runtime lays it out: each
    // container's rootfs and its hostname/hosts/resolv.conf files.
    let share = pod.dir().join("share");
    let sandbox: CreateSandboxRequest = fixture("go-runtime-virtiofs-CreateSandbox.json", &[]);
    let pause: CreateContainerRequest = fixture("go-runtime-virtiofs-CreateContainer-pause.json", &[]);
    let wl: CreateContainerRequest = fixture("go-runtime-virtiofs-CreateContainer-workload.json", &[]);
    let prefix = "/run/kata-containers/shared/containers/";
    for req in [&pause, &wl] {
        let root = common::busybox_rootfs(&share.join(&req.container_id));
        assert_eq!(
            Path::new(prefix).join(&req.container_id).join("rootfs"),
            Path::new(&req.OCI.Root.Path)
        );
        // The pause image's /pause is in the busybox rootfs.
        assert!(root.join("pause").exists());
        for m in req.OCI.Mounts.iter().filter(|m| m.source.starts_with(prefix)) {
            let name = m.source.rsplit('-').next().unwrap();
            let text = match name {
                "hostname" => "web-0\n",
                "hosts" => "127.0.0.1\tlocalhost\n",
                _ => "nameserver 10.96.0.10\n",
            };
            std::fs::write(share.join(m.source.strip_prefix(prefix).unwrap()), text).unwrap();
        }
    }
    // No virtio-fs device here: the one storage replaced is the share,
    // by a bind of the host directory at the same mount point.
    let mut sb = sandbox.clone();
    assert_eq!(
        (sb.storages[0].driver.as_str(), sb.storages[0].source.as_str()),
        ("virtio-fs", "kataShared")
    );
    sb.storages[0].driver = "bind".into();
    sb.storages[0].fstype = "bind".into();
    sb.storages[0].source = share.to_str().unwrap().into();
    pod.send_create_sandbox(&sb).unwrap();

    pod.send_create_container(&pause).unwrap();
    pod.start_c(&pause.container_id).unwrap();
    pod.send_create_container(&wl).unwrap();
    let id = wl.container_id.clone();
    pod.start_c(&id).unwrap();
    let out = pod.read_until(&id, &id, "1024\n").unwrap();
    let bnd = mask(&wl.OCI.Process.Capabilities.Bounding);
    assert_eq!(
        out,
        format!(
            "hello from web-0 uid 1000\nCapEff:\t{:016x}\nCapBnd:\t{bnd:016x}\n937\n1024\n",
            0
        )
    );
    // Linux.Devices: the node is made in the container.
    let p = bosun_client::spec::process(&["sh".into(), "-c".into(), "ls -l /dev/fuse".into()]);
    pod.exec_with(&id, "dev", p).unwrap();
    let out = String::from_utf8(pod.read_all(&id, "dev", false).unwrap()).unwrap();
    assert!(
        out.starts_with("crw-rw-rw-") && out.contains("10,") && out.contains("229"),
        "{out}"
    );

    let pod_cg = "kubepods/burstable/pod6dad7281-57ff-49e4-b844-c588ceabec16";
    assert_eq!(
        memory_limit(&pod, &format!("{pod_cg}/{id}")).as_deref(),
        Some("268435456")
    );
    assert!(cgroup_dirs(
        &pod,
        &format!(
            "kubepods/besteffort/pod6dad7281-57ff-49e4-b844-c588ceabec16/{}",
            pause.container_id
        )
    )
    .iter()
    .all(|d| d.is_dir()));

    pod.destroy().unwrap();
    assert!(
        share.join(&id).join("rootfs/bin/busybox").exists(),
        "the host's share is left as it was"
    );
    assert_torn_down(&pod, "Go runtime virtio-fs");
}

/// runtime-rs's pause (image_guest_pull "pause") on a pod VM that has a
/// pause bundle: as with the Kata agent, it runs the bundle's process from
/// the bundle's rootfs, not the request's, and nothing is pulled.
#[test]
#[ignore = "needs root"]
fn runtime_rs_remote_pause_from_the_pod_vm_bundle() {
    assert!(common::is_root(), "needs root");
    let bundle_dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir.path().join("pause_bundle");
    common::busybox_rootfs(&bundle);
    std::fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion":"1.1.0","process":{"args":["/pause"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#,
    )
    .unwrap();
    let pod = Pod::start_with(true, &["--pause-bundle", bundle.to_str().unwrap()]);
    pod.send_create_sandbox(&fixture("runtime-rs-remote-CreateSandbox.json", &[]))
        .unwrap();
    // The pause's resolv.conf comes first, by CopyFile, as runtime-rs sends it.
    for c in fixture_list::<CopyFileRequest>("runtime-rs-remote-CopyFile.json") {
        pod.copy_file(&c).unwrap();
    }
    let pause: CreateContainerRequest = fixture("runtime-rs-remote-CreateContainer-pause.json", &[]);
    pod.send_create_container(&pause).unwrap();
    pod.start_c(&pause.container_id).unwrap();
    let listing = pod.diagnostic("containers").unwrap();
    let v: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let pid = v[0]["pid"].as_i64().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
    assert_eq!(
        args.last(),
        Some(&&b"/pause"[..]),
        "the bundle's process: {:?}",
        String::from_utf8_lossy(&cmdline)
    );
    pod.destroy().unwrap();
    assert_torn_down(&pod, "pause bundle");
}

/// The pod network a peer-pods pod VM has: `podns` (`ip netns add`, as
/// CAA's `netns@podns.service`), holding the pod's interface with its IP
/// (here one end of a veth from the agent's own namespace), and a cloud
/// volume the forwarder mounted at `/run/cloud-volumes/<name>`.
const POD_VM: &str = "ip netns add podns && ip -n podns link set lo up \
    && ip link add veth-host type veth peer name eth0 netns podns \
    && ip -n podns addr add 10.99.0.7/24 dev eth0 && ip -n podns link set eth0 up \
    && ip addr add 10.99.0.1/24 dev veth-host && ip link set veth-host up \
    && mkdir -p /run/cloud-volumes/data && mount -t tmpfs cloud-volume /run/cloud-volumes/data \
    && echo from-the-cloud-volume > /run/cloud-volumes/data/f && ";

#[test]
#[ignore = "needs root"]
fn a_peer_pods_pod_as_the_forwarder_rewrites_it_runs_in_podns() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start_isolated_after(POD_VM);
    let agent_pid = pod.agent.child.id();
    let podns = bosun::sys::ns::namespace_of(Path::new(&format!("/proc/{agent_pid}/root/run/netns/podns"))).unwrap();
    let mounts_before = pod.agent.mounts_under("/");
    // Over this one connection, as the forwarder keeps one for the pod's life.
    let sb: CreateSandboxRequest = fixture("caa-CreateSandbox.json", &[]);
    assert!(sb.dns.is_empty(), "the forwarder empties Dns");
    pod.send_create_sandbox(&sb).unwrap();
    for c in fixture_list::<CopyFileRequest>("runtime-rs-remote-CopyFile.json") {
        pod.copy_file(&c).unwrap();
    }
    let pause: CreateContainerRequest = fixture("caa-CreateContainer-pause.json", &[]);
    pod.send_create_container(&pause).unwrap();
    pod.start_c(&pause.container_id).unwrap();
    // The workload, its image's rootfs bound where the pull would mount it
    // (tests/image_pull.rs pulls for real), and a cloud volume as the
    // forwarder rewrites it: the mount's source made /run/cloud-volumes/<name>.
    let wl: CreateContainerRequest = fixture("caa-CreateContainer-workload.json", &[]);
    let mut wl = wl.clone();
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype) = (
        "bind".into(),
        common::busybox_rootfs(pod.dir()).display().to_string(),
        "bind".into(),
    );
    s.mount_point = wl.storages[0].mount_point.clone();
    wl.storages = vec![s];
    let mut vol = bosun_protocols::oci::Mount::new();
    (vol.destination, vol.source, vol.type_) = ("/data".into(), "/run/cloud-volumes/data".into(), "bind".into());
    vol.options = vec!["rbind".into(), "rw".into()];
    wl.OCI.as_mut().unwrap().Mounts.push(vol);
    pod.send_create_container(&wl).unwrap();
    let id = wl.container_id.clone();
    pod.start_c(&id).unwrap();
    // Every container is in podns: its process's network namespace, and
    // the interfaces it sees.
    let listing: serde_json::Value = serde_json::from_str(&pod.diagnostic("containers").unwrap()).unwrap();
    for c in listing.as_array().unwrap() {
        let pid = c["pid"].as_i64().unwrap();
        let net = bosun::sys::ns::namespace_of(Path::new(&format!("/proc/{pid}/ns/net"))).unwrap();
        assert_eq!(net.inode, podns.inode, "container {} is not in podns", c["id"]);
    }
    let p = bosun_client::spec::process(&[
        "sh".into(),
        "-c".into(),
        "cat /proc/net/dev /proc/net/fib_trie /data/f".into(),
    ]);
    pod.exec_with(&id, "probe", p).unwrap();
    let out = String::from_utf8(pod.read_all(&id, "probe", false).unwrap()).unwrap();
    assert!(
        out.contains("eth0:") && !out.contains("veth-host"),
        "interfaces seen: {out}"
    );
    assert!(out.contains("10.99.0.7"), "the pod's address is not seen: {out}");
    assert!(out.contains("from-the-cloud-volume"), "the cloud volume: {out}");
    pod.destroy().unwrap();
    assert_eq!(pod.agent.mounts_under("/"), mounts_before, "mounts left");
}
