//! A genpolicy-shaped pod policy (`tests/fixtures/policy/`) deciding the
//! golden runtime-rs pod's requests, each request kind genpolicy's own
//! test cases cover in an allowed and a denied variant: CreateSandbox,
//! CreateContainer, ExecProcess, CopyFile, UpdateInterface, UpdateRoutes,
//! AddARPNeighbors, RemoveContainer. The rules read the request by the
//! paths genpolicy's rules.rego reads, so these tests fail when bosun's
//! input is not the Kata agent's; `pstate` carries the containers from
//! CreateContainer to ExecProcess and RemoveContainer.
//!
//! No root needed: the decisions are the agent's own `Policy`, the wiring
//! to every served method is tested in `tests/policy.rs`.

mod common;

use bosun::policy::{input, Policy, PolicyError, Source};
use bosun::protocols::agent::{
    AddARPNeighborsRequest, CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, ExecProcessRequest,
    RemoveContainerRequest, UpdateInterfaceRequest, UpdateRoutesRequest,
};
use common::fixtures::{fixture, fixture_list, fixture_text};
use protobuf::MessageDyn;

const PAUSE: &str = "3f5d9c7e1a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d";
const WORKLOAD: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// The pod's policy, as genpolicy lays one out: the rules, then
/// `policy_data` for this pod.
fn pod_policy() -> (tempfile::TempDir, Policy) {
    let text = format!(
        "{}\npolicy_data := {}\n",
        fixture_text("policy/genpolicy-shaped.rego", &[]),
        fixture_text("policy/genpolicy-shaped-data.json", &[])
    );
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("policy.rego");
    std::fs::write(&f, text).unwrap();
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let p = Policy::open(d.path(), Source::File(&f), false, &log).unwrap();
    (d, p)
}

fn decide(p: &Policy, req: &dyn MessageDyn) -> Result<(), PolicyError> {
    p.check_request(req)
}

#[track_caller]
fn allowed(p: &Policy, req: &dyn MessageDyn, what: &str) {
    if let Err(e) = decide(p, req) {
        panic!("{what}: denied: {e}");
    }
}

#[track_caller]
fn denied(p: &Policy, req: &dyn MessageDyn, what: &str) -> String {
    match decide(p, req) {
        Err(PolicyError::Denied { request, why }) => {
            assert_eq!(request, req.descriptor_dyn().name(), "{what}");
            why
        }
        Err(e) => panic!("{what}: not a denial: {e}"),
        Ok(()) => panic!("{what}: allowed"),
    }
}

fn sandbox() -> CreateSandboxRequest {
    fixture("runtime-rs-remote-CreateSandbox.json", &[])
}

fn pause() -> CreateContainerRequest {
    fixture("runtime-rs-remote-CreateContainer-pause.json", &[])
}

fn workload() -> CreateContainerRequest {
    fixture("runtime-rs-remote-CreateContainer-workload.json", &[])
}

fn exec(cid: &str, args: &[&str]) -> ExecProcessRequest {
    let mut r = ExecProcessRequest::new();
    r.container_id = cid.into();
    r.exec_id = "e1".into();
    let p = r.process.mut_or_insert_default();
    p.Args = args.iter().map(|s| s.to_string()).collect();
    p.Cwd = "/".into();
    r
}

fn remove(cid: &str) -> RemoveContainerRequest {
    let mut r = RemoveContainerRequest::new();
    r.container_id = cid.into();
    r
}

