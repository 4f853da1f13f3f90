//! Pod lifecycle with real namespaces, mounts and processes (root only).

mod common;

use common::mounts_under;
use common::pod::{spec, Pod};

fn text(b: Vec<u8>) -> String {
    String::from_utf8_lossy(&b).into_owned()
}

fn pod(pidns: bool) -> (Pod, std::path::PathBuf) {
    common::pod::started("podhost", pidns)
}

#[test]
#[ignore = "needs root"]
fn workloads_share_the_pause_namespaces_and_see_its_process() {
    let (pod, rootfs) = pod(true);
    pod.create("sleeper", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("sleeper").unwrap();
    pod.create("web", spec(Some(&rootfs), &["sh", "-c", "hostname; ps -o pid,args"]))
        .unwrap();
    pod.start_c("web").unwrap();
    let out = text(pod.read_all("web", "", false).unwrap());
    assert_eq!(pod.wait("web", "").unwrap(), 0, "output: {out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("podhost"), "hostname; output: {out}");
    let ps: Vec<&str> = lines.collect();
    assert!(
        ps.iter()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("bosun-init")),
        "pause is not PID 1 of the pod: {ps:?}"
    );
    assert!(
        ps.iter().any(|l| l.contains("sleep 300")),
        "the other workload is not visible: {ps:?}"
    );

    pod.exec("sleeper", "h", &["hostname"]).unwrap();
    assert_eq!(text(pod.read_all("sleeper", "h", false).unwrap()).trim(), "podhost");
    assert_eq!(pod.wait("sleeper", "h").unwrap(), 0);

    pod.destroy().unwrap();
    assert_eq!(mounts_under(pod.dir()), Vec::<std::path::PathBuf>::new());
    assert!(!pod.run_dir().join("containers").exists(), "container dirs left behind");
}

#[test]
#[ignore = "needs root"]
fn exec_stdin_round_trip_and_ten_mib_of_output() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();

    pod.exec("app", "cat", &["cat"]).unwrap();
    assert_eq!(pod.write("app", "cat", b"hello, bosun\n").unwrap(), 13);
    assert_eq!(pod.write("app", "cat", b"").unwrap(), 0); // empty write closes stdin
    assert_eq!(pod.read_all("app", "cat", false).unwrap(), b"hello, bosun\n");
    assert_eq!(pod.wait("app", "cat").unwrap(), 0);

    const TEN_MIB: usize = 10 << 20;
    pod.exec(
        "app",
        "big",
        &["sh", "-c", "yes 0123456789abcdef | head -c 10485760; echo done >&2"],
    )
    .unwrap();
    let out = pod.read_all("app", "big", false).unwrap();
    assert_eq!(out.len(), TEN_MIB);
    assert!(
        out.chunks(17).all(|c| c == &b"0123456789abcdef\n"[..c.len()]),
        "output corrupted"
    );
    assert_eq!(text(pod.read_all("app", "big", true).unwrap()), "done\n");
    assert_eq!(pod.wait("app", "big").unwrap(), 0);
}

#[test]
#[ignore = "needs root"]
fn signals_and_exit_codes() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sh", "-c", "exec sleep 300"]))
        .unwrap();
    pod.start_c("app").unwrap();
    pod.exec("app", "t", &["sleep", "300"]).unwrap();
    pod.exec("app", "x", &["sh", "-c", "exit 7"]).unwrap();
    assert_eq!(pod.wait("app", "x").unwrap(), 7);
    pod.signal("app", "t", 15).unwrap();
    assert_eq!(pod.wait("app", "t").unwrap(), 128 + 15);
    pod.exec("app", "k", &["sleep", "300"]).unwrap();
    pod.signal("app", "", 9).unwrap(); // every process of the container
    assert_eq!(pod.wait("app", "").unwrap(), 128 + 9);
    assert_eq!(pod.wait("app", "k").unwrap(), 128 + 9);
    pod.signal("app", "", 9).unwrap(); // already dead: still OK
    pod.remove("app").unwrap();
    pod.remove("app").unwrap(); // idempotent
    assert_eq!(pod.remove("never").unwrap_err().0, ttrpc::Code::NOT_FOUND);
}

