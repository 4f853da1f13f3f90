//! The golden requests (bosun_client::golden, from tests/fixtures) sent to
//! the agent as the Kata runtimes build them, each pod driven to its end.
//! Only what cannot exist where the agent runs is changed, and each change
//! is named where it is made: the rootfs of kata-agent-ctl's bundle; the
//! virtio-fs share (a tmpfs at the same mount point, the containers'
//! rootfs bound into it and their files written by CopyFile, as the host
//! would have shared them); an image the guest would pull (the rootfs bound
//! at the pull's mount point, after the request as sent was answered).

use bosun_client::golden::{self, SHARED_DIR};
use bosun_protocols::agent::{CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, Storage};
use ttrpc::Code;

use crate::calls::Fail;
use crate::ctx::{check, ok, Ctx, Outcome, Verdict, READ_BOUND};

/// The golden scenarios, by name, with what each proves.
pub const ALL: &[(&str, &str)] = &[
    (
        "golden_agent_ctl",
        "kata-agent-ctl's CreateContainer (its template through Kata's Rust conversion: caps without CAP_, net/mnt namespaces, empty exec_id)",
    ),
    (
        "golden_runtime_rs_remote",
        "runtime-rs with a remote hypervisor: shm storage, CopyFile'd pod files and projected volume, image_guest_pull pause, the workload",
    ),
    (
        "golden_go_virtio_fs",
        "the Go runtime with virtio-fs: kataShared share, rootfs and hostname/hosts/resolv.conf from the share, cgroupsPath, rlimits, oomScoreAdj, devices, uid 1000",
    ),
];

fn parse<M: protobuf::MessageFull>(f: &golden::Fixture, subst: &[(&str, &str)]) -> Result<M, Verdict> {
    f.parse(subst).map_err(Verdict::Fail)
}

fn bind(source: &str, mount_point: &str) -> Storage {
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) = ("bind".into(), source.into(), "bind".into(), mount_point.into());
    s
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Runs golden scenario `name`.
pub async fn run(name: &str, c: &Ctx<'_>) -> Outcome {
    match name {
        "golden_agent_ctl" => agent_ctl(c).await,
        "golden_runtime_rs_remote" => remote(c).await,
        "golden_go_virtio_fs" => virtio_fs(c).await,
        other => Err(Verdict::Fail(format!("unknown scenario {other}"))),
    }
}

async fn agent_ctl(c: &Ctx<'_>) -> Outcome {
    let k = &c.calls;
    let sb: CreateSandboxRequest = parse(&golden::AGENT_CTL_SANDBOX, &[])?;
    ok(k.send_sandbox(&sb).await, "CreateSandbox (kata-agent-ctl's)")?;
    let root = c.rootfs.display().to_string();
    let req: CreateContainerRequest = parse(&golden::AGENT_CTL_CONTAINER, &[("@ROOTFS@", &root)])?;
    let id = req.container_id.clone();
    ok(k.send_container(&req).await, "CreateContainer (kata-agent-ctl's)")?;
    ok(k.start(&id).await, "StartContainer")?;
    let out = ok(
        k.read_until(&id, "", "CapEff", READ_BOUND).await,
        "ReadStdout of the init (exec_id \"\")",
    )?;
    check(out.starts_with("agent-ctl\n"), format!("output {out:?}"))?;
    check(
        out.contains("CapEff:\t00000000a80425fb"),
        format!("containerd's 14 capabilities effective: {out:?}"),
    )?;
    let mut p = req.OCI.Process.clone().unwrap_or_default();
    p.Args = vec!["sh".into(), "-c".into(), "grep ^NoNewPrivs /proc/self/status".into()];
    ok(
        k.exec_process("exec-nnp", &id, p).await,
        "ExecProcess (the template's process)",
    )?;
    let out = ok(k.read_all(&id, "exec-nnp").await, "ReadStdout")?;
    check(
        text(&out) == "NoNewPrivs:\t1\n",
        format!("exec output {:?}", text(&out)),
    )?;
    ok(k.signal(&id, "", 9).await, "SignalProcess SIGKILL (exec_id \"\")")?;
    check(
        ok(k.wait(&id, "").await, "WaitProcess")? == 137,
        "init did not die of SIGKILL",
    )?;
    ok(k.remove(&id).await, "RemoveContainer")?;
    ok(k.destroy().await, "DestroySandbox")
}

