//! `image_guest_pull` (remote-hypervisor mode): workload images pulled by
//! bosun from a real registry (docker-registry in a network namespace of
//! the test's, images built here as OCI layouts and pushed with skopeo),
//! with the requests runtime-rs sends (tests/fixtures), then torn down to
//! nothing; and the hostile cases, each ending with no mounts, no partial
//! layers and the store back to what it was.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bosun_client::oci_layout::{Comp, Entry};
use bosun_protocols::agent::{CopyFileRequest, CreateContainerRequest, CreateSandboxRequest};
use common::fixtures::{fixture, fixture_list_with};
use common::pod::Pod;
use common::registry::{busybox_layer, TestRegistry};

const WORKLOAD: &str = "runtime-rs-remote-CreateContainer-workload.json";
const FIXTURE_IMAGE: &str = "docker.io/library/busybox:1.36";
const FIXTURE_CID: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// A pod as runtime-rs starts one in remote-hypervisor mode: sandbox, the
/// pod's files by CopyFile, the pause pulled as "pause".
fn remote_pod(reg: &TestRegistry, extra: &[&str]) -> Pod {
    remote_pod_after(reg, extra, "")
}

/// As `remote_pod`, the agent started after the shell steps `setup` in its
/// own namespaces (see `Agent::start_after`).
fn remote_pod_after(reg: &TestRegistry, extra: &[&str], setup: &str) -> Pod {
    let mut flags = vec![
        "--insecure-registries",
        "127.0.0.1:5000,127.0.0.1:5001",
        "--registry-timeout",
        "3",
    ];
    flags.extend_from_slice(extra);
    let pod = Pod::start_after(true, Some(reg.ns.path()), &flags, setup);
    let sb: CreateSandboxRequest = fixture("runtime-rs-remote-CreateSandbox.json", &[]);
    pod.send_create_sandbox(&sb).unwrap();
    let pause: CreateContainerRequest = fixture("runtime-rs-remote-CreateContainer-pause.json", &[]);
    pod.send_create_container(&pause).unwrap();
    pod.start_c(&pause.container_id).unwrap();
    pod
}

/// runtime-rs's workload request for `image`, with container id `cid`,
/// after the CopyFile requests of the pod's files (the pause's resolv.conf,
/// the workload's hosts, hostname, resolv.conf and projected volume) for it.
fn workload(pod: &Pod, image: &str, cid: &str) -> CreateContainerRequest {
    for c in fixture_list_with::<CopyFileRequest>("runtime-rs-remote-CopyFile.json", &[(FIXTURE_CID, cid)]) {
        pod.copy_file(&c).unwrap();
    }
    fixture(WORKLOAD, &[(FIXTURE_IMAGE, image), (FIXTURE_CID, cid)])
}

fn store(pod: &Pod) -> PathBuf {
    pod.run_dir().join("images")
}