#[test]
#[ignore = "needs root"]
fn bosunctl_drives_a_pod() {
    let (pod, rootfs) = pod(true);
    let addr = pod.agent.addr.to_string();
    let r = rootfs.to_str().unwrap();
    let (code, out, err) = common::bosunctl(&[
        "--addr",
        &addr,
        "run",
        "hi",
        "--rootfs",
        r,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!((code, out.as_str()), (3, "out\n"), "stderr: {err}");
    assert!(err.contains("err"), "{err}");
    let (code, _, err) = common::bosunctl(&["--addr", &addr, "create", "app", "--rootfs", r, "--", "sleep", "300"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(common::bosunctl(&["--addr", &addr, "start", "app"]).0, 0);
    let (code, out, _) = common::bosunctl(&["--addr", &addr, "exec", "app", "e", "--", "hostname"]);
    assert_eq!((code, out.as_str()), (0, "podhost\n"));
    // -i forwards stdin while the output streams; -t gives a terminal.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_bosunctl"))
        .args(["--addr", &addr, "exec", "app", "cat", "-i", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"through stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"through stdin\n"[..])
    );
    let (code, out, _) = common::bosunctl(&[
        "--addr",
        &addr,
        "exec",
        "app",
        "tty",
        "-t",
        "--",
        "sh",
        "-c",
        "[ -t 1 ] && stty size",
    ]);
    assert_eq!((code, out.trim()), (0, "24 80"), "{out:?}");
    let (code, _, err) = common::bosunctl(&["--addr", &addr, "start", "app"]);
    assert_eq!(code, 1);
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    let (code, out, _) = common::bosunctl(&["--addr", &addr, "ps"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().collect();
    assert!(
        rows.iter()
            .any(|l| l.starts_with("app ") && l.contains("running") && l.ends_with(" cat,e,tty")),
        "{out}"
    );
    assert!(
        rows.iter().any(|l| l.starts_with("pause ") && l.contains("true")),
        "{out}"
    );
    let (code, out, _) = common::bosunctl(&["--addr", &addr, "stats", "app"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        code == 0 && v["memory_usage"].as_u64().unwrap() > 0 && v["pids"].as_u64().unwrap() >= 1,
        "{out}"
    );
    // An OCI bundle, as runc would take it.
    let bundle = pod.dir().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::os::unix::fs::symlink(&rootfs, bundle.join("rootfs")).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.1.0","process":{"args":["sh","-c","echo from-bundle $(id -u)"],"env":["PATH=/bin"],"cwd":"/","user":{"uid":7,"gid":7}},"root":{"path":"rootfs"},"mounts":[{"destination":"/proc","type":"proc","source":"proc"}]}"#).unwrap();
    assert_eq!(
        common::bosunctl(&["--addr", &addr, "create", "b", "--bundle", bundle.to_str().unwrap()]).0,
        0
    );
    assert_eq!(common::bosunctl(&["--addr", &addr, "start", "b"]).0, 0);
    let (code, out, _) = common::bosunctl(&["--addr", &addr, "logs", "b"]);
    assert_eq!((code, out.as_str()), (0, "from-bundle 7\n"));
    assert_eq!(
        common::bosunctl(&["--addr", &addr, "kill", "app", "--signal", "9"]).0,
        0
    );
    let (code, out, _) = common::bosunctl(&["--addr", &addr, "wait", "app"]);
    assert_eq!((code, out.trim()), (137, "137"));
    assert_eq!(common::bosunctl(&["--addr", &addr, "rm", "app"]).0, 0);
    assert_eq!(common::bosunctl(&["--addr", &addr, "sandbox", "destroy"]).0, 0);
    assert_eq!(
        common::bosunctl(&["--addr", &addr, "create"]).0,
        2,
        "missing id is a usage error"
    );
    assert_eq!(mounts_under(pod.dir()), Vec::<std::path::PathBuf>::new());
}

#[test]
#[ignore = "needs root"]
fn cgroup_limits_stats_freeze_and_cleanup() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    assert!(!pod.cgroup_dirs().is_empty(), "no cgroup was made for the pod");
    // The container's process, and an exec'd one, joined the container's
    // cgroup in every hierarchy (on v1 each through its `tasks` file).
    pod.exec("app", "s", &["sleep", "300"]).unwrap();
    for d in pod.cgroup_dirs() {
        let procs = std::fs::read_to_string(d.join("app/cgroup.procs")).unwrap();
        assert_eq!(procs.lines().count(), 2, "{}: {procs:?}", d.display());
    }

    pod.update_memory("app", 64 << 20).unwrap();
    let st = pod.stats("app").unwrap();
    let cg = st.cgroup_stats.as_ref().unwrap();
    let mem = cg.memory_stats.usage.as_ref().unwrap();
    assert_eq!(mem.limit, 64 << 20);
    assert!(mem.usage > 0, "memory usage not reported");
    assert!(cg.pids_stats.current >= 1, "pids not reported");
    assert!(!st.network_stats.is_empty(), "no interface counters");
    assert_eq!(
        pod.update_memory("app", -5).unwrap_err().0,
        ttrpc::Code::INVALID_ARGUMENT
    );

    pod.pause("app", true).unwrap();
    assert_eq!(
        pod.exec("app", "e", &["true"]).unwrap_err().0,
        ttrpc::Code::FAILED_PRECONDITION
    );
    assert_eq!(pod.pause("app", true).unwrap_err().0, ttrpc::Code::FAILED_PRECONDITION);
    pod.pause("app", false).unwrap();
    pod.exec("app", "e", &["true"]).unwrap();
    assert_eq!(pod.wait("app", "e").unwrap(), 0);

    // A paused container is still removed: it is thawed before the kill.
    pod.pause("app", true).unwrap();
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
    assert_eq!(
        pod.cgroup_dirs(),
        Vec::<std::path::PathBuf>::new(),
        "cgroups left behind"
    );
}

#[test]
#[ignore = "needs root"]
fn tty_exec_with_resize() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    // The shell reports the size, waits for a line, reports it again.
    pod.exec_tty(
        "app",
        "t",
        &["sh", "-c", "stty size; read x; stty size; [ -t 0 ] && echo is-a-tty"],
        30,
        100,
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut r = bosun_protocols::agent::ReadStreamRequest::new();
    (r.container_id, r.exec_id, r.len) = ("app".into(), "t".into(), 4096);
    while !String::from_utf8_lossy(&seen).contains("30 100") {
        let chunk = pod
            .rt
            .block_on(pod.c.agent.read_stdout(pod.c.long_poll(), &r))
            .unwrap()
            .data;
        assert!(
            !chunk.is_empty(),
            "EOF before the first size: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend(chunk);
    }
    pod.resize("app", "t", 40, 120).unwrap();
    pod.write("app", "t", b"go\n").unwrap();
    let rest = String::from_utf8(pod.read_all("app", "t", false).unwrap()).unwrap();
    assert!(rest.contains("40 120"), "size after resize not seen: {rest:?}");
    assert!(rest.contains("is-a-tty"), "stdin is not a terminal: {rest:?}");
    assert_eq!(pod.wait("app", "t").unwrap(), 0);
    // stderr of a terminal process is empty; pipes cannot be resized.
    assert_eq!(pod.read_all("app", "t", true).unwrap(), b"");
    pod.exec("app", "p", &["sleep", "300"]).unwrap();
    assert_eq!(
        pod.resize("app", "p", 10, 10).unwrap_err().0,
        ttrpc::Code::FAILED_PRECONDITION
    );
}

#[test]
#[ignore = "needs root"]
fn process_identity_user_capabilities_rlimits() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    let mut p = common::pod::process(&[
        "sh",
        "-c",
        "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; ulimit -n",
    ]);
    let mut u = bosun_protocols::oci::User::new();
    (u.UID, u.GID, u.AdditionalGids) = (1000, 1001, vec![1002]);
    p.User = Some(u).into();
    let mut c = bosun_protocols::oci::LinuxCapabilities::new();
    let chown = vec!["CAP_CHOWN".to_string()];
    (c.Bounding, c.Effective, c.Permitted, c.Inheritable) =
        (chown.clone(), chown.clone(), chown.clone(), chown.clone());
    // A non-root process keeps effective capabilities across exec only
    // through the ambient set (the binary has no file capabilities).
    c.Ambient = chown;
    p.Capabilities = Some(c).into();
    let mut rl = bosun_protocols::oci::POSIXRlimit::new();
    (rl.Type, rl.Soft, rl.Hard) = ("RLIMIT_NOFILE".into(), 123, 456);
    p.Rlimits = vec![rl];
    p.NoNewPrivileges = true;
    pod.exec_with("app", "id", p).unwrap();
    let out = text(pod.read_all("app", "id", false).unwrap());
    assert_eq!(pod.wait("app", "id").unwrap(), 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], &["1000", "1001"], "{out}");
    // CAP_CHOWN is bit 0.
    assert!(out.contains("CapEff:\t0000000000000001"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000001"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert_eq!(lines.last(), Some(&"123"), "{out}");

    let mut bad = common::pod::process(&["true"]);
    let mut c = bosun_protocols::oci::LinuxCapabilities::new();
    c.Bounding = vec!["CAP_NOT_A_THING".into()];
    bad.Capabilities = Some(c).into();
    assert_eq!(
        pod.exec_with("app", "bad", bad).unwrap_err().0,
        ttrpc::Code::INVALID_ARGUMENT
    );
}

#[test]
#[ignore = "needs root"]
fn masked_and_readonly_paths() {
    let (pod, rootfs) = pod(false);
    // The default spec masks /proc/timer_list (non-empty on this kernel)
    // and makes /proc/sys read-only.
    pod.create(
        "app",
        spec(
            Some(&rootfs),
            &[
                "sh",
                "-c",
                "wc -c < /proc/timer_list; echo 1 > /proc/sys/kernel/ns_last_pid && echo writable || echo read-only",
            ],
        ),
    )
    .unwrap();
    pod.start_c("app").unwrap();
    let out = text(pod.read_all("app", "", false).unwrap());
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["0", "read-only"],
        "{out}"
    );
}

/// CreateContainer `shared_mounts`: a mount a sidecar made inside its own
/// container appears in the new container, as the Kata agent does it; a
/// source that does not exist is skipped.
#[test]
#[ignore = "needs root"]
fn shared_mounts_from_a_sidecar() {
    let (pod, rootfs) = pod(false);
    let mut sidecar = spec(
        Some(&rootfs),
        &[
            "sh",
            "-c",
            "mkdir -p /shared && mount -t tmpfs tmpfs /shared && echo from-sidecar > /shared/x && exec sleep 300",
        ],
    );
    sidecar
        .Annotations
        .insert("io.kubernetes.cri.container-name".into(), "sidecar".into());
    // Mounting needs CAP_SYS_ADMIN, which the default set lacks.
    let caps = sidecar.Process.as_mut().unwrap().Capabilities.as_mut().unwrap();
    caps.Bounding.push("CAP_SYS_ADMIN".into());
    caps.Effective.push("CAP_SYS_ADMIN".into());
    caps.Permitted.push("CAP_SYS_ADMIN".into());
    pod.create("sidecar", sidecar).unwrap();
    pod.start_c("sidecar").unwrap();

    let share = |src_ctr: &str| {
        let mut m = bosun_protocols::agent::SharedMount::new();
        (m.name, m.src_ctr, m.src_path, m.dst_ctr, m.dst_path) = (
            "m1".into(),
            src_ctr.into(),
            "/shared".into(),
            "app".into(),
            "/from-sidecar".into(),
        );
        m
    };
    let mut r = bosun_protocols::agent::CreateContainerRequest::new();
    (r.container_id, r.exec_id) = ("app".into(), "app".into());
    r.OCI = Some(spec(Some(&rootfs), &["cat", "/from-sidecar/x"])).into();
    r.shared_mounts = vec![share("sidecar")];
    pod.send_create_container(&r).unwrap();
    pod.start_c("app").unwrap();
    assert_eq!(text(pod.read_all("app", "app", false).unwrap()), "from-sidecar\n");
    assert_eq!(pod.wait("app", "app").unwrap(), 0);

    // No such source container: skipped, the container still runs.
    (r.container_id, r.exec_id) = ("app2".into(), "app2".into());
    r.OCI = Some(spec(
        Some(&rootfs),
        &["sh", "-c", "ls /from-sidecar 2>&1 | head -c 0; echo ran"],
    ))
    .into();
    r.shared_mounts = vec![share("nobody")];
    pod.send_create_container(&r).unwrap();
    pod.start_c("app2").unwrap();
    assert_eq!(text(pod.read_all("app2", "app2", false).unwrap()), "ran\n");
    pod.agent.log_with(&["no such source container"]);
    pod.destroy().unwrap();
    assert!(mounts_under(pod.dir()).is_empty(), "{:?}", mounts_under(pod.dir()));
}

/// The guest's cgroup v2 path, where the helper forks a container's
/// process straight into its cgroup (clone3 with CLONE_INTO_CGROUP), taken
/// on a host whose v1 hierarchies have a v2 one beside them: the agent's
/// mount namespace sees that one as /sys/fs/cgroup.
#[test]
#[ignore = "needs root"]
fn cgroup_v2_processes_are_born_in_their_cgroup() {
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    if !unified.join("cgroup.procs").exists() {
        eprintln!("SKIP: no v2 hierarchy beside v1 at {}", unified.display());
        return;
    }
    let pod = Pod::start_isolated_after("mount --bind /sys/fs/cgroup/unified /sys/fs/cgroup && ");
    let rootfs = common::busybox_rootfs(pod.dir());
    let never_mounted = pod.dir().join("pause-rootfs");
    std::fs::create_dir_all(&never_mounted).unwrap();
    pod.create_sandbox("v2host", false).unwrap();
    pod.create("pause", common::pod::pause_spec(Some(&never_mounted)))
        .unwrap();
    pod.start_c("pause").unwrap();
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    pod.exec("app", "s", &["sleep", "300"]).unwrap();
    // The agent is in this test's v2 cgroup ("0::PATH"); its containers
    // below it, in the parent it was given.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    let parent = unified.join(own.trim_start_matches('/')).join(&pod.cgroup_parent);
    let procs = std::fs::read_to_string(parent.join("app/cgroup.procs")).unwrap();
    assert_eq!(procs.lines().count(), 2, "init and the exec'd process: {procs:?}");
    let pause = std::fs::read_to_string(parent.join("pause/cgroup.procs")).unwrap();
    assert_eq!(pause.lines().count(), 1, "the pause: {pause:?}");
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
    assert!(!parent.exists(), "{} left behind", parent.display());
}

/// The cpu cgroup (path in the hierarchy) of `pid`: v2's line, else v1's
/// cpu line.
fn cpu_cgroup(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = |pred: &dyn Fn(&str) -> bool| {
        text.lines()
            .find(|l| pred(l.split(':').nth(1).unwrap_or("")))
            .and_then(|l| l.splitn(3, ':').nth(2))
            .map(str::to_string)
    };
    line(&|c| c.split(',').any(|x| x == "cpu"))
        .or_else(|| line(&|c| c.is_empty()))
        .unwrap()
}

/// `--agent-cgroup`: bosun runs in a cgroup of its own with ten times the
/// default CPU weight; its containers are not in it; a clean stop removes it.
#[test]
#[ignore = "needs root"]
fn the_agent_runs_in_a_cgroup_of_its_own_and_containers_do_not_inherit_it() {
    assert!(common::is_root(), "needs root");
    let name = format!("bosun-agent-test-{}", std::process::id());
    // Dropped after the pod (whose drop SIGKILLs bosun): a failed test
    // removes the cgroup bosun made and could not remove itself.
    struct RmCgroup(std::path::PathBuf);
    impl Drop for RmCgroup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // bosun starts in this test's cgroup and makes its own below it.
    let base = match v2 {
        true => std::path::PathBuf::from("/sys/fs/cgroup"),
        false => std::path::PathBuf::from("/sys/fs/cgroup/cpu"),
    };
    let _rm = RmCgroup(
        base.join(cpu_cgroup(std::process::id()).trim_start_matches('/'))
            .join(&name),
    );
    let mut pod = Pod::start_with(false, &["--agent-cgroup", &name]);
    let pid = pod.agent.child.id();
    let own = cpu_cgroup(pid);
    assert!(own.ends_with(&format!("/{name}")), "bosun's cpu cgroup: {own}");
    let dir = match v2 {
        true => std::path::Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/')),
        false => std::path::Path::new("/sys/fs/cgroup/cpu").join(own.trim_start_matches('/')),
    };
    let (file, want) = if v2 {
        ("cpu.weight", "1000")
    } else {
        ("cpu.shares", "10240")
    };
    assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap().trim(), want);
    // Every thread of bosun moved, not only the one that wrote.
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let tid: u32 = t.file_name().to_str().unwrap().parse().unwrap();
        let tc = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/cgroup")).unwrap();
        assert!(tc.contains(&name), "thread {tid}: {tc}");
    }
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.create_sandbox("agentcg", false).unwrap();
    pod.create("w", spec(Some(&rootfs), &["sh", "-c", "cat /proc/self/cgroup"]))
        .unwrap();
    pod.start_c("w").unwrap();
    let out = text(pod.read_all("w", "", false).unwrap());
    assert!(!out.contains(&name), "the container is in the agent's cgroup: {out}");
    let cpu = out
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.is_empty() || c.split(',').any(|x| x == "cpu"))
        })
        .unwrap_or_default()
        .to_string();
    assert!(
        cpu.contains(&format!("/{}/w", pod.cgroup_parent)),
        "the container's cpu cgroup is under the parent: {out}"
    );
    pod.remove("w").unwrap();
    pod.destroy().unwrap();
    assert!(pod.agent.terminate().success());
    assert!(!dir.exists(), "{} left after a clean stop", dir.display());
}

#[test]
#[ignore = "needs root"]
fn execs_delivered_in_full_are_forgotten_past_a_bound() {
    let (pod, rootfs) = pod(false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    let kept = bosun::sandbox::DELIVERED_EXECS_KEPT;
    let n = kept + 16;
    for i in 0..n {
        let e = format!("probe{i}");
        pod.exec("app", &e, &["echo", &e]).unwrap();
        assert_eq!(pod.read_all("app", &e, false).unwrap(), format!("{e}\n").as_bytes());
        assert_eq!(pod.read_all("app", &e, true).unwrap(), b"");
        assert_eq!(pod.wait("app", &e).unwrap(), 0);
    }
    // An exec not yet waited for is never forgotten.
    pod.exec("app", "unwaited", &["true"]).unwrap();
    let journal = std::fs::read_to_string(pod.run_dir().join("state.json")).unwrap();
    let recorded = (0..n).filter(|i| journal.contains(&format!("\"probe{i}\""))).count();
    assert_eq!(recorded, kept, "delivered execs in the journal");
    assert!(journal.contains("\"unwaited\""));
    // The oldest answer NOT_FOUND, as after the Kata agent's WaitProcess;
    // the most recent still answer.
    assert_eq!(pod.wait("app", "probe0").unwrap_err().0, ttrpc::Code::NOT_FOUND);
    assert_eq!(pod.wait("app", &format!("probe{}", n - 1)).unwrap(), 0);
    assert_eq!(pod.wait("app", "unwaited").unwrap(), 0);
    // Their exit files and configs went with them.
    let dir = pod.run_dir().join("containers/app");
    assert!(!dir.join("exit-probe0").exists() && !dir.join("exec-probe0.json").exists());
    assert!(dir.join(format!("exit-probe{}", n - 1)).exists());
}

/// The `se.slice` line of a /proc/.../sched file, in ns.
fn slice_in(sched: &str) -> Option<u64> {
    sched
        .lines()
        .find(|l| l.starts_with("se.slice"))
        .and_then(|l| l.split(':').nth(1)?.trim().parse().ok())
}

/// bosun's threads and each process's monitor take the shortest time slice
/// (so they preempt the pod's CPU hogs when they wake); the container's
/// processes, its first one and an exec'd one, run with the kernel's default.
#[test]
#[ignore = "needs root"]
fn the_agent_takes_a_short_time_slice_and_its_containers_the_default() {
    assert!(common::is_root(), "needs root");
    // Does this kernel take a custom slice (EEVDF, 6.12+)? Asked on a
    // scratch thread of the test.
    let taken = std::thread::spawn(|| {
        bosun::sys::sched::set_slice(bosun::sys::sched::AGENT_SLICE_NS).ok()?;
        slice_in(&std::fs::read_to_string("/proc/thread-self/sched").ok()?)
    })
    .join()
    .unwrap();
    if taken != Some(bosun::sys::sched::AGENT_SLICE_NS) {
        eprintln!("SKIP: this kernel does not take a custom time slice (EEVDF, Linux 6.12+): {taken:?}");
        return;
    }
    let default = slice_in(&std::fs::read_to_string("/proc/self/sched").unwrap()).unwrap();
    assert_ne!(default, bosun::sys::sched::AGENT_SLICE_NS);
    let pod = Pod::start_with(false, &[]);
    let pid = pod.agent.child.id();
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.create_sandbox("slices", false).unwrap();
    pod.create(
        "w",
        spec(Some(&rootfs), &["sh", "-c", "cat /proc/$$/sched; exec sleep 300"]),
    )
    .unwrap();
    pod.start_c("w").unwrap();
    let first = pod.read_until("w", "", "se.slice").unwrap();
    pod.exec("w", "e", &["sh", "-c", "cat /proc/$$/sched"]).unwrap();
    let exec = text(pod.read_all("w", "e", false).unwrap());
    assert_eq!(
        slice_in(&first),
        Some(default),
        "the container's first process: {first}"
    );
    assert_eq!(slice_in(&exec), Some(default), "an exec'd process: {exec}");
    let sched = |p: &str| std::fs::read_to_string(p).map(|s| slice_in(&s)).unwrap_or(None);
    // Every thread of bosun, and the monitors (bosun's children).
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let p = t.path().join("sched");
        assert_eq!(
            sched(p.to_str().unwrap()),
            Some(bosun::sys::sched::AGENT_SLICE_NS),
            "{}",
            p.display()
        );
    }
    // A child is listed under the thread that started it.
    let children: String = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    let monitors: Vec<&str> = children.split_whitespace().collect();
    assert!(!monitors.is_empty(), "bosun has its monitors as children");
    for m in monitors {
        assert_eq!(
            sched(&format!("/proc/{m}/sched")),
            Some(bosun::sys::sched::AGENT_SLICE_NS),
            "monitor {m}"
        );
    }
}

/// bosun's children (under any of its threads) with their command lines.
fn children_of(pid: u32) -> Vec<(u32, String)> {
    bosun::process::children(pid)
        .into_iter()
        .filter_map(|k| {
            let cmd = std::fs::read(format!("/proc/{k}/cmdline")).ok()?;
            Some((
                k,
                String::from_utf8_lossy(&cmd).replace('\0', " ").trim_end().to_string(),
            ))
        })
        .collect()
}

fn zygote_of(pid: u32) -> Option<u32> {
    children_of(pid)
        .into_iter()
        .find_map(|(k, cmd)| (cmd == "bosun-init zygote").then_some(k))
}

fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z "))
}

/// A zygote that stops answering (here: stopped) costs the call in flight
/// its 2 s bound, and nothing else: the creates queued behind it hold no
/// runtime thread (bosun has at most 4), so other calls go on meanwhile,
/// and the next create starts a new zygote.
#[test]
#[ignore = "needs root"]
fn a_zygote_that_stops_answering_holds_no_runtime_thread() {
    use std::time::{Duration, Instant};
    let (pod, rootfs) = pod(false);
    let zygote = zygote_of(pod.agent.child.id()).expect("bosun runs a zygote");
    let stop = |sig| nix::sys::signal::kill(nix::unistd::Pid::from_raw(zygote as i32), sig);
    stop(nix::sys::signal::Signal::SIGSTOP).unwrap();
    let other = pod
        .rt
        .block_on(bosun_client::Client::connect(&pod.agent.addr, Duration::from_secs(30)))
        .unwrap();
    let reqs: Vec<_> = (0..6)
        .map(|i| {
            let mut r = bosun_protocols::agent::CreateContainerRequest::new();
            (r.container_id, r.exec_id) = (format!("q{i}"), format!("q{i}"));
            r.OCI = Some(spec(Some(&rootfs), &["sleep", "300"])).into();
            r
        })
        .collect();
    let (creates, checks_done) = pod.rt.block_on(async {
        let creates = futures::future::join_all(reqs.iter().map(|r| async {
            let answer = pod.c.agent.create_container(pod.c.ctx(), r).await;
            (Instant::now(), answer)
        }));
        let checks = async {
            // Time for the creates to reach the zygote; if they have not,
            // the Checks pass anyway (this can miss the bug, not invent one).
            tokio::time::sleep(Duration::from_millis(300)).await;
            for _ in 0..5 {
                other.check().await.expect("Check while the zygote is stopped");
            }
            Instant::now()
        };
        tokio::join!(creates, checks)
    });
    let first_answer = creates.iter().map(|(t, _)| *t).min().unwrap();
    assert!(
        checks_done < first_answer,
        "the Checks were answered only after a create gave up on the zygote"
    );
    let failed: Vec<String> = creates
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(failed.len(), 1, "only the call in flight fails: {failed:?}");
    assert!(failed[0].contains("zygote"), "{}", failed[0]);
    common::eventually("the stopped zygote is ended", || gone(zygote));
    let new = zygote_of(pod.agent.child.id()).expect("a new zygote");
    assert_ne!(new, zygote);
    for (i, (_, r)) in creates.iter().enumerate() {
        if r.is_ok() {
            pod.start_c(&format!("q{i}")).unwrap();
        }
    }
}

#[test]
#[ignore = "needs root"]
fn helpers_are_forked_by_the_zygote_as_bosuns_children_and_a_lost_zygote_is_replaced() {
    let (mut pod, rootfs) = pod(false);
    let agent = pod.agent.child.id();
    let forked = |pod: &Pod| common::metric(&pod.agent, "bosun_helper_starts_total{how=\"zygote\"}");
    let execd = |pod: &Pod| common::metric(&pod.agent, "bosun_helper_starts_total{how=\"exec\"}");
    let zygote = zygote_of(agent).expect("bosun runs a zygote");
    assert_eq!(
        (forked(&pod), execd(&pod)),
        (1.0, 0.0),
        "the pause's helper came from the zygote"
    );

    pod.create(
        "a",
        spec(Some(&rootfs), &["sh", "-c", "ls /proc/self/fd; exec sleep 300"]),
    )
    .unwrap();
    pod.start_c("a").unwrap();
    // The helper is bosun's own child, named for its config (how bosun
    // finds its monitors after a restart), as an exec'd one would be.
    let config = pod.run_dir().join("containers/a/init.json");
    let want = format!("bosun-init init {}", config.display());
    let monitor = children_of(agent)
        .into_iter()
        .find_map(|(pid, cmd)| (cmd == want).then_some(pid))
        .unwrap_or_else(|| panic!("no child of bosun is {want:?}: {:?}", children_of(agent)));
    // It keeps its fixed fds and nothing else (none of the zygote's, the
    // agent's, the container's cgroup files or the pod's namespaces).
    // (Eventually: the helper closes the rest just after it reports.)
    let fds = || {
        let mut v: Vec<u32> = std::fs::read_dir(format!("/proc/{monitor}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        v.sort();
        v
    };
    common::eventually("the monitor keeps fds 0-2 and 5-9 only", || {
        fds() == [0, 1, 2, 5, 6, 7, 8, 9]
    });
    // The process has its stdio and nothing else of the zygote's or the
    // agent's (3 is ls's own directory).
    let fds = pod.read_until("a", "", "3\n").unwrap();
    assert_eq!(fds, "0\n1\n2\n3\n");
    assert_eq!((forked(&pod), execd(&pod)), (2.0, 0.0));

    // A zygote that is gone: the next helper is exec'd, the one after
    // comes from a new zygote.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::eventually("the killed zygote is gone", || gone(zygote));
    for (i, want) in [(1, (2.0, 1.0)), (2, (3.0, 1.0))] {
        let id = format!("e{i}");
        pod.exec("a", &id, &["echo", "hi"]).unwrap();
        assert_eq!(text(pod.read_all("a", &id, false).unwrap()), "hi\n");
        assert_eq!(pod.wait("a", &id).unwrap(), 0);
        assert_eq!((forked(&pod), execd(&pod)), want, "after exec {id}");
    }
    let second = zygote_of(agent).expect("a new zygote");
    assert_ne!(second, zygote);

    // A restart: the old zygote ends with the agent's end of its socket;
    // the new agent has its own and re-adopts the container.
    pod.restart(&[], true);
    common::eventually("the old agent's zygote is gone", || gone(second));
    let agent = pod.agent.child.id();
    assert!(zygote_of(agent).is_some(), "the restarted bosun runs a zygote");
    pod.exec("a", "after", &["echo", "back"]).unwrap();
    assert_eq!(text(pod.read_all("a", "after", false).unwrap()), "back\n");
    assert_eq!((forked(&pod), execd(&pod)), (1.0, 0.0));
    pod.remove("a").unwrap();
    pod.destroy().unwrap();
}

/// The descriptors `ls /proc/self/fd` lists in container `id` (3 is ls's
/// own directory).
fn container_fds(pod: &Pod, id: &str) -> String {
    pod.read_until(id, "", "3\n").unwrap()
}

#[test]
#[ignore = "needs root"]
fn without_a_zygote_helpers_are_execd_and_no_stray_fd_reaches_a_container() {
    // bosun inherits fd 42 without close-on-exec from whoever started it
    // (bash: dash opens one-digit fds only).
    let mut pod = Pod::start_isolated_after(r#"exec bash -c 'exec 42</dev/null; exec "$0" "$@"' "$0" "$@" && "#);
    assert!(std::path::Path::new(&format!("/proc/{}/fd/42", pod.agent.child.id())).exists());
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.create_sandbox("strays", false).unwrap();
    let ls = ["sh", "-c", "ls /proc/self/fd; exec sleep 300"];
    pod.create("a", spec(Some(&rootfs), &ls)).unwrap();
    pod.start_c("a").unwrap();
    assert_eq!(container_fds(&pod, "a"), "0\n1\n2\n3\n", "forked by the zygote");

    // A zygote that cannot start (fault point: this kernel never refuses
    // PR_SET_MM_MAP): every helper is exec'd, with the same result.
    pod.restart(&[("BOSUN_FAIL_AT", "zygote-start")], true);
    let agent = pod.agent.child.id();
    assert_eq!(zygote_of(agent), None);
    pod.create("b", spec(Some(&rootfs), &ls)).unwrap();
    pod.start_c("b").unwrap();
    assert_eq!(container_fds(&pod, "b"), "0\n1\n2\n3\n", "exec'd");
    pod.exec("b", "e", &["ls", "/proc/self/fd"]).unwrap();
    assert_eq!(text(pod.read_all("b", "e", false).unwrap()), "0\n1\n2\n3\n");
    let count = |how: &str| common::metric(&pod.agent, &format!("bosun_helper_starts_total{{how=\"{how}\"}}"));
    assert_eq!((count("zygote"), count("exec")), (0.0, 2.0));
    pod.destroy().unwrap();
}

#[test]
#[ignore = "needs root"]
fn a_zygote_that_dies_after_forking_fails_the_call_and_its_helper_is_ended() {
    let (mut pod, rootfs) = pod(false);
    pod.create("w", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("w").unwrap();
    // Test-only crash point: the zygote dies after its fork, before its
    // answer (its death cannot be timed from outside between the two).
    pod.restart(&[("BOSUN_CRASH_AT", "zygote-after-fork")], true);
    let agent = pod.agent.child.id();
    let err = pod.exec("w", "e", &["sleep", "300"]).unwrap_err();
    assert!(err.1.contains("zygote did not answer"), "{err:?}");
    // The helper it forked for the call is ended, not left running
    // beside a call that failed.
    let config = pod.run_dir().join("containers/w/exec-e.json");
    let named = format!("bosun-init init {}", config.display());
    common::eventually("the failed exec's helper is gone", || {
        !children_of(agent).iter().any(|(_, cmd)| *cmd == named)
    });
    assert_eq!(pod.wait("w", "e").unwrap_err().0, ttrpc::Code::NOT_FOUND);
    // The pod serves on; its remove and destroy leave no process of bosun's.
    pod.restart(&[], true);
    pod.exec("w", "ok", &["echo", "fine"]).unwrap();
    assert_eq!(text(pod.read_all("w", "ok", false).unwrap()), "fine\n");
    pod.remove("w").unwrap();
    pod.destroy().unwrap();
    let agent = pod.agent.child.id();
    common::eventually("only the zygote is left among bosun's children", || {
        children_of(agent).iter().all(|(_, cmd)| cmd == "bosun-init zygote")
    });
}
