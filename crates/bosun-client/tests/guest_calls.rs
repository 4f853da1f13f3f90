//! Guest-wide calls (root only): CopyFile, UpdateEphemeralMounts,
//! GetOOMEvent, SetGuestDateTime's refusal outside a guest.

mod common;

use std::time::Duration;

use bosun_protocols::agent::*;
use common::pod::{spec, Pod};

#[test]
#[ignore = "needs root"]
fn copy_file_in_chunks_and_refusals() {
    let (pod, _) = common::pod::started("copy", false);
    let shared = pod.run_dir().join("shared");
    let dest = shared.join("cm/config.yaml");
    let d = dest.to_str().unwrap();
    pod.copy_chunk(d, 11, 0o100640, 0, b"hello ").unwrap();
    assert!(!dest.exists(), "a half-written file is visible");
    pod.copy_chunk(d, 11, 0o100640, 6, b"world").unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::metadata(dest.parent().unwrap()).unwrap().permissions().mode() & 0o7777,
        0o750
    );
    pod.copy_chunk(
        shared.join("link").to_str().unwrap(),
        14,
        0o120777,
        0,
        b"cm/config.yaml",
    )
    .unwrap();
    assert_eq!(
        std::fs::read_link(shared.join("link")).unwrap(),
        std::path::Path::new("cm/config.yaml")
    );

    // A symlink planted in the shared dir cannot lead the copy outside.
    let outside = pod.dir().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, shared.join("escape")).unwrap();
    pod.copy_chunk(shared.join("escape/x").to_str().unwrap(), 1, 0o100644, 0, b"x")
        .unwrap();
    assert!(
        !outside.join("x").exists(),
        "CopyFile followed a symlink out of the shared dir"
    );
    assert!(
        shared.join("outside/x").exists() || shared.join(outside.strip_prefix("/").unwrap()).join("x").exists(),
        "the copy should land inside the shared dir"
    );

    let other = pod.dir().join("elsewhere/file");
    let cases: Vec<(String, i64, u32, i64, Vec<u8>)> = vec![
        (other.to_str().unwrap().into(), 1, 0o100644, 0, b"x".to_vec()),
        (
            format!("{}/../../etc/x", shared.display()),
            1,
            0o100644,
            0,
            b"x".to_vec(),
        ),
        ("relative/path".into(), 1, 0o100644, 0, b"x".to_vec()),
        (d.into(), (256 << 20) + 1, 0o100644, 0, vec![]),
        (d.into(), 4, 0o100644, 2, b"xyz".to_vec()),
        (d.into(), 1, 0o060644, 0, b"x".to_vec()),
    ];
    for (i, (p, size, mode, off, data)) in cases.into_iter().enumerate() {
        let err = pod.copy_chunk(&p, size, mode, off, &data).unwrap_err();
        assert_eq!(err.0, ttrpc::Code::INVALID_ARGUMENT, "test[{i}]: {p}: {err:?}");
    }
    assert!(!other.exists());
}

#[test]
#[ignore = "needs root"]
fn update_ephemeral_mounts_resizes_a_tmpfs() {
    let (pod, rootfs) = common::pod::started("eph", false);
    let mp = pod.mnt("eph");
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.options, s.mount_point) = (
        "ephemeral".into(),
        "tmpfs".into(),
        "tmpfs".into(),
        vec!["size=1m".into()],
        mp.display().to_string(),
    );
    pod.create_with("w", spec(Some(&rootfs), &["sleep", "300"]), vec![s.clone()])
        .unwrap();
    let size = || {
        nix::sys::statvfs::statvfs(&mp)
            .map(|v| v.blocks() * v.fragment_size())
            .unwrap()
    };
    assert_eq!(size(), 1 << 20);
    s.options = vec!["size=4m".into()];
    let mut r = UpdateEphemeralMountsRequest::new();
    r.storages = vec![s.clone()];
    pod.rt
        .block_on(pod.c.agent.update_ephemeral_mounts(pod.c.ctx(), &r))
        .unwrap();
    assert_eq!(size(), 4 << 20);
    s.mount_point = pod.mnt("not-ours").display().to_string();
    r.storages = vec![s];
    let err = pod
        .rt
        .block_on(pod.c.agent.update_ephemeral_mounts(pod.c.ctx(), &r))
        .unwrap_err();
    assert!(
        matches!(err, ttrpc::Error::RpcStatus(ref st) if st.code() == ttrpc::Code::INVALID_ARGUMENT),
        "{err:?}"
    );
}

