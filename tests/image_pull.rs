//! `image_guest_pull` (remote-hypervisor mode): workload images pulled by
//! bosun from a real registry (docker-registry in a network namespace of
//! the test's, images built here as OCI layouts and pushed with skopeo),
//! with the requests runtime-rs sends (tests/fixtures), then torn down to
//! nothing; and the hostile cases, each ending with no mounts, no partial
//! layers and the store back to what it was.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bosun::client::oci_layout::{Comp, Entry};
use bosun::protocols::agent::{CopyFileRequest, CreateContainerRequest, CreateSandboxRequest};
use common::fixtures::{fixture, fixture_list_with};
use common::pod::Pod;
use common::registry::{busybox_layer, TestRegistry};

const WORKLOAD: &str = "runtime-rs-remote-CreateContainer-workload.json";
const FIXTURE_IMAGE: &str = "docker.io/library/busybox:1.36";
const FIXTURE_CID: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// A pod as runtime-rs starts one in remote-hypervisor mode: sandbox, the
/// pod's files by CopyFile, the pause pulled as "pause".
fn remote_pod(reg: &TestRegistry, extra: &[&str]) -> Pod {
    let mut flags = vec!["--insecure-registries", "127.0.0.1:5000,127.0.0.1:5001", "--registry-timeout", "3"];
    flags.extend_from_slice(extra);
    let pod = Pod::start_in_net(reg.ns.path(), &flags);
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
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp_entries(pod: &Pod) -> usize {
    std::fs::read_dir(store(pod).join("tmp")).map(|rd| rd.count()).unwrap_or(0)
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
        Entry::FileXattr("etc/tagged".into(), b"x".to_vec(), 0o644, vec![("user.bosun".into(), b"yes".to_vec())]),
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
    assert_eq!(pod.agent.mounts_under(&rootfs), vec![rootfs.clone()], "the overlay at the storage's mount_point");
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
    assert!(out.contains("kept") && out.contains("new") && !out.contains("old"), "opaque opq: {out}");
    let (_, out) = run_in(&pod, cid, "e2", "stat -c '%a %u:%g' /bin/suid /etc/owned; stat -c '%t:%T %F' /opt/zero2");
    assert!(out.contains("4755 0:0"), "setuid kept: {out}");
    assert!(out.contains("600 1000:1001"), "owner kept: {out}");
    assert!(out.contains("1:5 character special file"), "device node kept: {out}");
    let (_, out) = run_in(&pod, cid, "e3", "echo written > /etc/new-file && cat /etc/new-file && ls -l /bin/sh");
    assert!(out.contains("written"), "the rootfs is writable (OCI root not read-only): {out}");

    // Layers as overlayfs reads them, in the store.
    let l2 = store(&pod).join("layers").join(&built.diff_ids[1][7..]);
    let l3 = store(&pod).join("layers").join(&built.diff_ids[2][7..]);
    let wh = std::fs::symlink_metadata(l3.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout = 0:0 char device");
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
    assert_eq!(std::fs::metadata(l1.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);

    // GetDiagnosticData "images": what the store holds.
    let inv = pod.diagnostic("images").unwrap();
    assert!(inv.contains(&built.manifest_digest), "{inv}");

    pod.remove(cid).unwrap();
    assert!(pod.agent.mounts_under(&rootfs).is_empty());
    assert!(layers(&pod).is_empty(), "no container uses the layers: deleted");
    assert!(!store(&pod).join("containers").join(cid).exists(), "the writable part goes with the container");
    pod.destroy().unwrap();
    assert!(pod.agent.mounts_under("/run/kata-containers").is_empty());
    assert_eq!(tmp_entries(&pod), 0);
}
