//! What a process leaves for the runtime survives bosun's restart (root):
//! its exit status, whether it ended while bosun was up, down or back; its
//! output written while nobody read or bosun was down; its stdin and its
//! terminal. Each process's monitor (`bosun init`, its parent) keeps them.
//! This is bosun when it is not the guest's PID 1 (as PID 1 its death ends
//! the VM).

mod common;

use std::path::Path;

use common::pod::{spec, started, Pod};

/// A shell that waits for `flag` to appear in the rootfs, then `then`.
fn when(flag: &str, then: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("while [ ! -e /{flag} ]; do usleep 20000; done; {then}"),
    ]
}

/// The four endings and the status WaitProcess must give for each.
const ENDINGS: [(&str, i32); 4] = [
    ("exit 0", 0),
    ("exit 7", 7),
    ("kill -KILL $$", 137),
    ("kill -TERM $$", 143),
];

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The monitors running from the pod's run directory: pid and argv.
fn monitors(pod: &Pod) -> Vec<(i32, String)> {
    let run = pod.run_dir();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            (cmd.starts_with("bosun-init init ") && cmd.contains(run.to_str().unwrap())).then_some((pid, cmd))
        })
        .collect()
}

/// No monitor runs from the pod's run directory.
fn no_monitor_left(pod: &Pod) {
    let left = monitors(pod);
    assert!(left.is_empty(), "monitors left: {left:?}");
}

