//! Surviving a restart (root): bosun killed with SIGKILL, or crashing at a
//! named step, comes back knowing what it owns, and finishes any work.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bosun_protocols::agent::{CopyFileRequest, CreateContainerRequest, Storage};
use common::pod::{spec, Pod};
use common::{bosunctl, mounts_under};

fn eph(mp: &std::path::Path) -> Storage {
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) = (
        "ephemeral".into(),
        "tmpfs".into(),
        "tmpfs".into(),
        mp.display().to_string(),
    );
    s
}

fn ps(pod: &Pod) -> Vec<(String, String)> {
    let (code, out, err) = bosunctl(&["--addr", &pod.agent.addr.to_string(), "--json", "ps"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut rows: Vec<(String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn assert_clean(pod: &Pod) {
    pod.destroy().expect("DestroySandbox");
    assert_eq!(mounts_under(pod.dir()), Vec::<PathBuf>::new(), "mounts left");
    assert_eq!(pod.cgroup_dirs(), Vec::<PathBuf>::new(), "cgroups left");
    let left: Vec<_> = std::fs::read_dir(pod.run_dir())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the run dir: {left:?}");
}

/// Waits until bosun (expected to crash) has exited.
fn wait_crash(pod: &mut Pod) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pod.agent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bosun did not crash at the injected point");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs root"]
fn sigkill_while_a_pod_runs_then_everything_still_works() {
    let (mut pod, rootfs) = common::pod::started("restart", true);
    for id in ["a", "b"] {
        pod.create(id, spec(Some(&rootfs), &["sleep", "300"])).unwrap();
        pod.start_c(id).unwrap();
    }
    let before = ps(&pod);
    pod.restart(&[], true);
    assert_eq!(
        ps(&pod),
        before,
        "the containers or their states changed over the restart"
    );
    pod.agent.log_with(&["state recovered"]);
    // exec, stats, signal, wait all work on re-adopted containers.
    pod.exec("a", "e", &["echo", "after restart"]).unwrap();
    assert_eq!(pod.read_all("a", "e", false).unwrap(), b"after restart\n");
    assert_eq!(pod.wait("a", "e").unwrap(), 0);
    assert!(pod.stats("a").unwrap().cgroup_stats.is_some());
    pod.signal("b", "", 9).unwrap();
    assert_eq!(
        pod.wait("b", "").unwrap(),
        128 + 9,
        "status of a process started before the restart (its monitor recorded it)"
    );
    // Same create as before the restart: OK. Another spec: ALREADY_EXISTS.
    pod.create("a", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    assert_eq!(
        pod.create("a", spec(Some(&rootfs), &["sleep", "301"])).unwrap_err().0,
        ttrpc::Code::ALREADY_EXISTS
    );
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn crash_after_the_mount_before_the_process_is_rolled_back() {
    let (mut pod, rootfs) = common::pod::started("crash1", false);
    let mp = pod.mnt("eph");
    pod.restart(&[("BOSUN_CRASH_AT", "create-after-storage")], true);
    assert!(pod
        .create_with("c", spec(Some(&rootfs), &["sleep", "300"]), vec![eph(&mp)])
        .is_err());
    wait_crash(&mut pod);
    assert!(
        mounts_under(pod.dir()).contains(&mp),
        "the crash should come after the mount"
    );
    pod.restart(&[], true);
    assert!(
        !mounts_under(pod.dir()).contains(&mp),
        "the interrupted create was not rolled back"
    );
    assert_eq!(pod.start_c("c").unwrap_err().0, ttrpc::Code::NOT_FOUND);
    // The runtime's retry succeeds.
    pod.create_with("c", spec(Some(&rootfs), &["sleep", "300"]), vec![eph(&mp)])
        .unwrap();
    pod.start_c("c").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn crash_in_the_middle_of_a_remove_is_finished_by_the_next_call() {
    let (mut pod, rootfs) = common::pod::started("crash2", false);
    let (m1, m2) = (pod.mnt("one"), pod.mnt("two"));
    pod.create_with("c", spec(Some(&rootfs), &["sleep", "300"]), vec![eph(&m1), eph(&m2)])
        .unwrap();
    pod.start_c("c").unwrap();
    pod.restart(&[("BOSUN_CRASH_AT", "remove-after-unmount")], true);
    assert!(pod.remove("c").is_err());
    wait_crash(&mut pod);
    assert_eq!(
        mounts_under(pod.dir()).len(),
        1,
        "one of the two storages should be unmounted"
    );
    pod.restart(&[], true);
    assert!(
        ps(&pod).contains(&("c".to_string(), "being removed".to_string())),
        "{:?}",
        ps(&pod)
    );
    pod.remove("c").unwrap();
    pod.remove("c").unwrap();
    assert_clean(&pod);
}

#[test]
#[ignore = "needs root"]
fn a_corrupt_state_file_is_kept_aside_and_bosun_serves() {
    let mut pod = Pod::start();
    pod.create_sandbox("corrupt", false).unwrap();
    let state = pod.run_dir().join("state.json");
    assert!(state.exists());
    pod.agent.kill9();
    std::fs::write(&state, b"0000000000000000\n{\"version\":1, \"truncat").unwrap();
    pod.restart(&[], true);
    pod.agent.log_with(&["state journal rejected"]);
    let kept: Vec<_> = std::fs::read_dir(pod.run_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("state.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "the corrupt file must be kept, not deleted");
    assert_eq!(ps(&pod), vec![]);
    pod.create_sandbox("fresh", false).unwrap();
    pod.destroy().unwrap();
    std::fs::remove_file(kept[0].path()).unwrap();
}

#[test]
#[ignore = "needs root"]
fn error_codes_for_missing_things_and_wrong_states() {
    let (pod, rootfs) = common::pod::started("codes", false);
    pod.create("made", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.create("done", spec(Some(&rootfs), &["true"])).unwrap();
    pod.start_c("done").unwrap();
    assert_eq!(pod.wait("done", "").unwrap(), 0);
    use ttrpc::Code::*;
    type Case<'a> = (&'a str, Result<(), common::pod::Failure>, ttrpc::Code, &'a str);
    let cases: Vec<Case> = vec![
        (
            "start missing",
            pod.start_c("nope"),
            NOT_FOUND,
            "container \"nope\" not found",
        ),
        ("exec missing", pod.exec("nope", "e", &["true"]), NOT_FOUND, "not found"),
        ("wait missing", pod.wait("nope", "").map(|_| ()), NOT_FOUND, "not found"),
        ("signal missing", pod.signal("nope", "", 9), NOT_FOUND, "not found"),
        ("stats missing", pod.stats("nope").map(|_| ()), NOT_FOUND, "not found"),
        (
            "missing exec id",
            pod.wait("made", "ghost").map(|_| ()),
            NOT_FOUND,
            "process \"ghost\" not found in container \"made\"",
        ),
        (
            "write to missing exec id",
            pod.write("made", "ghost", b"x").map(|_| ()),
            NOT_FOUND,
            "process \"ghost\"",
        ),
        (
            "exec in a created container",
            pod.exec("made", "e", &["true"]),
            FAILED_PRECONDITION,
            "is created",
        ),
        (
            "exec in a stopped container",
            pod.exec("done", "e", &["true"]),
            FAILED_PRECONDITION,
            "is stopped",
        ),
        (
            "start a stopped container",
            pod.start_c("done"),
            FAILED_PRECONDITION,
            "is stopped",
        ),
        (
            "pause a created container",
            pod.pause("made", true),
            FAILED_PRECONDITION,
            "is created",
        ),
        (
            "resume a running one",
            {
                pod.start_c("made").unwrap();
                pod.pause("made", false)
            },
            FAILED_PRECONDITION,
            "is running",
        ),
        ("start twice", pod.start_c("made"), FAILED_PRECONDITION, "is running"),
        ("bad id", pod.start_c("../x"), INVALID_ARGUMENT, "container_id"),
        (
            "bad exec id",
            pod.exec("made", "a/b", &["true"]),
            INVALID_ARGUMENT,
            "exec_id",
        ),
        ("bad signal", pod.signal("made", "", 99), INVALID_ARGUMENT, "signal"),
    ];
    for (i, (what, got, code, needle)) in cases.into_iter().enumerate() {
        let (c, msg) = got.expect_err(what);
        assert_eq!(c, code, "test[{i}] {what}: {msg}");
        assert!(msg.contains(needle), "test[{i}] {what}: {msg:?} lacks {needle:?}");
    }
    assert_clean(&pod);
}

/// What CopyFile wrote is in the journal: after a SIGKILL and a restart,
/// DestroySandbox still removes it (a pod's secrets do not outlive it).
#[test]
#[ignore = "needs root"]
fn copied_files_are_removed_by_a_destroy_after_a_restart() {
    let (mut pod, _rootfs) = common::pod::started("cp-restart", false);
    let dir = pod.run_dir().join("shared/cm-restart");
    let file = dir.join("secret");
    let mut r = CopyFileRequest::new();
    (r.path, r.file_size, r.file_mode, r.data) = (file.display().to_string(), 3, 0o100600, b"pw\n".to_vec());
    pod.copy_file(&r).unwrap();
    assert!(file.exists());
    pod.restart(&[], true);
    pod.destroy().unwrap();
    assert!(!file.exists() && !dir.exists(), "copied files outlived the sandbox");
}

/// Containers created and started at once (served on several threads):
/// every one is in the journal, so a restart finds them all as they were.
#[test]
#[ignore = "needs root"]
fn containers_created_at_once_all_survive_a_restart() {
    let (mut pod, rootfs) = common::pod::started("parallel", true);
    let ids: Vec<String> = (0..16).map(|i| format!("par{i}")).collect();
    let reqs: Vec<CreateContainerRequest> = ids
        .iter()
        .map(|id| {
            let mut r = CreateContainerRequest::new();
            (r.container_id, r.exec_id) = (id.clone(), id.clone());
            r.OCI = Some(spec(Some(&rootfs), &["sleep", "300"])).into();
            r
        })
        .collect();
    for (id, r) in ids.iter().zip(pod.send_create_containers_at_once(&reqs)) {
        r.unwrap_or_else(|e| panic!("{id}: {e:?}"));
    }
    for id in &ids {
        pod.start_c(id).unwrap();
    }
    let before = ps(&pod);
    assert_eq!(before.len(), 17, "{before:?}");
    assert!(before.iter().all(|(_, st)| st == "running"), "{before:?}");
    pod.restart(&[], true);
    assert_eq!(ps(&pod), before, "the journal held the newest state");
    assert_clean(&pod);
}
