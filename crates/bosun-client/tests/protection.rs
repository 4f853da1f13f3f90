//! Self-protection and protected containers (root): each refusal is
//! PERMISSION_DENIED, bosun keeps serving, nothing changes.

mod common;

use std::path::{Path, PathBuf};

use bosun::transport::Address;
use bosun_protocols::agent::*;
use common::pod::{spec, Pod};
use common::{bosunctl, mounts_under, Agent};

fn code(e: (ttrpc::Code, String)) -> ttrpc::Code {
    e.0
}

/// The agent's cgroup directories, per hierarchy, from /proc/PID/cgroup.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let c = ctrls.split(',').next()?;
            if c.is_empty() || c.starts_with("name=") {
                return None;
            }
            Some(Path::new("/sys/fs/cgroup").join(c).join(path.trim_start_matches('/')))
        })
        .filter(|d| d.join("cgroup.procs").exists())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn bosun_never_signals_itself_even_from_a_container_cgroup() {
    let (pod, rootfs) = common::pod::started("prot", false);
    pod.create("w", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("w").unwrap();
    let me = pod.agent.child.id();
    let home = cgroups_of(me);
    // Put the agent itself into the container's cgroups, as a confused
    // operator or a hostile workload with cgroup access could.
    for d in pod.cgroup_dirs() {
        std::fs::write(d.join("w/cgroup.procs"), me.to_string()).unwrap();
    }
    let (c, msg) = pod.signal("w", "", 9).unwrap_err();
    assert_eq!(c, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(
        msg.contains("signal the agent itself") && msg.contains(&me.to_string()),
        "{msg}"
    );
    let (c, msg) = pod.remove("w").unwrap_err();
    assert_eq!(c, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    assert!(msg.contains("signal the agent itself"), "{msg}");
    // Still serving, and still alive.
    assert!(pod.rt.block_on(pod.c.check()).is_ok());
    // Back home; the second remove finishes.
    for d in home {
        std::fs::write(d.join("cgroup.procs"), me.to_string()).unwrap();
    }
    pod.remove("w").unwrap();
    pod.destroy().unwrap();
    assert_eq!(pod.cgroup_dirs(), Vec::<PathBuf>::new());
}

fn storage(driver: &str, source: &str, mp: &Path) -> Storage {
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) =
        (driver.into(), source.into(), "tmpfs".into(), mp.display().to_string());
    s
}

#[test]
#[ignore = "needs root"]
fn no_mount_over_or_from_the_agents_own_files() {
    let (pod, rootfs) = common::pod::started("prot", false);
    let sock_dir = pod.dir().to_path_buf(); // holds the socket
    let run = pod.run_dir();
    let cases = vec![
        ("over the run dir", storage("ephemeral", "tmpfs", &run)),
        (
            "inside the run dir",
            storage("ephemeral", "tmpfs", &run.join("containers/x")),
        ),
        ("over the socket's directory", storage("ephemeral", "tmpfs", &sock_dir)),
        (
            "over the socket",
            storage("ephemeral", "tmpfs", &sock_dir.join("bosun.sock")),
        ),
        (
            "binding the run dir out",
            storage("bind", run.to_str().unwrap(), &pod.mnt("leak")),
        ),
    ];
    for (i, (what, s)) in cases.into_iter().enumerate() {
        let e = pod
            .create_with("c", spec(Some(&rootfs), &["true"]), vec![s])
            .unwrap_err();
        assert_eq!(e.0, ttrpc::Code::PERMISSION_DENIED, "test[{i}] {what}: {e:?}");
        assert_eq!(
            mounts_under(pod.dir()),
            Vec::<PathBuf>::new(),
            "test[{i}] {what}: something was mounted"
        );
    }
    let mut r = UpdateEphemeralMountsRequest::new();
    r.storages = vec![storage("ephemeral", "tmpfs", &run)];
    let e = pod
        .rt
        .block_on(pod.c.agent.update_ephemeral_mounts(pod.c.ctx(), &r))
        .unwrap_err();
    assert!(
        matches!(e, ttrpc::Error::RpcStatus(ref s) if s.code() == ttrpc::Code::PERMISSION_DENIED),
        "{e:?}"
    );
    assert!(pod.rt.block_on(pod.c.check()).is_ok());
}

#[test]
#[ignore = "needs root"]
fn copy_file_never_overwrites_the_agents_socket() {
    assert!(common::is_root());
    // An agent whose socket sits where CopyFile may write.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(run.join("shared")).unwrap();
    let sock = run.join("shared/bosun.sock");
    let agent = common::Agent::start_at(
        bosun::transport::Address::Unix(sock.clone()),
        dir,
        &[
            "--run-dir",
            run.to_str().unwrap(),
            "--cgroup-parent",
            &format!("bosun-prot-{}", std::process::id()),
        ],
    );
    let rt = common::rt();
    let c = rt
        .block_on(bosun_client::Client::connect(
            &agent.addr,
            std::time::Duration::from_secs(5),
        ))
        .unwrap();
    let mut r = CopyFileRequest::new();
    (r.path, r.file_size, r.file_mode, r.data) = (sock.display().to_string(), 1, 0o100644, b"x".to_vec());
    let e = rt.block_on(c.agent.copy_file(c.ctx(), &r)).unwrap_err();
    assert!(
        matches!(e, ttrpc::Error::RpcStatus(ref s) if s.code() == ttrpc::Code::PERMISSION_DENIED && s.message().contains("socket")),
        "{e:?}"
    );
    assert!(rt.block_on(c.check()).is_ok(), "the socket was replaced");
}

#[test]
#[ignore = "needs root"]
fn a_second_agent_on_the_same_run_dir_refuses_to_start() {
    let pod = Pod::start();
    let other = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::agent_bin())
        .args([
            "--server-addr",
            &format!("unix://{}/b.sock", other.path().display()),
            "--run-dir",
            pod.run_dir().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("in use by another bosun (pid {})", pod.agent.child.id())),
        "{text}"
    );
    assert!(pod.rt.block_on(pod.c.check()).is_ok());
}

#[test]
#[ignore = "needs root"]
fn bulk_operations_skip_protected_containers() {
    let (pod, rootfs) = common::pod::started("bulk", true);
    let addr = pod.agent.addr.to_string();
    let mut guarded = spec(Some(&rootfs), &["sleep", "300"]);
    guarded.Annotations.insert("io.bosun.protected".into(), "true".into());
    pod.create("mgmt", guarded).unwrap();
    pod.start_c("mgmt").unwrap();
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    let (c, _, err) = bosunctl(&["--addr", &addr, "kill", "--all", "--signal", "9"]);
    assert_eq!(c, 0, "{err}");
    assert!(
        err.contains("skipping protected container \"mgmt\"") && err.contains("\"pause\""),
        "{err}"
    );
    assert_eq!(pod.wait("app", "").unwrap(), 137);
    let (c, _, err) = bosunctl(&["--addr", &addr, "rm", "--all"]);
    assert_eq!(c, 0, "{err}");
    let (_, out, _) = bosunctl(&["--addr", &addr, "ps"]);
    assert!(
        out.contains("mgmt") && out.contains("running") && !out.contains("app "),
        "{out}"
    );
    // Named explicitly, a protected container is acted on.
    assert_eq!(bosunctl(&["--addr", &addr, "kill", "mgmt", "--signal", "9"]).0, 0);
    assert_eq!(pod.wait("mgmt", "").unwrap(), 137);
    assert_eq!(bosunctl(&["--addr", &addr, "rm", "mgmt"]).0, 0);
    assert_eq!(
        code(pod.exec("mgmt", "x", &["true"]).unwrap_err()),
        ttrpc::Code::NOT_FOUND
    );
}

/// A copy of bosunctl in a directory every user may enter (the build tree
/// may be private to root), removed with the returned directory.
fn bosunctl_copy() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = d.path().join("bosunctl");
    std::fs::copy(env!("CARGO_BIN_EXE_bosunctl"), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    (d, exe)
}

/// bosunctl (the copy `exe`) run as `uid`: a child process with that real
/// and effective uid.
fn bosunctl_as(exe: &Path, uid: u32, args: &[&str]) -> (i32, String) {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(exe)
        .args(args)
        .env_remove("BOSUNCTL_ADDR")
        .uid(uid)
        .gid(uid)
        .output()
        .expect("run bosunctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
#[ignore = "needs root"]
fn only_root_may_connect_over_a_unix_socket_unless_allowed() {
    assert!(common::is_root(), "needs root");
    let (_copy, exe) = bosunctl_copy();
    // An abstract socket has no file permissions: SO_PEERCRED is the guard.
    let name = common::abstract_name("peers");
    let addr = format!("unix://@{name}");
    let agent = Agent::start_at(Address::UnixAbstract(name.clone()), tempfile::tempdir().unwrap(), &[]);
    let (code, out) = bosunctl_as(&exe, 65534, &["--addr", &addr, "check"]);
    assert_ne!(code, 0, "uid 65534 is refused: {out}");
    let (code, out) = bosunctl_as(&exe, 0, &["--addr", &addr, "check"]);
    assert_eq!((code, out.trim()), (0, "SERVING"));
    // The refusal is logged with the peer's uid.
    agent.log_with(&["connection refused", "65534"]);
    drop(agent);

    let name = common::abstract_name("peers2");
    let addr = format!("unix://@{name}");
    let _agent = Agent::start_at(
        Address::UnixAbstract(name),
        tempfile::tempdir().unwrap(),
        &["--allow-uids", "0,65534"],
    );
    let (code, out) = bosunctl_as(&exe, 65534, &["--addr", &addr, "check"]);
    assert_eq!((code, out.trim()), (0, "SERVING"), "allowed by --allow-uids");

    // A path socket is 0600 by default, 0666 when others may connect.
    use std::os::unix::fs::PermissionsExt;
    for (allow, mode) in [("0", 0o600), ("any", 0o666)] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("bosun.sock");
        let agent = Agent::start_at(Address::Unix(sock.clone()), dir, &["--allow-uids", allow]);
        let got = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "--allow-uids {allow}");
        let (code, out) = bosunctl_as(&exe, 65534, &["--addr", &agent.addr.to_string(), "check"]);
        assert_eq!(code == 0, allow == "any", "--allow-uids {allow}: {out}");
    }
}