/// A pod with a running container `w` to exec in.
fn with_worker(hostname: &str) -> Pod {
    let (pod, rootfs) = started(hostname, false);
    pod.create("w", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("w").unwrap();
    pod
}

fn flag(rootfs: &Path, name: &str) {
    std::fs::write(rootfs.join(name), b"").unwrap();
}

#[test]
#[ignore = "needs root"]
fn statuses_survive_a_restart_whenever_the_process_ended() {
    let (mut pod, rootfs) = started("statuses", true);
    pod.create("host", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("host").unwrap();
    // For each ending: a container and an exec that end before the
    // restart (bosun up), while bosun is down, and after the restart.
    let phases = ["before", "down", "after"];
    for phase in phases {
        for (i, (then, _)) in ENDINGS.iter().enumerate() {
            let cid = format!("{phase}-c{i}");
            pod.create(&cid, spec(Some(&rootfs), &args(&when(phase, then))))
                .unwrap();
            pod.start_c(&cid).unwrap();
            pod.exec("host", &format!("{phase}-e{i}"), &args(&when(phase, then)))
                .unwrap();
        }
    }
    flag(&rootfs, "before");
    for (i, (_, want)) in ENDINGS.iter().enumerate() {
        assert_eq!(pod.wait(&format!("before-c{i}"), "").unwrap(), *want);
        assert_eq!(pod.wait("host", &format!("before-e{i}")).unwrap(), *want);
    }
    // Down: SIGKILL, the processes end, then bosun comes back.
    pod.agent.kill9();
    flag(&rootfs, "down");
    // bosun comes back only once every "down" process has ended: its
    // monitor has written its exit file.
    let containers = pod.run_dir().join("containers");
    let files: Vec<_> = (0..ENDINGS.len())
        .flat_map(|i| {
            [
                containers.join(format!("down-c{i}/exit-down-c{i}")),
                containers.join(format!("host/exit-down-e{i}")),
            ]
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !files.iter().all(|f| std::fs::read(f).is_ok_and(|b| b.ends_with(b"\n"))) {
        assert!(
            std::time::Instant::now() < deadline,
            "the processes did not end while bosun was down"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pod.agent.respawn(&[]);
    pod.agent.wait_ready();
    pod.reconnect();
    flag(&rootfs, "after");
    for phase in phases {
        for (i, (then, want)) in ENDINGS.iter().enumerate() {
            let got_c = pod.wait(&format!("{phase}-c{i}"), "").unwrap();
            let got_e = pod.wait("host", &format!("{phase}-e{i}")).unwrap();
            assert_eq!(
                (got_c, got_e),
                (*want, *want),
                "{phase}: a container and an exec that ran `{then}`"
            );
        }
    }
    pod.destroy().unwrap();
    no_monitor_left(&pod);
}

#[test]
#[ignore = "needs root"]
fn output_written_across_ten_restarts_arrives_whole_and_in_order() {
    let mut pod = with_worker("output");
    // 300,000 numbered lines (2.3 MB, more than the 2 MiB pipe), written
    // as fast as the shell can while bosun is killed and restarted.
    const LINES: usize = 300_000;
    pod.exec("w", "writer", &["sh", "-c", &format!("seq 1 {LINES}; echo done >&2")])
        .unwrap();
    let want: Vec<u8> = (1..=LINES).map(|i| format!("{i}\n")).collect::<String>().into_bytes();
    let mut got = Vec::new();
    for round in 0..10 {
        // Some reads, then a SIGKILL at whatever point the writer is.
        for _ in 0..3 {
            got.extend(pod.read_some("w", "writer", 64 << 10));
        }
        pod.restart(&[], true);
        assert!(
            got.len() < want.len(),
            "round {round}: the writer finished too early to test anything"
        );
    }
    got.extend(pod.read_all("w", "writer", false).unwrap());
    assert_eq!(pod.read_all("w", "writer", true).unwrap(), b"done\n");
    assert_eq!(pod.wait("w", "writer").unwrap(), 0);
    assert!(
        got == want,
        "stdout: {} bytes, {} expected, fnv {:x} vs {:x}; first difference at {:?}",
        got.len(),
        want.len(),
        bosun::journal::fnv64(&got),
        bosun::journal::fnv64(&want),
        got.iter().zip(&want).position(|(a, b)| a != b)
    );
    pod.destroy().unwrap();
    no_monitor_left(&pod);
}

#[test]
#[ignore = "needs root"]
fn stdin_and_a_terminal_work_after_a_restart() {
    let mut pod = with_worker("stdin");
    pod.exec("w", "cat", &["cat"]).unwrap();
    assert_eq!(pod.write("w", "cat", b"before\n").unwrap(), 7);
    pod.exec_tty("w", "tty", &["sh", "-c", "read x; stty size; echo got $x"], 30, 100)
        .unwrap();
    pod.restart(&[], true);
    // cat did not see EOF while bosun was down; it reads what comes after.
    assert_eq!(pod.write("w", "cat", b"after\n").unwrap(), 6);
    assert_eq!(pod.write("w", "cat", b"").unwrap(), 0); // CloseStdin
    assert_eq!(pod.read_all("w", "cat", false).unwrap(), b"before\nafter\n");
    assert_eq!(pod.wait("w", "cat").unwrap(), 0);
    pod.resize("w", "tty", 40, 120).unwrap();
    pod.write("w", "tty", b"go\n").unwrap();
    let out = String::from_utf8(pod.read_all("w", "tty", false).unwrap()).unwrap();
    assert!(
        out.contains("40 120"),
        "size after the restart's resize not seen: {out:?}"
    );
    assert!(out.contains("got go"), "{out:?}");
    assert_eq!(pod.wait("w", "tty").unwrap(), 0);
    pod.destroy().unwrap();
    no_monitor_left(&pod);
}

/// The monitor of `exec_id` (a `bosun init` running from its config).
fn monitor_of(pod: &Pod, exec_id: &str) -> i32 {
    let config = format!("exec-{exec_id}.json");
    monitors(pod)
        .into_iter()
        .find_map(|(pid, cmd)| cmd.trim_end().ends_with(&config).then_some(pid))
        .expect("the exec's monitor")
}

#[test]
#[ignore = "needs root"]
fn a_monitor_killed_by_someone_else_leaves_its_process_to_bosun() {
    let pod = with_worker("monitor");
    pod.exec("w", "x", &["sleep", "300"]).unwrap();
    let m = monitor_of(&pod, "x");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(m), nix::sys::signal::Signal::SIGKILL).unwrap();
    // Reparented to bosun (a subreaper): bosun reaps it and has its status.
    pod.signal("w", "x", 15).unwrap();
    assert_eq!(pod.wait("w", "x").unwrap(), 143);
    pod.destroy().unwrap();
    no_monitor_left(&pod);
}

#[test]
#[ignore = "needs root"]
fn an_exec_a_crash_kept_out_of_the_record_is_ended_by_the_containers_remove() {
    let mut pod = with_worker("unrecorded");
    pod.restart(&[("BOSUN_CRASH_AT", "exec-after-spawn")], true);
    assert!(pod.exec("w", "lost", &["sleep", "300"]).is_err());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while pod.agent.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "bosun did not crash at exec-after-spawn"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The exec's monitor runs, and no record of bosun's names it.
    let lost = monitor_of(&pod, "lost");
    pod.restart(&[], true);
    assert_eq!(
        pod.wait("w", "lost").unwrap_err().0,
        ttrpc::Code::NOT_FOUND,
        "the crash came before the exec was recorded"
    );
    assert!(monitors(&pod).iter().any(|(pid, _)| *pid == lost));
    // The re-adopted container's remove finds it by its config and ends it.
    pod.remove("w").unwrap();
    common::eventually("the unrecorded exec's monitor is gone", || {
        !monitors(&pod).iter().any(|(pid, _)| *pid == lost)
    });
    pod.destroy().unwrap();
    no_monitor_left(&pod);
}
