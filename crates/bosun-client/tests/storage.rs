//! Storages for real (root only): a rootfs on an ext4 loop device (blk) and
//! one built from overlayfs layers; after remove, no mount is left.

mod common;

use std::path::{Path, PathBuf};

use bosun_protocols::agent::Storage;
use common::pod::{pause_spec, spec, Pod};
use common::{busybox_rootfs, is_root, mounts_under, Loop};

fn storage(driver: &str, source: &str, fstype: &str, options: &[&str], mount_point: &Path) -> Storage {
    let mut s = Storage::new();
    s.driver = driver.into();
    s.source = source.into();
    s.fstype = fstype.into();
    s.options = options.iter().map(|o| o.to_string()).collect();
    s.mount_point = mount_point.display().to_string();
    s
}

fn started_pod() -> Pod {
    assert!(is_root(), "this test needs root: run it with `make test` as root");
    let pod = Pod::start();
    pod.create_sandbox("storage", false).unwrap();
    pod.create("pause", pause_spec(None)).unwrap();
    pod.start_c("pause").unwrap();
    pod
}

fn run_in(pod: &Pod, id: &str, rootfs: &Path, storages: Vec<Storage>) -> String {
    pod.create_with(
        id,
        spec(Some(rootfs), &["sh", "-c", "cat /etc/hostname; ls /bin/busybox"]),
        storages,
    )
    .unwrap();
    pod.start_c(id).unwrap();
    let out = String::from_utf8(pod.read_all(id, "", false).unwrap()).unwrap();
    assert_eq!(pod.wait(id, "").unwrap(), 0, "{out}");
    out
}

#[test]
#[ignore = "needs root"]
fn rootfs_from_an_ext4_loop_device() {
    let pod = started_pod();
    let lo = Loop::ext4_with_busybox(pod.dir());
    let mp: PathBuf = pod.mnt("storage/blk-rootfs");
    let out = run_in(&pod, "blk", &mp, vec![storage("blk", &lo.0, "ext4", &["rw"], &mp)]);
    assert_eq!(out, "image\n/bin/busybox\n");
    assert!(
        mounts_under(pod.dir()).contains(&mp),
        "blk storage not mounted in the agent's namespace"
    );
    pod.remove("blk").unwrap();
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new());
    pod.destroy().unwrap();
}

#[test]
#[ignore = "needs root"]
fn rootfs_from_overlay_layers() {
    let pod = started_pod();
    let lower = busybox_rootfs(&pod.dir().join("layer0"));
    let upper = pod.dir().join("upper");
    let work = pod.dir().join("work");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(upper.join("etc/hostname"), "from-upper\n").unwrap();
    let mp = pod.mnt("storage/overlay-rootfs");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let out = run_in(
        &pod,
        "ovl",
        &mp,
        vec![storage("overlayfs", "overlay", "overlay", &[&opts], &mp)],
    );
    assert_eq!(out, "from-upper\n/bin/busybox\n");
    pod.remove("ovl").unwrap();
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new());
    pod.destroy().unwrap();
}

#[test]
#[ignore = "needs root"]
fn ephemeral_and_local_storages_are_cleaned_up() {
    let pod = started_pod();
    let rootfs = busybox_rootfs(pod.dir());
    let eph = pod.mnt("storage/eph");
    let local = pod.mnt("storage/local");
    let storages = vec![
        storage("ephemeral", "tmpfs", "tmpfs", &[], &eph),
        storage("local", "", "", &["mode=0750"], &local),
    ];
    run_in(&pod, "c", &rootfs, storages);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&local).unwrap().permissions().mode() & 0o777, 0o750);
    assert!(mounts_under(pod.dir()).contains(&eph));
    pod.remove("c").unwrap();
    assert!(!local.exists(), "local storage dir left behind");
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new());
}

#[test]
#[ignore = "needs root"]
fn a_bad_storage_fails_the_create_and_leaks_nothing() {
    let pod = started_pod();
    let rootfs = busybox_rootfs(pod.dir());
    let ok = pod.mnt("storage/ok");
    let bad = pod.mnt("storage/bad");
    let storages = vec![
        storage("ephemeral", "tmpfs", "tmpfs", &[], &ok),
        storage("blk", "/dev/does-not-exist", "ext4", &[], &bad),
    ];
    let err = pod
        .create_with("c", spec(Some(&rootfs), &["true"]), storages)
        .unwrap_err();
    assert_eq!(err.0, ttrpc::Code::INVALID_ARGUMENT, "{err:?}");
    assert_eq!(
        mounts_under(pod.dir()),
        Vec::<PathBuf>::new(),
        "the first storage was not rolled back"
    );
    assert!(!pod.run_dir().join("containers/c").exists());
    // The same id works once the request is right.
    pod.create_with(
        "c",
        spec(Some(&rootfs), &["true"]),
        vec![storage("ephemeral", "tmpfs", "tmpfs", &[], &ok)],
    )
    .unwrap();
    pod.destroy().unwrap();
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new());
}

