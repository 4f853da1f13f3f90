//! The VM's processes (the vsock backend and QEMU): started in a session of
//! their own so that they outlive a restart of the service, known by pid
//! and start time so that a reused pid is never signalled, and found by
//! their command line (which names the VM's directory) when a crash came
//! between starting one and recording it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// A process by pid and start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

/// Starts `cmd` in a new session, in the network namespace `netns` when
/// given.
pub fn spawn(cmd: &mut Command, netns: Option<&File>) -> std::io::Result<(Child, Proc)> {
    let ns_fd = netns.map(|f| f.as_raw_fd());
    // SAFETY: setsid and setns are async-signal-safe system calls; nothing
    // is allocated between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(fd) = ns_fd {
                if libc::setns(fd, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    let start = bosun::process::start_time(pid).unwrap_or(0);
    Ok((child, Proc { pid, start }))
}

/// Whether `p` is still that process and has not exited (a zombie has).
pub fn alive(p: &Proc) -> bool {
    bosun::process::still_runs(p.pid, p.start)
}

/// Stops `p`: SIGTERM, `grace`, then SIGKILL; reaps it when it is our
/// child. A process that is gone, or whose pid now names another process,
/// is left alone.
pub fn stop(p: &Proc, child: Option<Child>, grace: Duration) {
    let signal = |s: Signal| {
        if alive(p) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), s);
        }
    };
    signal(Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    let mut child = child;
    let gone = |child: &mut Option<Child>| match child {
        Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
        None => !alive(p),
    };
    while !gone(&mut child) {
        if Instant::now() >= deadline {
            signal(Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(mut c) = child {
        let _ = c.wait();
    } else {
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live processes of `programs` (by the base name of argv[0]) whose
/// command line names something under `dir` (the VM's directory is in
/// every argument list bosun-podvm builds): a client that merely names the
/// VM's socket is not one of them.
pub fn naming(dir: &Path, programs: &[&str]) -> Vec<Proc> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let base = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
        if !programs.iter().any(|p| p.as_bytes() == base) {
            continue;
        }
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            if let Some(start) = bosun::process::start_time(pid) {
                let p = Proc { pid, start };
                if alive(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}