/// Layer directories in the store.
fn layers(pod: &Pod) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store(pod).join("layers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp_entries(pod: &Pod) -> usize {
    std::fs::read_dir(store(pod).join("tmp"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// The three-layer image: busybox (gzip); files, a setuid binary, an
/// xattr, a device node and an owned file (zstd); whiteouts and an opaque
/// directory over them (plain tar).
fn layered_image() -> Vec<(Vec<Entry>, Comp)> {
    let l2 = vec![
        Entry::Dir("etc".into(), 0o755),
        Entry::File("etc/gone".into(), b"lower\n".to_vec(), 0o644),
        Entry::File("etc/kept".into(), b"kept\n".to_vec(), 0o644),
        Entry::Dir("opq".into(), 0o755),
        Entry::File("opq/old".into(), b"old\n".to_vec(), 0o644),
        Entry::File("bin/suid".into(), b"#!/bin/sh\n".to_vec(), 0o4755),
        Entry::FileXattr(
            "etc/tagged".into(),
            b"x".to_vec(),
            0o644,
            vec![("user.bosun".into(), b"yes".to_vec())],
        ),
        Entry::CharDev("opt/zero2".into(), 1, 5),
        Entry::FileOwned("etc/owned".into(), b"o".to_vec(), 0o600, 1000, 1001),
    ];
    let l3 = vec![
        Entry::Whiteout("etc/gone".into()),
        Entry::Opaque("opq".into()),
        Entry::File("opq/new".into(), b"new\n".to_vec(), 0o644),
    ];
    vec![(busybox_layer(), Comp::Gzip), (l2, Comp::Zstd), (l3, Comp::None)]
}

fn run_in(pod: &Pod, cid: &str, exec_id: &str, cmd: &str) -> (i32, String) {
    pod.exec(cid, exec_id, &["sh", "-c", cmd]).unwrap();
    let out = pod.read_all(cid, exec_id, false).unwrap();
    let code = pod.wait(cid, exec_id).unwrap();
    (code, String::from_utf8_lossy(&out).into_owned())
}

/// The whole life of a pulled workload, with runtime-rs's own requests.
#[test]
#[ignore = "needs root"]
fn pulled_workload_runs_execs_and_leaves_nothing() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::anonymous();
    let built = reg.push("app", "v1", &layered_image(), None);
    let pod = remote_pod(&reg, &[]);
    let cid = "c0ffee01";
    let wl = workload(&pod, &reg.image("app", "v1"), cid);
    let rootfs = wl.storages[0].mount_point.clone();
    pod.send_create_container(&wl).unwrap();
    assert_eq!(
        pod.agent.mounts_under(&rootfs),
        vec![rootfs.clone()],
        "the overlay at the storage's mount_point"
    );
    let want: Vec<String> = {
        let mut v: Vec<String> = built.diff_ids.iter().map(|d| d[7..].to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(layers(&pod), want, "one directory per layer, named by its diff_id");
    pod.start_c(cid).unwrap();
    let out = pod.read_until(cid, cid, "hello from").unwrap();
    assert!(out.contains("hello from"), "{out}");

    let (code, out) = run_in(&pod, cid, "e1", "cat /etc/gone; echo rc=$?; cat /etc/kept; ls /opq");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rc=1"), "the whiteout hides etc/gone: {out}");
    assert!(
        out.contains("kept") && out.contains("new") && !out.contains("old"),
        "opaque opq: {out}"
    );
    let (_, out) = run_in(
        &pod,
        cid,
        "e2",
        "stat -c '%a %u:%g' /bin/suid /etc/owned; stat -c '%t:%T %F' /opt/zero2",
    );
    assert!(out.contains("4755 0:0"), "setuid kept: {out}");
    assert!(out.contains("600 1000:1001"), "owner kept: {out}");
    assert!(out.contains("1:5 character special file"), "device node kept: {out}");
    let (_, out) = run_in(
        &pod,
        cid,
        "e3",
        "echo written > /etc/new-file && cat /etc/new-file && ls -l /bin/sh",
    );
    assert!(
        out.contains("written"),
        "the rootfs is writable (OCI root not read-only): {out}"
    );

    // Layers as overlayfs reads them, in the store.
    let l2 = store(&pod).join("layers").join(&built.diff_ids[1][7..]);
    let l3 = store(&pod).join("layers").join(&built.diff_ids[2][7..]);
    let wh = std::fs::symlink_metadata(l3.join("etc/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout = 0:0 char device"
    );
    assert!(bosun::image::unpack::is_opaque(&l3.join("opq")));
    assert_eq!(
        bosun::sys::fsnode::lgetxattr(&l2.join("etc/tagged"), "user.bosun").unwrap(),
        Some(b"yes".to_vec())
    );
    let l1 = store(&pod).join("layers").join(&built.diff_ids[0][7..]);
    assert_eq!(
        std::fs::metadata(l1.join("bin/sh")).unwrap().ino(),
        std::fs::metadata(l1.join("bin/busybox")).unwrap().ino(),
        "hard link kept"
    );
    assert_eq!(std::fs::read_link(l1.join("bin/echo")).unwrap(), Path::new("busybox"));
    assert_eq!(
        std::fs::metadata(l1.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );

    // GetDiagnosticData "images": what the store holds.
    let inv = pod.diagnostic("images").unwrap();
    assert!(inv.contains(&built.manifest_digest), "{inv}");

    pod.remove(cid).unwrap();
    assert!(pod.agent.mounts_under(&rootfs).is_empty());
    assert!(layers(&pod).is_empty(), "no container uses the layers: deleted");
    assert!(
        !store(&pod).join("containers").join(cid).exists(),
        "the writable part goes with the container"
    );
    pod.destroy().unwrap();
    assert!(pod.agent.mounts_under("/run/kata-containers").is_empty());
    assert!(
        !store(&pod).exists(),
        "the store (bosun's, under the run dir) goes with the pod"
    );
}

/// What a failed pull must leave: no mount, no layer (none existed
/// before), nothing half-unpacked, no writable part, no container.
fn assert_nothing_left(pod: &Pod, cid: &str, what: &str) {
    let rootfs = format!("/run/kata-containers/{cid}/rootfs");
    assert!(pod.agent.mounts_under(&rootfs).is_empty(), "{what}: mounts left");
    assert_eq!(layers(pod), Vec::<String>::new(), "{what}: layers left");
    assert_eq!(tmp_entries(pod), 0, "{what}: half-unpacked layers left");
    assert!(
        !store(pod).join("containers").join(cid).exists(),
        "{what}: writable part left"
    );
    let listing = pod.diagnostic("containers").unwrap();
    assert!(!listing.contains(cid), "{what}: a container was kept: {listing}");
}

/// busybox, and a layer with one file `/r` of `mib` MiB that does not compress.
fn busybox_and_big(mib: usize, seed: u64, comp: Comp) -> Vec<(Vec<Entry>, Comp)> {
    vec![
        (busybox_layer(), Comp::Gzip),
        (
            vec![Entry::File(
                "r".into(),
                bosun_client::oci_layout::noise(mib << 20, seed),
                0o644,
            )],
            comp,
        ),
    ]
}

/// A tmpfs of `mib` MiB at a new temp dir, unmounted when dropped (the
/// test's own mount, in its own mount namespace under `make test`).
struct SmallFs(tempfile::TempDir);

impl SmallFs {
    fn new(mib: u32) -> Self {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "bosun-test-images",
            ])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self(d)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Each hostile image, pulled by runtime-rs's request: a clear error with
/// the right code, and nothing left behind.
#[test]
#[ignore = "needs root"]
fn hostile_content_is_refused_and_leaves_nothing() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::anonymous();
    let small = SmallFs::new(8);
    let image_dir = small.0.path().to_str().unwrap().to_string();
    let pod = remote_pod(&reg, &["--image-dir", &image_dir]);
    let store_dir = PathBuf::from(&image_dir);
    let bb = || (busybox_layer(), Comp::Gzip);
    let one = |entries: Vec<Entry>| vec![bb(), (entries, Comp::Gzip)];

    // Digest mismatch: a blob damaged in the registry's own storage.
    let built = reg.push(
        "damaged",
        "v1",
        &one(vec![Entry::File("f".into(), vec![7u8; 4096], 0o644)]),
        None,
    );
    let blob = reg.reg.blob_file(&built.layers[1]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    type Row = (&'static str, Vec<(Vec<Entry>, Comp)>, usize, ttrpc::Code, &'static str);
    let rows: Vec<Row> = vec![
        (
            "dotdot",
            one(vec![Entry::RawFile("../../escaped".into(), b"x".to_vec())]),
            0,
            ttrpc::Code::FAILED_PRECONDITION,
            "'..'",
        ),
        (
            "absolute",
            one(vec![Entry::RawFile("/abs-escaped".into(), b"x".to_vec())]),
            0,
            ttrpc::Code::FAILED_PRECONDITION,
            "absolute",
        ),
        (
            "symlink-out",
            one(vec![
                Entry::Dir("a".into(), 0o755),
                Entry::RawLink("a/l".into(), "../../../etc".into(), false),
            ]),
            0,
            ttrpc::Code::FAILED_PRECONDITION,
            "climbs out",
        ),
        (
            "hardlink-out",
            one(vec![Entry::RawLink("h".into(), "../../../../etc/passwd".into(), true)]),
            0,
            ttrpc::Code::FAILED_PRECONDITION,
            "hard link target",
        ),
        (
            "through-symlink",
            one(vec![
                Entry::Symlink("d".into(), "/etc".into()),
                Entry::File("d/written-through".into(), b"x".to_vec(), 0o644),
            ]),
            0,
            ttrpc::Code::FAILED_PRECONDITION,
            "is a symlink",
        ),
        (
            "over-space-compressed",
            one(vec![Entry::File(
                "big".into(),
                bosun_client::oci_layout::noise(20 << 20, 42),
                0o644,
            )]),
            0,
            ttrpc::Code::RESOURCE_EXHAUSTED,
            "left",
        ),
        (
            "over-space-unpacked",
            one(vec![Entry::File("zeros".into(), vec![0u8; 20 << 20], 0o644)]),
            0,
            ttrpc::Code::RESOURCE_EXHAUSTED,
            "left for it",
        ),
    ];
    let mut cases: Vec<(String, ttrpc::Code, &str)> =
        vec![(reg.image("damaged", "v1"), ttrpc::Code::DATA_LOSS, "hashes to")];
    for (name, layers, pad, code, needle) in &rows {
        reg.push_padded(name, "v1", layers, *pad, None);
        cases.push((reg.image(name, "v1"), *code, needle));
    }
    // A config over bosun's 8 MiB cap: skopeo itself refuses to push one
    // (its cap is 4 MiB), so it goes up by the registry API directly.
    common::registry::raw_push(&reg, "config-cap", "v1", &vec![b' '; 9 << 20]);
    cases.push((reg.image("config-cap", "v1"), ttrpc::Code::RESOURCE_EXHAUSTED, "cap"));
    cases.push((reg.image("no-such-image", "v1"), ttrpc::Code::NOT_FOUND, "not found"));
    cases.push((
        "127.0.0.1:5009/nobody/home:v1".into(),
        ttrpc::Code::UNAVAILABLE,
        "registry 127.0.0.1:5009 unavailable",
    ));
    let used_before = bosun::sys::fsnode::bytes_available(&store_dir).unwrap();
    for (i, (image, code, needle)) in cases.iter().enumerate() {
        let cid = format!("hostile{i}");
        let wl = workload(&pod, image, &cid);
        let (got, msg) = pod.send_create_container(&wl).unwrap_err();
        assert_eq!(got, *code, "{image}: {msg}");
        assert!(msg.contains(needle), "{image}: {needle:?} not in {msg:?}");
        assert_nothing_left(&pod, &cid, image);
    }
    assert!(!store_dir.parent().unwrap().join("escaped").exists());
    assert!(!Path::new("/abs-escaped").exists() && !Path::new("/etc/written-through").exists());
    let used_after = bosun::sys::fsnode::bytes_available(&store_dir).unwrap();
    let tree = std::process::Command::new("find")
        .arg(&store_dir)
        .arg("-ls")
        .output()
        .unwrap();
    assert!(
        used_after >= used_before,
        "store usage back: {used_before} free before, {used_after} after: {}",
        String::from_utf8_lossy(&tree.stdout)
    );
    pod.destroy().unwrap();
}

/// A registry holding `name:v1`, the proxy in front of it (common::registry),
/// and the image's reference through the proxy.
struct Proxied {
    reg: TestRegistry,
    proxy: std::sync::Arc<common::registry::Proxy>,
    built: bosun_client::oci_layout::Built,
    image: String,
}

fn proxied(name: &str, layers: &[(Vec<Entry>, Comp)]) -> Proxied {
    let reg = TestRegistry::anonymous();
    let proxy = common::registry::Proxy::start(&reg.ns);
    let built = reg.push(name, "v1", layers, None);
    let image = format!("127.0.0.1:{}/{name}:v1", common::registry::PROXY_PORT);
    Proxied {
        reg,
        proxy,
        built,
        image,
    }
}

/// A registry that stops sending mid-blob: UNAVAILABLE after the stall
/// bound (each of the tries), nothing left.
#[test]
#[ignore = "needs root"]
fn stalled_registry_is_unavailable_and_leaves_nothing() {
    assert!(common::is_root(), "needs root");
    let Proxied { reg, proxy, image, .. } = proxied("big", &busybox_and_big(4, 7, Comp::Gzip));
    let pod = remote_pod(&reg, &["--registry-timeout", "1"]);
    proxy.stall_after.store(1 << 20, std::sync::atomic::Ordering::Relaxed);
    let wl = workload(&pod, &image, "stalled");
    let (code, msg) = pod.send_create_container(&wl).unwrap_err();
    assert_eq!(code, ttrpc::Code::UNAVAILABLE, "{msg}");
    assert!(
        msg.contains("registry 127.0.0.1:5001 unavailable") && msg.contains("mid-transfer"),
        "{msg}"
    );
    assert_nothing_left(&pod, "stalled", "stall");
    pod.destroy().unwrap();
}

/// A transfer cut mid-blob is resumed with a Range request where it
/// stopped, not fetched again, and the layer still verifies.
#[test]
#[ignore = "needs root"]
fn a_cut_blob_is_resumed_where_it_stopped() {
    assert!(common::is_root(), "needs root");
    let Proxied {
        reg,
        proxy,
        image,
        built,
    } = proxied("cut", &busybox_and_big(2, 5, Comp::Gzip));
    let pod = remote_pod(&reg, &[]);
    // The big layer's answer is cut after 256 KiB of it.
    let big = built.layers.last().unwrap().clone();
    *proxy.cut_blob.lock().unwrap() = Some((big.clone(), 256 << 10));
    let wl = workload(&pod, &image, "cut");
    pod.send_create_container(&wl).unwrap();
    assert!(proxy.cut_blob.lock().unwrap().is_none(), "the cut was never made");
    let requests = proxy.requests.lock().unwrap().clone();
    let resumed: Vec<&String> = requests
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("range: bytes=") && !l.ends_with("=0-"))
        .collect();
    assert!(!resumed.is_empty(), "no Range request: {requests:#?}");
    assert_eq!(proxy.blob_gets(&big), 2, "the cut layer: one GET, then one resumed");
    pod.start_c("cut").unwrap();
    pod.remove("cut").unwrap();
    pod.destroy().unwrap();
}

/// A registry answering 503 (overloaded, restarting): bosun retries with
/// backoff and pulls; one that keeps failing is UNAVAILABLE after the
/// bounded retries, with nothing left.
#[test]
#[ignore = "needs root"]
fn registry_5xx_is_retried_then_unavailable() {
    assert!(common::is_root(), "needs root");
    let Proxied { reg, proxy, image, .. } = proxied("flaky", &[(busybox_layer(), Comp::Gzip)]);
    let pod = remote_pod(&reg, &[]);
    proxy.fail_next.store(2, std::sync::atomic::Ordering::Relaxed);
    pod.send_create_container(&workload(&pod, &image, "flaky1")).unwrap();
    let failed = proxy
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("503 "))
        .count();
    assert_eq!(failed, 2, "the two 503s were met and retried past");
    pod.start_c("flaky1").unwrap();
    pod.remove("flaky1").unwrap();
    pod.destroy().unwrap();
    // A new agent (no pooled connection): every attempt meets a 503.
    let pod = remote_pod(&reg, &[]);
    proxy.fail_next.store(100, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::Instant::now();
    let (code, msg) = pod
        .send_create_container(&workload(&pod, &image, "flaky2"))
        .unwrap_err();
    assert_eq!(code, ttrpc::Code::UNAVAILABLE, "{msg}");
    assert!(msg.contains("503") && msg.contains("4 attempts"), "{msg}");
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(1400),
        "backoff 0.2 + 0.4 + 0.8 s between the attempts, took {:?}",
        t.elapsed()
    );
    assert_nothing_left(&pod, "flaky2", "503s");
    pod.destroy().unwrap();
}

fn creds_file(dir: &Path, host: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        common::registry::USER,
        common::registry::PASSWORD
    ));
    let p = dir.join("auth.json");
    std::fs::write(&p, format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    p.to_str().unwrap().to_string()
}

/// Starts and removes `cid`, destroys the pod; the password was never logged.
fn run_remove_destroy_unlogged(pod: &Pod, cid: &str) {
    pod.start_c(cid).unwrap();
    pod.remove(cid).unwrap();
    pod.destroy().unwrap();
    assert!(
        !pod.agent.log().contains(common::registry::PASSWORD),
        "the password was logged"
    );
}

/// Basic auth: refused without credentials (PERMISSION_DENIED), pulled
/// with them; the password never reaches the log.
#[test]
#[ignore = "needs root"]
fn basic_auth_registry() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::basic();
    let creds = format!("{}:{}", common::registry::USER, common::registry::PASSWORD);
    reg.push("private", "v1", &[(busybox_layer(), Comp::Gzip)], Some(&creds));
    let anon = remote_pod(&reg, &[]);
    let (code, msg) = anon
        .send_create_container(&workload(&anon, &reg.image("private", "v1"), "anon"))
        .unwrap_err();
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(msg.contains("none are configured"), "{msg}");
    assert_nothing_left(&anon, "anon", "no credentials");
    let auth = creds_file(reg.dir.path(), "127.0.0.1:5000");
    let pod = remote_pod(&reg, &["--registry-auth-file", &auth]);
    pod.send_create_container(&workload(&pod, &reg.image("private", "v1"), "authed"))
        .unwrap();
    run_remove_destroy_unlogged(&pod, "authed");
}

/// Bytes used on the filesystem holding `p` (statfs: what it takes of RAM
/// when that is a tmpfs).
fn fs_used(p: &Path) -> u64 {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %f %S"])
        .arg(p)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0] - v[1]) * v[2]
}

