//! `--load N`: N CPU hogs (stress-ng) standing for the pod's workload,
//! while every row is measured a second time. The hogs run in a cgroup of
//! their own (`bosun-bench-load`, in the cpu controller's hierarchy, v2 or
//! v1), as a pod's containers do, never in the bench's or the agent's.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const GROUP: &str = "bosun-bench-load";

/// The running hogs; stopped (by pid) and their cgroup removed when dropped.
pub struct Load {
    child: Child,
    cgroup: PathBuf,
}

/// Where the cpu controller is: the unified hierarchy when it offers
/// `cpu`, else v1's cpu hierarchy.
fn cpu_hierarchy() -> Result<PathBuf, String> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if v2.split_whitespace().any(|c| c == "cpu") {
        return Ok(PathBuf::from("/sys/fs/cgroup"));
    }
    for p in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
        if std::path::Path::new(p).join("cgroup.procs").exists() {
            return Ok(PathBuf::from(p));
        }
    }
    Err("no cgroup hierarchy with the cpu controller".into())
}

impl Load {
    /// Starts `n` stress-ng CPU workers in their cgroup.
    pub fn start(n: usize) -> Result<Self, String> {
        let cgroup = cpu_hierarchy()?.join(GROUP);
        match std::fs::create_dir(&cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", cgroup.display())),
        }
        let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").into_os_string().into_encoded_bytes())
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new("stress-ng");
        cmd.args(["--cpu", &n.to_string(), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Into the cgroup before exec, so that every worker it forks is
        // born there. open/write/close only: async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let r = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if r != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "stress-ng not found (scripts/setup.sh bench installs it)".to_string(),
            _ => format!("start stress-ng: {e}"),
        })?;
        // Let the workers fork and spin up before anything is measured.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Load { child, cgroup })
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // stress-ng stops its workers on SIGTERM; whatever is still in the
        // hogs' cgroup after that is a hog too (every process there is
        // ours), and is killed.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() {
                return;
            }
            let procs = std::fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("bosun-bench: could not remove {}", self.cgroup.display());
    }
}

/// The running hogs, stopped by `stop` when the bench fails half-way
/// (`std::process::exit` runs no destructor).
static RUNNING: std::sync::Mutex<Option<Load>> = std::sync::Mutex::new(None);

/// Starts the hogs (see `Load::start`); they run until `stop`.
pub fn run(n: usize) -> Result<(), String> {
    let l = Load::start(n)?;
    *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
    Ok(())
}

/// Stops the hogs, if any run.
pub fn stop() {
    let l = RUNNING.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(l);
}

/// Starts `cmd` in a session of its own. With autogroup scheduling (on by
/// default on most distributions) the CPU scheduler groups the processes
/// of a session: an agent in the bench's session would share one group
/// with the bench's own client, as no agent does in a pod VM (its client
/// is on the host), and the group's share of a busy CPU would be split
/// between them. Each agent gets its own session, so its own group.
pub fn in_own_session(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