fn parsed<M: protobuf::MessageFull>(json: &str) -> M {
    protobuf_json_mapping::parse_from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn create_sandbox_as_runtime_rs_sends_it_and_what_the_policy_refuses() {
    let (_d, p) = pod_policy();
    allowed(&p, &sandbox(), "the golden CreateSandbox");

    let mut r = sandbox();
    r.sandbox_pidns = true;
    denied(&p, &r, "a sandbox pid namespace");
    let mut r = sandbox();
    r.guest_hook_path = "/usr/share/oci/hooks".into();
    let why = denied(&p, &r, "a guest hook path");
    assert!(
        why.contains("/usr/share/oci/hooks"),
        "the policy's print() is the reason: {why}"
    );
    let mut r = sandbox();
    let mut m = bosun::protocols::agent::KernelModule::new();
    m.name = "nf_tables".into();
    r.kernel_modules.push(m);
    denied(&p, &r, "a kernel module");
    let mut r = sandbox();
    r.storages[0].options.retain(|o| o != "noexec");
    denied(&p, &r, "the shm storage without noexec");
}

#[test]
fn create_container_exec_and_remove_follow_the_pods_state() {
    let (_d, p) = pod_policy();
    // Not created yet: no exec into it.
    denied(&p, &exec(WORKLOAD, &["cat", "/etc/hostname"]), "exec before create");

    allowed(&p, &pause(), "the golden pause container");
    allowed(&p, &workload(), "the golden workload");
    denied(&p, &workload(), "the same container id twice");

    // The command genpolicy would list for the container, and only it.
    allowed(&p, &exec(WORKLOAD, &["cat", "/etc/hostname"]), "a listed exec command");
    allowed(
        &p,
        &exec(WORKLOAD, &["sh", "-c", "echo ready"]),
        "another listed command",
    );
    let why = denied(
        &p,
        &exec(WORKLOAD, &["sh", "-c", "cat /etc/shadow"]),
        "an unlisted command",
    );
    assert!(why.contains("cat /etc/shadow"), "{why}");
    denied(&p, &exec(WORKLOAD, &["cat"]), "a listed command's prefix");
    denied(
        &p,
        &exec(PAUSE, &["cat", "/etc/hostname"]),
        "the workload's command in the pause container",
    );
    let mut r = exec(WORKLOAD, &["cat", "/etc/hostname"]);
    r.string_user = Some(Default::default()).into();
    denied(&p, &r, "an exec with a string user");

    // RemoveContainer drops the container from pstate: no exec after it.
    allowed(&p, &remove(WORKLOAD), "removing the workload");
    denied(&p, &exec(WORKLOAD, &["cat", "/etc/hostname"]), "exec after remove");
    denied(&p, &remove(WORKLOAD), "removing it again (not in pstate)");
    denied(&p, &remove("0000"), "removing a container the policy never allowed");
    // And it may be created again.
    allowed(&p, &workload(), "the workload re-created");
}

#[test]
fn create_container_variants_the_policy_does_not_list_are_denied() {
    let (_d, p) = pod_policy();
    let mut r = workload();
    r.OCI.mut_or_insert_default().Process.mut_or_insert_default().Args = vec!["sh".into(), "-c".into(), "id".into()];
    let why = denied(&p, &r, "other arguments");
    assert!(why.contains("\"id\""), "the print names the arguments: {why}");

    let mut r = workload();
    let caps = r
        .OCI
        .mut_or_insert_default()
        .Process
        .mut_or_insert_default()
        .Capabilities
        .mut_or_insert_default();
    caps.Bounding.push("SYS_ADMIN".into());
    denied(&p, &r, "an added capability");

    let mut r = workload();
    let mut m = r.OCI.Mounts[0].clone();
    m.destination = "/host".into();
    m.type_ = "bind".into();
    m.source = "/".into();
    r.OCI.mut_or_insert_default().Mounts.push(m);
    denied(&p, &r, "an extra bind mount");

    let mut r = workload();
    r.OCI.mut_or_insert_default().Root.mut_or_insert_default().Readonly = true;
    let mut pause_as_root = pause();
    pause_as_root
        .OCI
        .mut_or_insert_default()
        .Process
        .mut_or_insert_default()
        .User
        .mut_or_insert_default()
        .UID = 0;
    denied(
        &p,
        &r,
        "the workload with a read-only root (the pod spec says writable)",
    );
    denied(&p, &pause_as_root, "the pause container as root");

    let mut r = workload();
    r.storages[0].driver = "local".into();
    denied(&p, &r, "a storage driver the policy does not list");

    // Nothing above was recorded: the golden ones are still allowed.
    allowed(&p, &pause(), "the golden pause container after the denials");
    allowed(&p, &workload(), "the golden workload after the denials");
}

fn copy_input(r: &CopyFileRequest) -> serde_json::Value {
    input::copy_file(r).unwrap()
}

#[test]
fn copy_file_of_the_golden_volumes_and_the_paths_it_refuses() {
    let (_d, p) = pod_policy();
    let golden: Vec<CopyFileRequest> = fixture_list("runtime-rs-remote-CopyFile.json");
    assert!(golden.len() >= 10);
    for r in &golden {
        if let Err(e) = p.check("CopyFileRequest", &copy_input(r)) {
            panic!("{}: denied: {e}", r.path);
        }
    }
    let shared = "/run/kata-containers/shared/containers";
    let base = format!("{shared}/{WORKLOAD}-0f1e2d3c4b5a6978");
    let file = |path: String, mode: u32, data: &str| {
        let mut r = golden[0].clone();
        r.path = path;
        r.file_mode = mode;
        r.data = data.as_bytes().to_vec();
        r
    };
    let bad = [
        (
            file(format!("{base}-hosts/../../../../etc/passwd"), 0o100644, "x"),
            "a path with ..",
        ),
        (file("/etc/passwd".into(), 0o100644, "x"), "a path outside the share"),
        (
            file(format!("{shared}/short-0f1e2d3c4b5a6978-hosts"), 0o100644, "x"),
            "a name that is no container id",
        ),
        (
            file(format!("{base}-sa/link"), 0o120777, "/etc/shadow"),
            "an absolute symlink",
        ),
        (
            file(format!("{base}-sa/link"), 0o120777, "../../x"),
            "a symlink that climbs",
        ),
        (file(format!("{base}-sa/fifo"), 0o010644, ""), "a fifo"),
    ];
    for (r, what) in &bad {
        match p.check("CopyFileRequest", &copy_input(r)) {
            Err(PolicyError::Denied { .. }) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    let link = file(format!("{base}-sa/..data"), 0o120777, "..2026_12_01");
    assert!(
        p.check("CopyFileRequest", &copy_input(&link)).is_ok(),
        "a relative link"
    );
}

#[test]
fn update_interface_as_runtime_rs_sends_it_and_forbidden_variants() {
    let (_d, p) = pod_policy();
    let iface = |name: &str, hw: &str, flags: u32| -> UpdateInterfaceRequest {
        parsed(&format!(
            r#"{{"interface": {{"device": "{name}", "name": "{name}", "mtu": 1500, "hwAddr": "{hw}",
                "IPAddresses": [{{"family": 0, "address": "10.244.0.14", "mask": "24"}},
                                {{"family": 1, "address": "fe80::6474:9fff:fe6a:9601", "mask": "64"}}],
                "raw_flags": {flags}}}}}"#
        ))
    };
    allowed(&p, &iface("eth0", "66:74:9f:6a:96:01", 0), "eth0");
    allowed(&p, &iface("eth0", "66:74:9f:6a:96:01", 128), "eth0 with IFF_NOARP");
    denied(&p, &iface("eth0", "66:74:9f:6a:96:01", 128 | 0x100), "IFF_PROMISC");
    denied(&p, &iface("lo", "66:74:9f:6a:96:01", 0), "lo");
    denied(&p, &iface("eth0", "00:00:00:00:00:00", 0), "a zero hardware address");
}