/// A pod VM as cloud-api-adaptor provisions one: initdata's credentials at
/// /run/peerpod/auth.json and the scratch disk mounted at
/// /run/kata-containers/image. With no flag naming either, bosun pulls a
/// private image with those credentials into that store, and the pull puts
/// nothing in RAM elsewhere (the run dir and /run stay as they were).
#[test]
#[ignore = "needs root"]
fn a_pod_vm_credentials_and_scratch_disk_are_used_unasked() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::basic();
    let creds = format!("{}:{}", common::registry::USER, common::registry::PASSWORD);
    reg.push("private", "v1", &busybox_and_big(8, 11, Comp::Gzip), Some(&creds));
    let auth = creds_file(reg.dir.path(), "127.0.0.1:5000");
    // The scratch disk is a tmpfs here: a mount of its own, as the disk is.
    let setup = format!(
        "mkdir -p /run/peerpod /run/kata-containers/image && cp {auth} /run/peerpod/auth.json && \
         mount -t tmpfs -o size=128m podvm-scratch /run/kata-containers/image && "
    );
    // The run dir where a pod VM has it, on /run (RAM): the agent's own
    // tmpfs here, so no other test's files count.
    let pod = remote_pod_after(&reg, &["--run-dir", "/run/bosun"], &setup);
    let log = pod.agent.log();
    assert!(log.contains("the pod VM's /run/peerpod/auth.json"), "{log}");
    let scratch = pod.agent.seen("/run/kata-containers/image");
    let run = pod.agent.seen("/run");
    let before = (fs_used(&scratch), fs_used(&run));
    pod.send_create_container(&workload(&pod, &reg.image("private", "v1"), "scratch"))
        .unwrap();
    let after = (fs_used(&scratch), fs_used(&run));
    let (disk, ram) = (after.0 - before.0, after.1.saturating_sub(before.1));
    eprintln!(
        "pull of 8 MiB: scratch disk +{} KiB, /run +{} KiB",
        disk >> 10,
        ram >> 10
    );
    assert!(disk >= 8 << 20, "the layers went to the scratch disk: {disk} bytes");
    assert!(scratch.join("layers").is_dir() && !pod.agent.seen("/run/bosun/images").exists());
    assert!(
        ram < 1 << 20,
        "/run (tmpfs, the run dir's) grew {ram} bytes during the pull"
    );
    run_remove_destroy_unlogged(&pod, "scratch");
    // The scratch disk is the pod VM's: its root stays, bosun's files go
    // with the last container.
    assert!(scratch.is_dir(), "the mount point was removed");
    let left: Vec<_> = std::fs::read_dir(scratch.join("containers"))
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "container dirs left: {left:?}");
}

