//! The teardown fault matrix (root only): each row causes a fault for real,
//! then checks that teardown finished and left nothing: no mount under the
//! pod's directory, no process of the pod, no cgroup, no container
//! directory, and a final DestroySandbox that succeeds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bosun_protocols::agent::Storage;
use common::mounts_under;
use common::pod::{spec, Pod};

/// Processes that belong to the pod: in one of its cgroups, or with the
/// pod's directory on their command line (helpers, the built-in pause).
fn pod_processes(pod: &Pod) -> Vec<i32> {
    let d = pod.dir().to_str().unwrap();
    let cg = format!("/{}/", pod.cgroup_parent);
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
        let cgroups = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        let is_agent = cmd.contains("--server-addr");
        if !is_agent && (cgroups.contains(&cg) || cmd.contains(d)) {
            v.push(pid);
        }
    }
    v
}

fn assert_clean(pod: &Pod) {
    pod.destroy().expect("final DestroySandbox");
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new(), "mounts left");
    assert_eq!(pod_processes(pod), Vec::<i32>::new(), "processes left");
    assert_eq!(pod.cgroup_dirs(), Vec::<PathBuf>::new(), "cgroups left");
    assert!(!pod.run_dir().join("containers").exists(), "container directories left");
    assert!(!pod.mnt("sandbox").exists(), "sandbox directory left");
    let left: Vec<_> = std::fs::read_dir(pod.run_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "directories left in the run dir: {left:?}");
    assert!(!pod.dir().join("mnt").exists(), "storage mount points left");
    pod.destroy().expect("a second DestroySandbox");
}

fn storage(driver: &str, fstype: &str, options: &[&str], mp: &Path) -> Storage {
    let mut s = Storage::new();
    s.driver = driver.into();
    s.source = driver.into();
    s.fstype = fstype.into();
    s.options = options.iter().map(|o| o.to_string()).collect();
    s.mount_point = mp.display().to_string();
    s
}

fn umount(p: &Path) {
    assert!(
        Command::new("umount").arg(p).status().unwrap().success(),
        "umount {}",
        p.display()
    );
}

/// A pod whose pause rootfs is an empty directory (never mounted).
fn pod() -> (Pod, PathBuf) {
    common::pod::started("faults", true)
}

fn run(pod: &Pod, id: &str, rootfs: &Path, storages: Vec<Storage>) {
    pod.create_with(id, spec(Some(rootfs), &["sleep", "300"]), storages)
        .unwrap();
    pod.start_c(id).unwrap();
}