#[test]
fn update_routes_and_arp_neighbors_and_forbidden_variants() {
    let (_d, p) = pod_policy();
    let routes = |device: &str, source: &str| -> UpdateRoutesRequest {
        parsed(&format!(
            r#"{{"routes": {{"Routes": [
                {{"dest": "", "gateway": "10.244.0.1", "device": "eth0", "source": "", "scope": 0, "family": 0}},
                {{"dest": "10.244.0.0/24", "gateway": "", "device": "{device}", "source": "{source}", "scope": 253, "family": 0}}]}}}}"#
        ))
    };
    allowed(&p, &routes("eth0", "10.244.0.14"), "routes on eth0");
    denied(&p, &routes("lo", ""), "a route on lo");
    denied(&p, &routes("eth0", "127.0.0.1"), "a loopback source");
    denied(&p, &routes("eth0", "::1"), "the IPv6 loopback source");

    let neigh = |device: &str, addr: &str, mask: &str, state: i32, flags: i32| -> AddARPNeighborsRequest {
        parsed(&format!(
            r#"{{"neighbors": {{"ARPNeighbors": [{{"toIPAddress": {{"family": 0, "address": "{addr}", "mask": "{mask}"}},
                "device": "{device}", "lladdr": "00:00:5e:00:53:01", "state": {state}, "flags": {flags}}}]}}}}"#
        ))
    };
    allowed(&p, &neigh("eth0", "10.0.0.1", "", 128, 0), "a permanent neighbor");
    allowed(&p, &neigh("eth0", "10.0.0.1", "", 2, 8), "reachable, NTF_PROXY");
    denied(&p, &neigh("lo", "10.0.0.1", "", 128, 0), "on lo");
    denied(&p, &neigh("eth0", "127.0.0.2", "", 128, 0), "a loopback address");
    denied(&p, &neigh("eth0", "10.0.0.1", "24", 128, 0), "with a mask");
    denied(&p, &neigh("eth0", "10.0.0.1", "", 4, 0), "state STALE");
    denied(&p, &neigh("eth0", "10.0.0.1", "", 128, 1), "flag NTF_USE");
}

/// The policy's input carries exactly the names genpolicy's rules read;
/// shown on the golden requests themselves, so a renamed field fails here
/// by name rather than as a mysterious denial above.
#[test]
fn the_inputs_have_the_fields_genpolicy_reads() {
    let c = input::of(&workload());
    for ptr in [
        "/container_id",
        "/OCI/Process/Args",
        "/OCI/Process/Capabilities/Bounding",
        "/OCI/Process/User/UID",
        "/OCI/Root/Readonly",
        "/OCI/Mounts/0/type_",
        "/OCI/Mounts/0/destination",
        "/storages/0/driver",
        "/storages/0/fs_group",
    ] {
        assert!(c.pointer(ptr).is_some(), "CreateContainer input has no {ptr}");
    }
    let s = input::of(&sandbox());
    for ptr in [
        "/guest_hook_path",
        "/kernel_modules",
        "/sandbox_pidns",
        "/storages/0/shared",
    ] {
        assert!(s.pointer(ptr).is_some(), "CreateSandbox input has no {ptr}");
    }
    let e = input::of(&exec(WORKLOAD, &["true"]));
    assert_eq!(e.pointer("/string_user"), Some(&serde_json::Value::Null));
    assert!(e.pointer("/process/SelinuxLabel").is_some() && e.pointer("/process/ApparmorProfile").is_some());
}