/// A registries.conf as a cluster behind a proxy has one: an origin that
/// does not exist here, a mirror that refuses connections, then a mirror
/// that serves the image; and a blocked prefix. bosun reaches them only
/// through tinyproxy (the `https_proxy` of the Kata agent's file), skips
/// the dead mirror, pulls from the live one, and refuses the blocked name.
#[test]
#[ignore = "needs root"]
fn pulled_through_a_proxy_from_a_mirror() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::anonymous();
    reg.push("mirror/team/app", "v1", &[(busybox_layer(), Comp::Gzip)], None);
    reg.push("held/app", "v1", &[(busybox_layer(), Comp::Gzip)], None);
    let proxy = common::registry::Tinyproxy::start(&reg.ns, reg.dir.path());
    let conf = reg.dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        r#"
[[registry]]
prefix = "origin.example/team"
location = "origin.example/team"

[[registry.mirror]]
location = "127.0.0.1:5009/dead"
insecure = true

[[registry.mirror]]
location = "127.0.0.1:5000/mirror/team"
insecure = true

[[registry]]
prefix = "127.0.0.1:5000/held"
blocked = true
"#,
    )
    .unwrap();
    let pod = remote_pod(
        &reg,
        &[
            "--registries-conf",
            conf.to_str().unwrap(),
            "--https-proxy",
            &proxy.url(),
            "--registry-timeout",
            "5",
        ],
    );
    pod.send_create_container(&workload(&pod, "origin.example/team/app:v1", "mirrored"))
        .unwrap();
    pod.start_c("mirrored").unwrap();
    let (code, out) = run_in(&pod, "mirrored", "e1", "echo from-the-mirror");
    assert_eq!((code, out.trim()), (0, "from-the-mirror"));
    let log = pod.agent.log_with(&["pulling from a mirror"]);
    assert!(
        log.contains("127.0.0.1:5009/dead/app:v1"),
        "the dead mirror was tried first: {log}"
    );
    let seen = proxy.requests();
    assert!(
        seen.iter()
            .any(|l| l.contains("GET http://127.0.0.1:5000/v2/mirror/team/app/manifests/v1")),
        "the manifest came through the proxy: {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("127.0.0.1:5009")),
        "the dead mirror was asked through the proxy: {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("origin.example")),
        "the origin was never needed: {seen:?}"
    );
    let (code, msg) = pod
        .send_create_container(&workload(&pod, &reg.image("held/app", "v1"), "held"))
        .unwrap_err();
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(msg.contains("blocked"), "{msg}");
    // Refused before any request: no mount, no writable part, nothing
    // asked of the proxy for it.
    assert!(pod.agent.mounts_under("/run/kata-containers/held").is_empty());
    assert!(!store(&pod).join("containers").join("held").exists());
    assert_eq!(tmp_entries(&pod), 0);
    assert!(
        !proxy.requests().iter().any(|l| l.contains("/held/")),
        "{:?}",
        proxy.requests()
    );
    pod.remove("mirrored").unwrap();
    pod.destroy().unwrap();
}