#[test]
#[ignore = "needs root"]
fn oom_kill_is_reported_by_get_oom_event() {
    let (pod, rootfs) = common::pod::started("oom", false);
    let mut s = spec(Some(&rootfs), &["sh", "-c", "tail /dev/zero"]);
    let mut res = bosun_protocols::oci::LinuxResources::new();
    let mut m = bosun_protocols::oci::LinuxMemory::new();
    m.Limit = 16 << 20;
    res.Memory = Some(m).into();
    let mut l = bosun_protocols::oci::Linux::new();
    l.Resources = Some(res).into();
    s.Linux = Some(l).into();
    pod.create("hog", s).unwrap();
    pod.start_c("hog").unwrap();
    let ev = pod.rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            pod.c.agent.get_oom_event(pod.c.long_poll(), &GetOOMEventRequest::new()),
        )
        .await
    });
    let ev = ev.expect("no OOM event within 20 s").unwrap();
    assert_eq!(ev.container_id, "hog");
    assert_eq!(pod.wait("hog", "").unwrap(), 128 + 9, "the OOM killer sends SIGKILL");
}

#[test]
#[ignore = "needs root"]
fn set_guest_date_time_is_refused_outside_a_guest() {
    let (pod, _) = common::pod::started("clock", false);
    let mut r = SetGuestDateTimeRequest::new();
    (r.Sec, r.Usec) = (1_000_000_000, 0);
    let before = std::time::SystemTime::now();
    let err = pod
        .rt
        .block_on(pod.c.agent.set_guest_date_time(pod.c.ctx(), &r))
        .unwrap_err();
    assert!(
        matches!(err, ttrpc::Error::RpcStatus(ref st) if st.code() == ttrpc::Code::FAILED_PRECONDITION && st.message().contains("PID 1")),
        "{err:?}"
    );
    assert!(std::time::SystemTime::now() >= before, "the clock moved");
    (r.Sec, r.Usec) = (1, 2_000_000);
    let err = pod
        .rt
        .block_on(pod.c.agent.set_guest_date_time(pod.c.ctx(), &r))
        .unwrap_err();
    assert!(
        matches!(err, ttrpc::Error::RpcStatus(ref st) if st.code() == ttrpc::Code::INVALID_ARGUMENT),
        "{err:?}"
    );
}