async fn remote(c: &Ctx<'_>) -> Outcome {
    let k = &c.calls;
    let sb: CreateSandboxRequest = parse(&golden::REMOTE_SANDBOX, &[])?;
    ok(k.send_sandbox(&sb).await, "CreateSandbox (shm storage only)")?;
    let copies: Vec<CopyFileRequest> = golden::REMOTE_COPY_FILES.parse_list().map_err(Verdict::Fail)?;
    for r in &copies {
        ok(k.copy_file(r).await, &format!("CopyFile {}", r.path))?;
    }
    let pause: CreateContainerRequest = parse(&golden::REMOTE_PAUSE, &[])?;
    ok(
        k.send_container(&pause).await,
        "CreateContainer (pause, image_guest_pull \"pause\")",
    )?;
    ok(k.start(&pause.container_id).await, "StartContainer (pause)")?;
    let wl: CreateContainerRequest = parse(&golden::REMOTE_WORKLOAD, &[])?;
    let id = wl.container_id.clone();
    // As sent: an agent that pulls images does; one that does not, or
    // that reaches no registry (docker.io from a machine without the
    // internet: refused at once, or name resolution timing out past the
    // call's deadline), says so. The `guest_pull` scenario pulls from a
    // registry for real.
    let pulled = match k.send_container(&wl).await {
        Ok(()) => true,
        Err(Fail {
            code: Code::UNIMPLEMENTED | Code::UNAVAILABLE | Code::DEADLINE_EXCEEDED,
            ..
        }) => false,
        Err(f) => {
            return Err(Verdict::Fail(format!(
                "CreateContainer (image_guest_pull workload): {:?}: {}",
                f.code, f.msg
            )))
        }
    };
    if !pulled {
        // The image's rootfs where the pull would have mounted it.
        let mut wl2 = wl.clone();
        wl2.storages = vec![bind(&c.rootfs.display().to_string(), &wl.storages[0].mount_point)];
        ok(
            k.send_container(&wl2).await,
            "CreateContainer (workload, its rootfs bound at the pull's mount point)",
        )?;
    }
    ok(k.start(&id).await, "StartContainer")?;
    let out = ok(k.read_until(&id, &id, "default\n", READ_BOUND).await, "ReadStdout")?;
    check(
        out.starts_with("hello from web-0\nnameserver 10.96.0.10\n") && out.contains("namespace\ntoken\n"),
        format!("hostname, CopyFile'd resolv.conf and projected volume in the container: {out:?}"),
    )?;
    ok(
        k.exec(
            &id,
            "probe",
            &["sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start; touch /var/run/secrets/kubernetes.io/serviceaccount/x 2>/dev/null || echo read-only"],
        )
        .await,
        "ExecProcess",
    )?;
    let out = text(&ok(k.read_all(&id, "probe").await, "ReadStdout")?);
    check(
        out == "0\nread-only\n",
        format!("pod sysctl and read-only volume: {out:?}"),
    )?;
    ok(k.remove(&id).await, "RemoveContainer")?;
    ok(k.remove(&pause.container_id).await, "RemoveContainer (pause)")?;
    ok(k.destroy().await, "DestroySandbox")
}

async fn virtio_fs(c: &Ctx<'_>) -> Outcome {
    let k = &c.calls;
    let mut sb: CreateSandboxRequest = parse(&golden::VIRTIOFS_SANDBOX, &[])?;
    check(
        sb.storages[0].driver == "virtio-fs",
        "the fixture's first storage is the share",
    )?;
    // No virtio-fs device here: the share's mount point gets a tmpfs, and
    // what the host would have put in it is bound and copied in below.
    (sb.storages[0].driver, sb.storages[0].source, sb.storages[0].fstype) =
        ("ephemeral".into(), "tmpfs".into(), "tmpfs".into());
    ok(k.send_sandbox(&sb).await, "CreateSandbox (the share and shm)")?;
    let pause: CreateContainerRequest = parse(&golden::VIRTIOFS_PAUSE, &[])?;
    let wl: CreateContainerRequest = parse(&golden::VIRTIOFS_WORKLOAD, &[])?;
    let root = c.rootfs.display().to_string();
    for req in [&pause, &wl] {
        for m in req.OCI.Mounts.iter().filter(|m| m.source.starts_with(SHARED_DIR)) {
            let data: &[u8] = match m.source.rsplit('-').next().unwrap_or("") {
                "hostname" => b"web-0\n",
                "hosts" => b"127.0.0.1\tlocalhost\n",
                _ => b"nameserver 10.96.0.10\n",
            };
            let mut r = CopyFileRequest::new();
            (r.path, r.file_size, r.file_mode, r.data) = (m.source.clone(), data.len() as i64, 0o100644, data.to_vec());
            ok(k.copy_file(&r).await, "CopyFile (a file of the share)")?;
        }
        let mut r = req.clone();
        r.storages.push(bind(&root, &req.OCI.Root.Path));
        ok(
            k.send_container(&r).await,
            &format!("CreateContainer {} (rootfs from the share)", req.container_id),
        )?;
        ok(k.start(&req.container_id).await, "StartContainer")?;
    }
    let id = wl.container_id.clone();
    let out = ok(k.read_until(&id, &id, "1024\n", READ_BOUND).await, "ReadStdout")?;
    check(
        out == "hello from web-0 uid 1000\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n937\n1024\n",
        format!("user, capabilities, oomScoreAdj, rlimit as sent: {out:?}"),
    )?;
    ok(
        k.exec(&id, "dev", &["sh", "-c", "ls -l /dev/fuse"]).await,
        "ExecProcess",
    )?;
    let out = text(&ok(k.read_all(&id, "dev").await, "ReadStdout")?);
    check(
        out.starts_with("crw-rw-rw-") && out.contains("229"),
        format!("Linux.Devices /dev/fuse: {out:?}"),
    )?;
    ok(k.destroy().await, "DestroySandbox (with both containers running)")
}