/// An HTTPS registry reached only through tinyproxy: bosun opens a CONNECT
/// tunnel and verifies the registry's certificate inside it (the CA given
/// by SSL_CERT_FILE, as on a pod VM with its own roots; without it the
/// pull fails at once); with the registry's host in `no_proxy` the proxy
/// is not used.
#[test]
#[ignore = "needs root"]
fn https_registry_through_a_connect_tunnel() {
    assert!(common::is_root(), "needs root");
    let (reg, ca) = TestRegistry::tls();
    reg.push("app", "v1", &[(busybox_layer(), Comp::Gzip)], None);
    let proxy = common::registry::Tinyproxy::start(&reg.ns, reg.dir.path());
    let image = reg.image("app", "v1");
    let connects = |p: &common::registry::Tinyproxy| {
        p.requests()
            .iter()
            .filter(|l| l.contains("CONNECT 127.0.0.1:5443"))
            .count()
    };
    // Without the CA: the certificate does not verify, which no retry can
    // mend: FAILED_PRECONDITION after one attempt.
    let untrusting = remote_pod_after(&reg, &["--https-proxy", &proxy.url()], "");
    let (code, msg) = untrusting
        .send_create_container(&workload(&untrusting, &image, "untrusted"))
        .unwrap_err();
    assert_eq!(code, ttrpc::Code::FAILED_PRECONDITION, "{msg}");
    assert!(msg.contains("not trusted") && msg.contains("UnknownIssuer"), "{msg}");
    assert_eq!(connects(&proxy), 1, "retried: {:?}", proxy.requests());
    untrusting.destroy().unwrap();
    drop(untrusting);
    let setup = format!("export SSL_CERT_FILE={} && ", ca.display());
    let pod = remote_pod_after(&reg, &["--https-proxy", &proxy.url()], &setup);
    pod.send_create_container(&workload(&pod, &image, "tunnelled")).unwrap();
    assert!(connects(&proxy) >= 2, "no CONNECT: {:?}", proxy.requests());
    pod.start_c("tunnelled").unwrap();
    pod.remove("tunnelled").unwrap();
    pod.destroy().unwrap();
    drop(pod);
    // The same with 127.0.0.1 in no_proxy: straight to the registry.
    let before = connects(&proxy);
    reg.push("direct", "v1", &[(busybox_layer(), Comp::Zstd)], None);
    let pod = remote_pod_after(
        &reg,
        &["--https-proxy", &proxy.url(), "--no-proxy", "localhost,127.0.0.1"],
        &setup,
    );
    pod.send_create_container(&workload(&pod, &reg.image("direct", "v1"), "direct"))
        .unwrap();
    assert_eq!(connects(&proxy), before, "no_proxy was not honoured");
    pod.remove("direct").unwrap();
    pod.destroy().unwrap();
}