/// CreateContainer `devices`: a guest block device (here a loop device,
/// named by its node as for mmioblk) appears in the container at its
/// container path with the guest's major/minor, replacing the host's
/// numbers a runtime put in Linux.Devices; it can be read. An unknown
/// device type is refused.
#[test]
#[ignore = "needs root"]
fn a_guest_block_device_in_the_container() {
    use std::os::unix::fs::MetadataExt;
    let pod = started_pod();
    let lo = Loop::ext4_with_busybox(pod.dir());
    let rdev = std::fs::metadata(&lo.0).unwrap().rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let rootfs = busybox_rootfs(pod.dir());
    let mut s = spec(
        Some(&rootfs),
        &["sh", "-c", "ls -l /dev/xda; head -c 4096 /dev/xda | wc -c"],
    );
    // The host's numbers, as a runtime copies them from the host's node.
    let mut host = bosun_protocols::oci::LinuxDevice::new();
    (host.Path, host.Type, host.Major, host.Minor, host.FileMode) = ("/dev/xda".into(), "b".into(), 253, 7, 0o660);
    s.Linux.as_mut().unwrap().Devices = vec![host];
    let device = |kind: &str| {
        let mut d = bosun_protocols::agent::Device::new();
        (d.type_, d.vm_path, d.container_path) = (kind.into(), lo.0.clone(), "/dev/xda".into());
        d
    };
    let mut r = bosun_protocols::agent::CreateContainerRequest::new();
    (r.container_id, r.exec_id, r.OCI) = ("dev".into(), "dev".into(), Some(s.clone()).into());
    r.devices = vec![device("vfio-ap")];
    let (code, msg) = pod.send_create_container(&r).unwrap_err();
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    r.devices = vec![device("mmioblk")];
    pod.send_create_container(&r).unwrap();
    pod.start_c("dev").unwrap();
    let out = String::from_utf8(pod.read_all("dev", "", false).unwrap()).unwrap();
    assert_eq!(pod.wait("dev", "").unwrap(), 0, "{out}");
    let tokens: Vec<&str> = out.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| *t == format!("{major},"))
        .unwrap_or(usize::MAX);
    assert!(
        out.starts_with("brw-rw----") && tokens.get(at + 1) == Some(&minor.to_string().as_str()),
        "guest numbers {major}:{minor}: {out}"
    );
    assert!(out.ends_with("4096\n"), "readable: {out}");
    pod.remove("dev").unwrap();
}

/// watchable-bind, as the Kata agent serves it: the source (a configmap on
/// a share without inotify) is copied below the watchable tmpfs and kept in
/// step by polling; a source past the caps (16 entries, 1 MiB) is bound
/// instead.
#[test]
#[ignore = "needs root"]
fn watchable_bind_copies_and_follows_the_source() {
    assert!(is_root(), "needs root");
    let pod = Pod::start_isolated();
    pod.create_sandbox("watch", false).unwrap();
    let rootfs = busybox_rootfs(pod.dir());
    let small = pod.dir().join("configmap");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("key"), "v1\n").unwrap();
    let big = pod.dir().join("big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..20 {
        std::fs::write(big.join(format!("f{i}")), "x").unwrap();
    }
    let root = "/run/kata-containers/shared/containers/watchable";
    let copy_at = |name: &str| format!("{root}/app-{name}");
    let mut s = spec(Some(&rootfs), &["sleep", "300"]);
    for (name, dst) in [("configmap", "/etc/cm"), ("big", "/etc/big")] {
        let mut m = bosun_protocols::oci::Mount::new();
        (m.destination, m.type_, m.source, m.options) =
            (dst.into(), "bind".into(), copy_at(name), vec!["rbind".into()]);
        s.Mounts.push(m);
    }
    let storages = vec![
        storage(
            "watchable-bind",
            small.to_str().unwrap(),
            "bind",
            &[],
            Path::new(&copy_at("configmap")),
        ),
        storage(
            "watchable-bind",
            big.to_str().unwrap(),
            "bind",
            &[],
            Path::new(&copy_at("big")),
        ),
    ];
    pod.create_with("app", s, storages).unwrap();
    pod.start_c("app").unwrap();
    let cat = |n: u32, path: &str| {
        let id = format!("cat{n}");
        pod.exec("app", &id, &["cat", path]).unwrap();
        String::from_utf8(pod.read_all("app", &id, false).unwrap()).unwrap()
    };
    assert_eq!(cat(0, "/etc/cm/key"), "v1\n");
    let mounts = pod.agent.mounts_under(root);
    assert!(mounts.contains(&root.to_string()), "the watchable tmpfs: {mounts:?}");
    assert!(mounts.contains(&copy_at("big")), "too large: bound: {mounts:?}");
    assert!(
        !mounts.contains(&copy_at("configmap")),
        "small: copied, not bound: {mounts:?}"
    );
    // The configmap changes: the copy follows within a few intervals.
    std::fs::write(small.join("key"), "v2\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut n = 1;
    while cat(n, "/etc/cm/key") != "v2\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy did not follow the source"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        n += 1;
    }
    // The bound one is the source itself.
    std::fs::write(big.join("f0"), "live").unwrap();
    assert_eq!(cat(999, "/etc/big/f0"), "live");
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
    assert!(
        pod.agent.mounts_under("/run/kata-containers").is_empty(),
        "{:?}",
        pod.agent.mounts_under("/run/kata-containers")
    );
    assert_eq!(
        std::fs::read_to_string(small.join("key")).unwrap(),
        "v2\n",
        "the source is never touched"
    );
}