#[test]
#[ignore = "needs root"]
fn row01_pause_rootfs_never_mounted() {
    let (pod, rootfs) = pod();
    run(&pod, "w", &rootfs, vec![]);
    assert_eq!(
        pod_processes(&pod).len(),
        4,
        "pause and workload, and their monitors, should be found by the leak check"
    );
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row02_rootfs_unmounted_behind_our_back() {
    let (pod, rootfs) = pod();
    let (upper, work) = (pod.dir().join("u"), pod.dir().join("w"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mp = pod.mnt("ovl");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        rootfs.display(),
        upper.display(),
        work.display()
    );
    let mut s = storage("overlayfs", "overlay", &[&opts], &mp);
    s.source = "overlay".into();
    run(&pod, "w", &mp, vec![s]);
    umount(&mp);
    pod.remove("w").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row03_mount_point_deleted() {
    let (pod, rootfs) = pod();
    let mp = pod.mnt("eph");
    run(&pod, "w", &rootfs, vec![storage("ephemeral", "tmpfs", &[], &mp)]);
    umount(&mp);
    std::fs::remove_dir(&mp).unwrap();
    pod.remove("w").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row04_mount_busy_is_detached() {
    let (pod, rootfs) = pod();
    let mp = pod.mnt("eph");
    run(&pod, "w", &rootfs, vec![storage("ephemeral", "tmpfs", &[], &mp)]);
    // A process outside the container holds a file open in the mount.
    let held = std::fs::File::create(mp.join("held")).unwrap();
    pod.remove("w").unwrap();
    pod.agent.log_with(&["umount busy, detached"]);
    drop(held);
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row05_init_killed_externally_exec_still_running() {
    let (pod, rootfs) = pod();
    pod.create("w", spec(Some(&rootfs), &["sleep", "301"])).unwrap();
    pod.start_c("w").unwrap();
    pod.exec("w", "e", &["sleep", "302"]).unwrap();
    let init = pod_processes(&pod)
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .starts_with(b"sleep\x00301")
        })
        .expect("init pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(pod.wait("w", "").unwrap(), 137);
    pod.remove("w").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row06_cgroup_removed_externally() {
    let (pod, rootfs) = pod();
    pod.create("w", spec(Some(&rootfs), &["true"])).unwrap();
    pod.start_c("w").unwrap();
    assert_eq!(pod.wait("w", "").unwrap(), 0);
    for d in pod.cgroup_dirs() {
        std::fs::remove_dir(d.join("w")).unwrap();
    }
    pod.remove("w").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row06b_cgroup_still_has_a_process_bosun_did_not_start() {
    let (pod, rootfs) = pod();
    // The init leaves a background child, then is killed from outside:
    // the child, reparented to the pod's PID 1, is only known by cgroup.
    pod.create("w", spec(Some(&rootfs), &["sh", "-c", "sleep 303 & exec sleep 304"]))
        .unwrap();
    pod.start_c("w").unwrap();
    let find = |arg: &[u8]| {
        pod_processes(&pod)
            .into_iter()
            .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == arg)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while find(b"sleep\x00303\x00").is_none() || find(b"sleep\x00304\x00").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "workload processes did not appear"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let init = find(b"sleep\x00304\x00").unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(pod.wait("w", "").unwrap(), 137);
    assert!(
        find(b"sleep\x00303\x00").is_some(),
        "the orphan should still run before the remove"
    );
    pod.remove("w").unwrap();
    assert!(find(b"sleep\x00303\x00").is_none(), "the orphan survived the remove");
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row07_loop_device_detached_before_teardown() {
    let (pod, _) = pod();
    let lo = common::Loop::ext4_with_busybox(pod.dir());
    let mp = pod.mnt("blk");
    let mut s = storage("blk", "ext4", &[], &mp);
    s.source = lo.0.clone();
    run(&pod, "w", &mp, vec![s]);
    // Detach the device while it is mounted (the kernel defers it).
    assert!(Command::new("losetup").arg("-d").arg(&lo.0).status().unwrap().success());
    pod.remove("w").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row08_twice_and_with_workloads_running() {
    let (pod, rootfs) = pod();
    run(&pod, "a", &rootfs, vec![]);
    run(&pod, "b", &rootfs, vec![]);
    assert_eq!(
        pod.remove("pause").unwrap_err().0,
        ttrpc::Code::FAILED_PRECONDITION,
        "pause removed under running workloads"
    );
    pod.remove("a").unwrap();
    pod.remove("a").unwrap();
    assert_eq!(pod.remove("zzz").unwrap_err().0, ttrpc::Code::NOT_FOUND);
    // DestroySandbox with "b" still running, then again.
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row09_create_fails_at_each_step_and_leaks_nothing() {
    let (pod, rootfs) = pod();
    let mp = pod.mnt("eph");
    // A bad fstype for the second storage: the first is rolled back.
    let bad_fs = vec![
        storage("ephemeral", "tmpfs", &[], &mp),
        storage("blk", "nosuchfs", &[], &pod.mnt("blk")),
    ];
    assert_eq!(
        pod.create_with("c", spec(Some(&rootfs), &["true"]), bad_fs)
            .unwrap_err()
            .0,
        ttrpc::Code::INVALID_ARGUMENT
    );
    // A bind mount whose source does not exist: fails inside the helper.
    let mut s = spec(Some(&rootfs), &["true"]);
    let mut m = bosun_protocols::oci::Mount::new();
    (m.destination, m.source, m.type_, m.options) = (
        "/data".into(),
        "/nonexistent/source".into(),
        "bind".into(),
        vec!["rbind".into()],
    );
    s.Mounts.push(m);
    assert_eq!(
        pod.create_with("c", s, vec![storage("ephemeral", "tmpfs", &[], &mp)])
            .unwrap_err()
            .0,
        ttrpc::Code::INVALID_ARGUMENT
    );
    // A missing binary: fails at start; the container is then removed.
    pod.create("c", spec(Some(&rootfs), &["/no/such/binary"])).unwrap();
    let (code, msg) = pod.start_c("c").unwrap_err();
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(msg.contains("/no/such/binary"), "{msg}");
    pod.remove("c").unwrap();
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new());
    // The same id, right this time.
    run(&pod, "c", &rootfs, vec![storage("ephemeral", "tmpfs", &[], &mp)]);
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row10_foreign_mount_inside_the_container_dir_is_left_alone() {
    let (pod, rootfs) = pod();
    run(&pod, "w", &rootfs, vec![]);
    let foreign = pod.run_dir().join("containers/w/foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&foreign)
        .status()
        .unwrap()
        .success());
    std::fs::write(foreign.join("precious"), b"keep").unwrap();
    let (code, msg) = pod.remove("w").unwrap_err();
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    assert!(
        msg.contains("foreign"),
        "the report does not name the foreign mount: {msg}"
    );
    assert_eq!(
        std::fs::read(foreign.join("precious")).unwrap(),
        b"keep",
        "deleted under a foreign mount"
    );
    umount(&foreign);
    pod.remove("w").unwrap(); // the second call finishes the job
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row10b_someone_elses_mount_at_bosuns_target_is_not_unmounted() {
    let (pod, rootfs) = pod();
    let mp = pod.mnt("eph");
    run(&pod, "w", &rootfs, vec![storage("ephemeral", "tmpfs", &[], &mp)]);
    // bosun's tmpfs goes away behind its back; someone binds a directory
    // (another filesystem type) at the very same path.
    umount(&mp);
    let theirs = pod.dir().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("data"), b"theirs").unwrap();
    assert!(Command::new("mount")
        .arg("--bind")
        .arg(&theirs)
        .arg(&mp)
        .status()
        .unwrap()
        .success());
    // bosun's own mount is gone (by identity); theirs is not bosun's to
    // unmount, so the remove finishes and leaves it.
    pod.remove("w").unwrap();
    assert!(
        mounts_under(pod.dir()).contains(&mp),
        "someone else's mount was unmounted"
    );
    umount(&mp);
    // The mount point bosun created held their mount at teardown, so it
    // stayed (bosun never removes a directory with a mount on it).
    std::fs::remove_dir(&mp).unwrap();
    std::fs::remove_dir(pod.dir().join("mnt")).unwrap();
    assert_eq!(std::fs::read(theirs.join("data")).unwrap(), b"theirs");
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn a_bind_mount_in_a_containers_run_directory_is_never_entered_and_the_destroy_still_ends_the_pod() {
    let (pod, rootfs) = pod();
    run(&pod, "w", &rootfs, vec![]);
    let cdir = pod.run_dir().join("containers").join("w");
    // Someone's data on the same filesystem as bosun's run directory, bound
    // into the container's directory: the same device, so only the mount
    // table tells it apart (a directory, and a file).
    let theirs = pod.run_dir().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("data"), b"theirs").unwrap();
    std::fs::write(pod.run_dir().join("their-file"), b"theirs too").unwrap();
    let (bound_dir, bound_file) = (cdir.join("bound"), cdir.join("bound-file"));
    std::fs::create_dir(&bound_dir).unwrap();
    std::fs::write(&bound_file, b"").unwrap();
    for (src, dst) in [
        (theirs.clone(), &bound_dir),
        (pod.run_dir().join("their-file"), &bound_file),
    ] {
        let ok = Command::new("mount")
            .arg("--bind")
            .arg(&src)
            .arg(dst)
            .status()
            .unwrap()
            .success();
        assert!(ok, "bind {} on {}", src.display(), dst.display());
    }
    let (code, msg) = pod.remove("w").expect_err("a remove with mounts in the run directory");
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    for p in [&bound_dir, &bound_file] {
        assert!(
            msg.contains(&p.display().to_string()),
            "{msg} does not name {}",
            p.display()
        );
    }
    assert_eq!(std::fs::read(theirs.join("data")).unwrap(), b"theirs");
    assert_eq!(std::fs::read(&bound_file).unwrap(), b"theirs too");
    // DestroySandbox does every step although w's cannot finish: the pause
    // goes down too (it was refused as "the pause of a pod with workloads").
    let (code, msg) = pod.destroy().expect_err("a destroy with mounts in a run directory");
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    assert_eq!(
        pod_processes(&pod),
        Vec::<i32>::new(),
        "processes left by the destroy: {msg}"
    );
    assert_eq!(
        pod.cgroup_dirs(),
        Vec::<PathBuf>::new(),
        "cgroups left by the destroy: {msg}"
    );
    assert_eq!(std::fs::read(theirs.join("data")).unwrap(), b"theirs");
    umount(&bound_dir);
    umount(&bound_file);
    // The next call finishes the job (assert_clean destroys again).
    std::fs::remove_dir_all(&theirs).unwrap();
    std::fs::remove_file(pod.run_dir().join("their-file")).unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn row11_concurrent_removes_both_succeed() {
    let (pod, rootfs) = pod();
    run(&pod, "w", &rootfs, vec![]);
    let other = pod
        .rt
        .block_on(bosun_client::Client::connect(
            &pod.agent.addr,
            std::time::Duration::from_secs(30),
        ))
        .unwrap();
    let mut r = bosun_protocols::agent::RemoveContainerRequest::new();
    r.container_id = "w".into();
    r.timeout = 10;
    let (a, b) = pod.rt.block_on(async {
        tokio::join!(
            pod.c.agent.remove_container(pod.c.ctx(), &r),
            other.agent.remove_container(other.ctx(), &r)
        )
    });
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn bosunctl_shows_the_teardown_report() {
    let (pod, rootfs) = pod();
    let mp = pod.mnt("eph");
    run(&pod, "w", &rootfs, vec![storage("ephemeral", "tmpfs", &[], &mp)]);
    let addr = pod.agent.addr.to_string();
    let (code, out, err) = common::bosunctl(&["--addr", &addr, "rm", "--verbose", "w"]);
    assert_eq!(code, 0, "{err}");
    for step in [
        "kill: ok",
        "umount: ok (1 unmounted, 0 already gone)",
        "cgroup: ok",
        "rmdir: ok",
    ] {
        assert!(out.contains(step), "report lacks {step:?}:\n{out}");
    }
    let (code, out, err) = common::bosunctl(&["--addr", &addr, "sandbox", "destroy", "--verbose"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 container(s) removed"), "{out}");
    assert_clean(&pod);
}