/// CreateSandbox `guest_hook_path`: the guest's OCI hooks run with argv
/// [name, kind] and the container state on stdin; a failing prestart stops
/// the start and says why.
#[test]
#[ignore = "needs root"]
fn guest_hooks_run_at_start_and_stop() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start();
    let hooks = pod.dir().join("hooks");
    let log = pod.dir().join("hooks.log");
    for kind in ["prestart", "poststart", "poststop"] {
        std::fs::create_dir_all(hooks.join(kind)).unwrap();
        let script = format!(
            "#!/bin/sh\nstate=$(cat)\ncase \"$state\" in *'\"id\":\"bad\"'*) echo 'no such device' >&2; exit 3;; esac\n\
             echo \"${{0##*/}} $1 $(echo \"$state\" | grep -o '\"status\":\"[a-z]*\"')\" >> {}\n",
            log.display()
        );
        let f = hooks.join(kind).join("10-record");
        std::fs::write(&f, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Not executable: not a hook.
        std::fs::write(hooks.join(kind).join("20-skipped"), "#!/bin/sh\nexit 1\n").unwrap();
    }
    let mut r = CreateSandboxRequest::new();
    r.hostname = "hooks".into();
    r.guest_hook_path = hooks.to_str().unwrap().into();
    pod.send_create_sandbox(&r).unwrap();
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.create("app", spec(Some(&rootfs), &["true"])).unwrap();
    pod.start_c("app").unwrap();
    assert_eq!(pod.wait("app", "app").unwrap(), 0);
    pod.remove("app").unwrap();
    let got = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        got,
        "10-record prestart \"status\":\"created\"\n10-record poststart \"status\":\"running\"\n10-record poststop \"status\":\"stopped\"\n"
    );

    pod.create("bad", spec(Some(&rootfs), &["true"])).unwrap();
    let (code, msg) = pod.start_c("bad").unwrap_err();
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(
        msg.contains("prestart hook") && msg.contains("exit status 3") && msg.contains("no such device"),
        "{msg}"
    );
    pod.remove("bad").unwrap();
    pod.destroy().unwrap();
}

/// CreateSandbox `kernel_modules`: one the kernel has already is left as
/// it is; one it does not have is a clear error and no sandbox. (No module
/// is loaded on this machine: `make vm-test` loads one in the guest.)
#[test]
#[ignore = "needs root"]
fn kernel_modules_present_and_missing() {
    assert!(common::is_root(), "needs root");
    let present = std::fs::read_dir("/sys/module")
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .expect("some module in /sys/module");
    let pod = Pod::start();
    let module = |name: &str, params: &[&str]| {
        let mut m = KernelModule::new();
        m.name = name.into();
        m.parameters = params.iter().map(|p| p.to_string()).collect();
        m
    };
    let mut r = CreateSandboxRequest::new();
    r.kernel_modules = vec![module("bosun_no_such_module", &[])];
    let (code, msg) = pod.send_create_sandbox(&r).unwrap_err();
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(
        msg.contains("bosun_no_such_module") && msg.contains("does not have it"),
        "{msg}"
    );
    r.kernel_modules = vec![module("bad name", &[])];
    assert_eq!(
        pod.send_create_sandbox(&r).unwrap_err().0,
        ttrpc::Code::INVALID_ARGUMENT
    );
    r.kernel_modules = vec![module(&present, &["x=1"])];
    pod.send_create_sandbox(&r).unwrap();
    pod.destroy().unwrap();
}

/// A hook that leaves a daemon holding its stdout open does not hang
/// StartContainer: bosun waits for the hook, not for its pipes.
#[test]
#[ignore = "needs root"]
fn a_hook_that_leaves_a_daemon_does_not_hang_the_start() {
    assert!(common::is_root(), "needs root");
    let pod = Pod::start();
    let hooks = pod.dir().join("hooks");
    std::fs::create_dir_all(hooks.join("poststart")).unwrap();
    let pidfile = pod.dir().join("daemon.pid");
    let f = hooks.join("poststart/10-daemon");
    std::fs::write(
        &f,
        format!("#!/bin/sh\nsleep 30 &\necho $! > {}\nexit 0\n", pidfile.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut r = CreateSandboxRequest::new();
    r.guest_hook_path = hooks.to_str().unwrap().into();
    pod.send_create_sandbox(&r).unwrap();
    let rootfs = common::busybox_rootfs(pod.dir());
    pod.create("app", spec(Some(&rootfs), &["true"])).unwrap();
    let t = std::time::Instant::now();
    pod.start_c("app").unwrap();
    // 30 s is the daemon's life; bosun answered long before it.
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "StartContainer took {:?}",
        t.elapsed()
    );
    if let Ok(pid) = std::fs::read_to_string(&pidfile) {
        // Our own test's daemon: end it by pid.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid.trim().parse().unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pod.destroy().unwrap();
}
