//! Process and namespace calls: subreaper, signals, waitpid, fork, setns,
//! unshare, exec, credentials.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

pub use nix::sched::CloneFlags as NsFlags;

/// Makes orphaned descendants (container inits whose helper exited) our
/// children, so bosun reaps them and learns their exit status.
pub fn set_child_subreaper() -> Result<(), Errno> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Sends `sig` (0: existence check) to `pid`.
pub fn kill(pid: i32, sig: i32) -> Result<(), Errno> {
    let sig = if sig == 0 { None } else { Some(Signal::try_from(sig)?) };
    nix::sys::signal::kill(Pid::from_raw(pid), sig)
}

/// One exit collected by the reaper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The process that ended.
    pub pid: i32,
    /// Exit code, or 128 + signal number for a signal death (shell convention).
    pub status: i32,
}

/// Reaps one exited child without blocking; `None` when none is left.
pub fn reap_one() -> Option<Exit> {
    wait_nohang(Pid::from_raw(-1)).ok().flatten()
}

/// waitpid(`pid`, WNOHANG): the exit of a child it names, reaped; `None`
/// while none has exited; stops and continues are skipped.
fn wait_nohang(pid: Pid) -> Result<Option<Exit>, Errno> {
    loop {
        let (pid, status) = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) | Err(Errno::EINTR) => continue, // stopped/continued: not an exit
            Err(e) => return Err(e),
        };
        return Ok(Some(Exit {
            pid: pid.as_raw(),
            status,
        }));
    }
}

/// Where a fork left us.
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// fork(2). Only called from bosun's single-threaded helper processes
/// (`bosun init`), never from the multi-threaded agent.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: the caller is a freshly exec'd, single-threaded helper, so the
    // child cannot inherit a lock held by another thread.
    match unsafe { nix::unistd::fork()? } {
        ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw())),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// clone3(2)'s arguments up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
#[repr(C)]
#[derive(Default)]
pub(super) struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(2) with the child born in the v2 cgroup `dir` (clone3 with
/// CLONE_INTO_CGROUP): no migration, so no wait on the cgroup threadgroup
/// lock's RCU grace period. ENOSYS or E2BIG: a kernel before 5.7. Only from
/// the single-threaded helper, as `fork`.
pub fn fork_into_cgroup(dir: &File) -> Result<Forked, Errno> {
    clone3(&CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..CloneArgs::default()
    })
}

/// clone3(2) without CLONE_VM, as a fork: only from bosun's
/// single-threaded helpers (and the zygote).
pub(super) fn clone3(args: &CloneArgs) -> Result<Forked, Errno> {
    // SAFETY: as `fork`: a single-threaded caller, and no CLONE_VM, so the
    // child runs on its own copy of this stack; `args` (and what it points
    // to) outlives the call. Unlike glibc's fork, a raw clone3 leaves the
    // parent's tid in the child's thread descriptor, so the child must not
    // use what reads it (pthread calls; glibc's raise asks the kernel): it
    // runs bosun's helper code, plain syscalls and exec, or the pause, as
    // crun's clone3 child does.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Enters the namespace `ns` (an open /proc/PID/ns/* file).
pub fn setns(ns: &File, kind: CloneFlags) -> Result<(), Errno> {
    nix::sched::setns(ns.as_fd(), kind)
}

/// Leaves the current namespaces of the kinds in `flags` for new ones.
pub fn unshare(flags: CloneFlags) -> Result<(), Errno> {
    nix::sched::unshare(flags)
}

/// sethostname(2) in the current UTS namespace.
pub fn sethostname(name: &str) -> Result<(), Errno> {
    nix::unistd::sethostname(name)
}

/// Sets supplementary groups, gid and uid, in that order (each step needs
/// the privileges the next one drops).
pub fn set_credentials(uid: u32, gid: u32, groups: &[u32]) -> Result<(), Errno> {
    let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups)?;
    nix::unistd::setresgid(Gid::from_raw(gid), Gid::from_raw(gid), Gid::from_raw(gid))?;
    nix::unistd::setresuid(Uid::from_raw(uid), Uid::from_raw(uid), Uid::from_raw(uid))
}

/// PR_SET_NO_NEW_PRIVS.
pub fn set_no_new_privs() -> Result<(), Errno> {
    nix::sys::prctl::set_no_new_privs()
}

/// Makes this process die with SIGKILL when its parent exits.
pub fn set_parent_death_kill() -> Result<(), Errno> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
}

/// execvpe(3): replaces this process; returns only on failure.
pub fn exec(args: &[String], env: &[String]) -> Errno {
    let to_c = |v: &[String]| {
        v.iter()
            .map(|s| CString::new(s.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
    };
    match (to_c(args), to_c(env)) {
        (Ok(a), Ok(e)) if !a.is_empty() => match nix::unistd::execvpe(&a[0], &a, &e) {
            Err(e) => e,
            Ok(never) => match never {},
        },
        _ => Errno::EINVAL,
    }
}

/// Ends this process at once, without running destructors or atexit
/// handlers (used in forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Restores default dispositions for every catchable signal and clears the
/// signal mask. The agent (like every Rust program) ignores SIGPIPE, and
/// ignored signals survive exec: without this, `yes | head` in a container
/// would spin forever on EPIPE.
pub fn reset_signals() -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow};
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: installing SIG_DFL runs no handler code; it only restores
        // the kernel's default action.
        unsafe { sigaction(sig, &dfl)? };
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Sets CLOCK_REALTIME. Only called when bosun is the guest's init.
pub fn set_realtime(sec: i64, usec: i64) -> Result<(), Errno> {
    let ts = nix::sys::time::TimeSpec::new(sec, usec * 1000);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
}

/// The agent's effective uid.
pub fn effective_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Blocks `signals` for the calling thread (they stay pending for
/// `wait_signal`), as a process that handles them with sigwait does.
pub fn block_signals(signals: &[nix::sys::signal::Signal]) -> Result<nix::sys::signal::SigSet, Errno> {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    let mut set = SigSet::empty();
    for s in signals {
        set.add(*s);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    Ok(set)
}

/// Major and minor numbers of a device number.
pub fn dev_numbers(rdev: u64) -> (u64, u64) {
    (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

/// Gives the allocator's free heap back to the kernel (glibc's
/// malloc_trim): after a sandbox is destroyed, the memory its containers'
/// bookkeeping and I/O buffers used is free but still resident.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The exit status of child `pid` (exit code, or 128 + signal), reaping
/// it, without blocking: `None` while it runs. `Err` when it is not our
/// child (any more).
pub fn try_wait_child(pid: i32) -> Result<Option<i32>, Errno> {
    wait_nohang(Pid::from_raw(pid)).map(|e| e.map(|e| e.status))
}

/// Ignores SIGPIPE: a write to a pipe nobody reads fails with EPIPE
/// instead of ending the writer (a monitor whose agent is down).
pub fn ignore_sigpipe() -> Result<(), Errno> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no handler code.
    unsafe { sigaction(Signal::SIGPIPE, &ign) }.map(|_| ())
}