/// The bearer-token flow: the registry's challenge names the token
/// endpoint; bosun gets a token there with its credentials and pulls.
#[test]
#[ignore = "needs root"]
fn token_auth_registry() {
    assert!(common::is_root(), "needs root");
    let (reg, tokens) = TestRegistry::token();
    let creds = format!("{}:{}", common::registry::USER, common::registry::PASSWORD);
    reg.push("tokened", "v1", &[(busybox_layer(), Comp::Zstd)], Some(&creds));
    let pushes = tokens.requests.lock().unwrap().len();
    let auth = creds_file(reg.dir.path(), "127.0.0.1:5000");
    let pod = remote_pod(&reg, &["--registry-auth-file", &auth]);
    pod.send_create_container(&workload(&pod, &reg.image("tokened", "v1"), "tok"))
        .unwrap();
    let asked: Vec<String> = tokens.requests.lock().unwrap()[pushes..].to_vec();
    assert!(
        asked.iter().any(|s| s == "repository:tokened:pull"),
        "bosun's token requests: {asked:?}"
    );
    run_remove_destroy_unlogged(&pod, "tok");
}

/// Two containers pulling one image at once: one download of each layer,
/// the layers shared, deleted only when the last user goes.
#[test]
#[ignore = "needs root"]
fn one_download_for_two_pulls_and_shared_layers() {
    assert!(common::is_root(), "needs root");
    let Proxied {
        reg,
        proxy,
        built,
        image,
    } = proxied("shared", &busybox_and_big(3, 9, Comp::Gzip));
    let pod = remote_pod(&reg, &[]);
    // Slow enough that the two pulls overlap.
    proxy.rate.store(4 << 20, std::sync::atomic::Ordering::Relaxed);
    let (a, b) = (workload(&pod, &image, "share-a"), workload(&pod, &image, "share-b"));
    for r in pod.send_create_containers_at_once(&[a, b]) {
        r.unwrap();
    }
    for l in &built.layers {
        assert_eq!(
            proxy.blob_gets(l),
            1,
            "layer {l} fetched once: {:?}",
            proxy.requests.lock().unwrap()
        );
    }
    assert_eq!(layers(&pod).len(), 2);
    pod.remove("share-a").unwrap();
    assert_eq!(layers(&pod).len(), 2, "share-b still reads them");
    pod.start_c("share-b").unwrap();
    pod.remove("share-b").unwrap();
    assert!(layers(&pod).is_empty(), "the last user gone: deleted");
    pod.destroy().unwrap();
}

/// A pull slower than the runtime's timeout: DEADLINE_EXCEEDED before the
/// runtime's own, no container; the layers keep coming, and the runtime's
/// retry uses them instead of fetching again.
#[test]
#[ignore = "needs root"]
fn pull_past_the_timeout_leaves_no_container_and_the_retry_reuses_layers() {
    assert!(common::is_root(), "needs root");
    let Proxied {
        reg,
        proxy,
        built,
        image,
    } = proxied("slow", &busybox_and_big(6, 3, Comp::Gzip));
    let pod = remote_pod(&reg, &[]);
    proxy.rate.store(2 << 20, std::sync::atomic::Ordering::Relaxed);
    let wl = workload(&pod, &image, "slowpoke");
    let t = std::time::Instant::now();
    let (code, msg) = pod
        .send_create_container_within(&wl, std::time::Duration::from_secs(2))
        .unwrap_err();
    assert_eq!(code, ttrpc::Code::DEADLINE_EXCEEDED, "{msg}");
    assert!(
        msg.contains("still running"),
        "bosun's own answer, before ttrpc's: {msg}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(2),
        "answered before the client's deadline"
    );
    assert!(pod.agent.mounts_under("/run/kata-containers/slowpoke").is_empty());
    assert!(!pod.diagnostic("containers").unwrap().contains("slowpoke"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while layers(&pod).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the layers did not finish in the background"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    pod.send_create_container(&wl).unwrap();
    for l in &built.layers {
        assert_eq!(proxy.blob_gets(l), 1, "layer {l}: the retry used what was fetched");
    }
    // Progress is logged every second of a pull.
    let log = pod.agent.log_with(&["pulling layer", "mb_per_s"]);
    assert!(log
        .lines()
        .any(|l| l.contains("pulling layer") && l.contains("mb_per_s")));
    pod.start_c("slowpoke").unwrap();
    pod.remove("slowpoke").unwrap();
    pod.destroy().unwrap();
}

/// bosun killed mid-pull: the half layer is discarded at start, never
/// used, and the next CreateContainer pulls it whole.
#[test]
#[ignore = "needs root"]
fn restart_mid_pull_discards_the_half_layer() {
    assert!(common::is_root(), "needs root");
    let Proxied { reg, proxy, image, .. } = proxied("cut", &busybox_and_big(4, 5, Comp::None));
    let mut pod = remote_pod(&reg, &["--registry-timeout", "30"]);
    // Stalled after 2 MiB, in the middle of the big layer.
    proxy.stall_after.store(2 << 20, std::sync::atomic::Ordering::Relaxed);
    let wl = workload(&pod, &image, "cut");
    let addr = pod.agent.addr.clone();
    let wl2 = wl.clone();
    let caller = std::thread::spawn(move || {
        let rt = common::rt();
        rt.block_on(async {
            let c = bosun_client::Client::connect(&addr, std::time::Duration::from_secs(60))
                .await
                .unwrap();
            c.agent.create_container(c.ctx(), &wl2).await
        })
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let half = loop {
        let partial: Vec<PathBuf> = std::fs::read_dir(store(&pod).join("tmp"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("r").exists())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(p) = partial.first() {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pull never started unpacking the big layer"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    pod.agent.kill9();
    assert!(caller.join().unwrap().is_err(), "the call died with the agent");
    assert!(half.exists(), "a half layer on disk when bosun died");
    proxy.stall_after.store(u64::MAX, std::sync::atomic::Ordering::Relaxed);
    pod.restart(&[], true);
    assert_eq!(tmp_entries(&pod), 0, "discarded at start");
    assert!(
        layers(&pod).len() <= 1,
        "the cut layer was not published: {:?}",
        layers(&pod)
    );
    // The isolated agent's /run and mounts were its own and went with
    // it (in a guest they stay): the pod's files are sent again, and the
    // sandbox's shm mount is left out of the workload.
    let mut wl = workload(&pod, &image, "cut");
    wl.OCI
        .as_mut()
        .unwrap()
        .Mounts
        .retain(|m| !m.source.starts_with("/run/kata-containers/sandbox/"));
    pod.send_create_container(&wl).unwrap();
    pod.start_c("cut").unwrap();
    let (code, out) = run_in(&pod, "cut", "sum", "wc -c < /r");
    assert_eq!(
        (code, out.trim()),
        (0, (4u32 << 20).to_string().as_str()),
        "the layer whole"
    );
    pod.remove("cut").unwrap();
    assert!(layers(&pod).is_empty(), "the layers went with their container");
    pod.destroy().unwrap();
}

/// bosunctl's `create --image` builds the request runtime-rs sends: the
/// same storage (driver, source, fstype, mount point = OCI root, the
/// metadata driver option), checked against the golden fixture.
#[test]
fn bosunctl_image_request_has_runtime_rs_shape() {
    let golden = workload_fixture();
    let built = bosun_client::spec::guest_pull_request(
        FIXTURE_CID,
        FIXTURE_IMAGE,
        bosun_client::spec::container(None, &["sh".to_string()]),
        false,
    );
    let (g, b) = (&golden.storages[0], &built.storages[0]);
    assert_eq!(
        (&b.driver, &b.source, &b.fstype, &b.mount_point),
        (&g.driver, &g.source, &g.fstype, &g.mount_point)
    );
    assert_eq!(built.OCI.Root.Path, golden.OCI.Root.Path);
    let meta = |s: &bosun_protocols::agent::Storage| -> serde_json::Value {
        let j = s.driver_options[0]
            .strip_prefix("image_guest_pull=")
            .expect("image_guest_pull= option");
        serde_json::from_str::<serde_json::Value>(j).unwrap()["metadata"].clone()
    };
    for key in ["io.kubernetes.cri.container-type", "io.kubernetes.cri.image-name"] {
        assert_eq!(meta(b)[key], meta(g)[key], "{key}");
    }
}

fn workload_fixture() -> CreateContainerRequest {
    fixture(WORKLOAD, &[])
}

/// bosunctl end to end: `create --image`, `images`, `rm`.
#[test]
#[ignore = "needs root"]
fn bosunctl_create_image_and_images() {
    assert!(common::is_root(), "needs root");
    let reg = TestRegistry::anonymous();
    reg.push("ctl", "v1", &[(busybox_layer(), Comp::Gzip)], None);
    let pod = remote_pod(&reg, &[]);
    let addr = pod.agent.addr.to_string();
    let ctl = |args: &[&str]| {
        let mut v = vec!["--addr", addr.as_str(), "--timeout", "30"];
        v.extend_from_slice(args);
        common::bosunctl(&v)
    };
    let image = reg.image("ctl", "v1");
    let (code, out, err) = ctl(&[
        "create",
        "ctl1",
        "--image",
        &image,
        "--",
        "sh",
        "-c",
        "echo pulled-and-running; sleep 60",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = ctl(&["images"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&image) && out.contains("1 layer(s)"), "{out}");
    assert_eq!(ctl(&["start", "ctl1"]).0, 0);
    assert!(pod.read_until("ctl1", "ctl1", "pulled-and-running").is_ok());
    let (code, out, err) = ctl(&["rm", "ctl1"]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = ctl(&["images"]);
    assert!(out.contains("0 layer(s)"), "{out}");
    pod.destroy().unwrap();
}
