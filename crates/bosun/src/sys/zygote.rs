//! The zygote: a `bosun init` helper forked from a process that has
//! already exec'd and started, instead of exec'd anew for each container
//! and each ExecProcess (an exec of the 11 MB binary and its start cost
//! about 0.4 ms of every CreateContainer and ExecProcess).
//!
//! The agent starts it once (`bosun-init zygote`, single-threaded, fd 3 a
//! SOCK_SEQPACKET socket to the agent). Per helper, the agent sends the
//! config path and the helper's descriptors (SCM_RIGHTS) with the number
//! each must get; the zygote clones with CLONE_PARENT, so that the helper
//! is the agent's child exactly as one it spawned itself (reaped by the
//! agent's reaper, reparented to the agent's subreaper after a crash), and
//! answers with the helper's pid and a pidfd (CLONE_PIDFD, so the pid
//! names that process whatever the reaper does). In the new process the
//! descriptors are laid out as `spawn::spawn_helper` lays them out, every
//! other one closed (below 10 here, from 10 up by `init::main` in both
//! kinds of helper), and the command line set to `bosun-init init CONFIG`,
//! which is how bosun recognises its monitors after a restart. The zygote
//! ends when the agent's end closes (the agent exited or let it go).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use tokio::io::Interest;

use super::process::{CloneArgs, Forked};
use super::spawn::{HelperFds, HELPER_FD_END};

/// The zygote's end of its socket.
pub const ZYGOTE_FD: i32 = 3;
/// Bound on one request's round trip (a fork); past it the zygote is
/// taken for wedged, ended, and the helper exec'd instead.
const ROUND_TRIP: Duration = Duration::from_secs(2);
/// The zygote's first word: it started and can name its helpers.
const READY: u8 = b'R';
/// The test-only crash point (`BOSUN_CRASH_AT`) in the zygote: it dies
/// after a fork, before its answer.
pub const CRASH_AFTER_FORK: &std::ffi::CStr = c"zygote-after-fork";
/// The zygote's command line (/proc/PID/cmdline), as it sets it.
pub const ZYGOTE_CMDLINE: &[u8] = b"bosun-init\0zygote\0";
/// Longest request: the count, the numbers and a config path.
const MAX_REQUEST: usize = 1 + HELPER_FD_END as usize + libc::PATH_MAX as usize;

/// Why a helper did not come from the zygote.
#[derive(Debug)]
pub enum SpawnError {
    /// The zygote answered with an error (a fork that failed, a request
    /// it refused): it is still up.
    Refused(io::Error),
    /// The request never reached the zygote (it is gone): nothing was
    /// forked, the helper can be exec'd instead.
    Unsent(io::Error),
    /// The zygote took the request and then died or did not answer: it
    /// must be let go, and it may have forked the helper first.
    Lost(io::Error),
}

/// The agent's handle on its zygote.
pub struct Zygote {
    /// Non-blocking after the first word: a round trip is awaited, so a
    /// zygote that does not answer holds no runtime thread.
    sock: tokio::io::unix::AsyncFd<OwnedFd>,
    pidfd: OwnedFd,
    /// The zygote's pid (the agent's child).
    pub pid: i32,
}

impl Zygote {
    /// Starts the zygote and waits for its first word (in a runtime: the
    /// socket is registered with its reactor).
    pub fn start() -> io::Result<Self> {
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        // The zygote runs with an empty environment: a test's crash point
        // in it comes as an argument.
        let args: &[&std::ffi::CStr] = match std::env::var_os("BOSUN_CRASH_AT") {
            Some(v) if v.as_encoded_bytes() == CRASH_AFTER_FORK.to_bytes() => {
                &[c"bosun-init", c"zygote", CRASH_AFTER_FORK]
            }
            _ => &[c"bosun-init", c"zygote"],
        };
        let pid = super::spawn::spawn_exe(args, &[(ZYGOTE_FD, &theirs)])? as i32;
        drop(theirs);
        let pidfd = super::pidfd::open(pid)?;
        let timeout = TimeVal::new(ROUND_TRIP.as_secs() as i64, ROUND_TRIP.subsec_micros() as i64);
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeout)?;
        let mut word = [0u8; 1];
        match nix::sys::socket::recv(ours.as_raw_fd(), &mut word, MsgFlags::empty()) {
            Ok(1) if word[0] == READY => {}
            Ok(_) => return Err(io::Error::other("the zygote exited at start")),
            Err(e) => return Err(io::Error::other(format!("the zygote did not start: {e}"))),
        }
        let sock = super::fd::async_fd(ours)?;
        Ok(Self { sock, pidfd, pid })
    }

    /// Forks a helper running `bosun init CONFIG` with `fds` in place;
    /// returns its pid and a pidfd on it. Bounded by `ROUND_TRIP`.
    pub async fn spawn(&self, config: &Path, fds: &HelperFds) -> Result<(i32, OwnedFd), SpawnError> {
        let moves = fds.moves();
        let mut req = Vec::with_capacity(MAX_REQUEST);
        req.push(moves.len() as u8);
        req.extend(moves.iter().map(|(to, _)| *to as u8));
        req.extend_from_slice(config.as_os_str().as_bytes());
        if req.len() > MAX_REQUEST {
            return Err(SpawnError::Refused(io::Error::other(
                "config path too long for the zygote",
            )));
        }
        let raw: Vec<RawFd> = moves.iter().map(|(_, f)| f.as_raw_fd()).collect();
        let send = |sock: &OwnedFd| {
            sendmsg::<()>(
                sock.as_raw_fd(),
                &[IoSlice::new(&req)],
                &[ControlMessage::ScmRights(&raw)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(io::Error::from)
        };
        // A request is sent whole or not at all (SOCK_SEQPACKET).
        match tokio::time::timeout(ROUND_TRIP, self.sock.async_io(Interest::WRITABLE, send)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(SpawnError::Unsent(e)),
            Err(_) => return Err(SpawnError::Unsent(io::Error::other("the zygote's socket stayed full"))),
        }
        let mut answer = [0u8; 4];
        let recv = |sock: &OwnedFd| recv_with_fds(sock, &mut answer);
        let (n, mut got) = match tokio::time::timeout(ROUND_TRIP, self.sock.async_io(Interest::READABLE, recv)).await {
            Ok(r) => r.map_err(SpawnError::Lost)?,
            Err(_) => {
                return Err(SpawnError::Lost(io::Error::other(format!(
                    "no answer within {ROUND_TRIP:?}"
                ))))
            }
        };
        if n != 4 {
            return Err(SpawnError::Lost(io::Error::other("the zygote closed its socket")));
        }
        let pid = i32::from_le_bytes(answer);
        if pid <= 0 {
            return Err(SpawnError::Refused(io::Error::from_raw_os_error(-pid)));
        }
        match got.pop() {
            Some(pidfd) if got.is_empty() => Ok((pid, pidfd)),
            _ => Err(SpawnError::Lost(io::Error::other(
                "the zygote's answer carried no pidfd",
            ))),
        }
    }
}

impl Drop for Zygote {
    /// Ends it (SIGKILL: it holds nothing), and waits up to a second for
    /// its exit, so that an agent cgroup it was in can be removed next
    /// (the agent's reaper collects it).
    fn drop(&mut self) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let _ = super::pidfd::send_signal(&self.pidfd, nix::sys::signal::Signal::SIGKILL);
        let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
    }
}

/// Receives one message and the descriptors it carries (close-on-exec).
fn recv_with_fds(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; HELPER_FD_END as usize]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS installed these descriptors in this
            // process for this message; nothing else owns them.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    if msg.flags.intersects(MsgFlags::MSG_CTRUNC | MsgFlags::MSG_TRUNC) {
        return Err(io::Error::other("message or descriptors truncated"));
    }
    Ok((msg.bytes, fds))
}

/// The zygote's loop, in `bosun-init zygote`: `Ok(None)` once the agent's
/// end is closed; `Ok(Some(config))` in a newly forked helper, set up to
/// run `bosun init CONFIG`.
pub fn serve(crash_after_fork: bool) -> io::Result<Option<PathBuf>> {
    // SAFETY: the agent passed the socket at this number for this process;
    // it is taken once.
    let sock = unsafe { OwnedFd::from_raw_fd(ZYGOTE_FD) };
    // A helper whose command line cannot be set could not be recognised
    // after a restart: say so by exiting, and the agent execs instead.
    let bounds = mm_bounds()?;
    set_cmdline(ZYGOTE_CMDLINE, &bounds)?;
    nix::sys::socket::send(sock.as_raw_fd(), &[READY], MsgFlags::MSG_NOSIGNAL)?;
    let mut buf = vec![0u8; MAX_REQUEST];
    loop {
        let (n, fds) = recv_with_fds(&sock, &mut buf)?;
        if n == 0 {
            return Ok(None); // the agent's end is closed
        }
        let answer = match parse(&buf[..n], fds.len()) {
            Err(e) => -(e as i32),
            Ok((targets, config)) => {
                let mut pidfd: RawFd = -1;
                match clone_parent(&mut pidfd) {
                    Err(e) => -(e as i32),
                    Ok(Forked::Child) => {
                        let raw: Vec<(i32, RawFd)> =
                            targets.into_iter().zip(fds.iter().map(|f| f.as_raw_fd())).collect();
                        become_helper(&raw, &config, &bounds);
                        // Laid out or closed by become_helper and init::main.
                        std::mem::forget(fds);
                        std::mem::forget(sock);
                        return Ok(Some(config));
                    }
                    Ok(Forked::Parent(pid)) => {
                        if crash_after_fork {
                            eprintln!("bosun: zygote: BOSUN_CRASH_AT={CRASH_AFTER_FORK:?}: aborting here on purpose");
                            std::process::abort();
                        }
                        // SAFETY: CLONE_PIDFD stored a new descriptor of ours.
                        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
                        let _ = sendmsg::<()>(
                            sock.as_raw_fd(),
                            &[IoSlice::new(&pid.to_le_bytes())],
                            &[ControlMessage::ScmRights(&[pidfd.as_raw_fd()])],
                            MsgFlags::MSG_NOSIGNAL,
                            None,
                        );
                        continue;
                    }
                }
            }
        };
        let _ = nix::sys::socket::send(sock.as_raw_fd(), &answer.to_le_bytes(), MsgFlags::MSG_NOSIGNAL);
    }
}

/// A request: the target number of each descriptor, and the config path.
fn parse(req: &[u8], nfds: usize) -> Result<(Vec<i32>, PathBuf), nix::errno::Errno> {
    let count = *req.first().ok_or(nix::errno::Errno::EINVAL)? as usize;
    let targets: Vec<i32> = req
        .get(1..1 + count)
        .ok_or(nix::errno::Errno::EINVAL)?
        .iter()
        .map(|b| *b as i32)
        .collect();
    let config = &req[1 + count..];
    if count != nfds || config.is_empty() || targets.iter().any(|t| *t >= HELPER_FD_END) {
        return Err(nix::errno::Errno::EINVAL);
    }
    Ok((targets, PathBuf::from(std::ffi::OsStr::from_bytes(config))))
}

/// clone3(CLONE_PARENT | CLONE_PIDFD): the child is the agent's, not
/// ours; `pidfd` gets a pidfd on it.
fn clone_parent(pidfd: &mut RawFd) -> Result<Forked, nix::errno::Errno> {
    super::process::clone3(&CloneArgs {
        flags: (libc::CLONE_PARENT | libc::CLONE_PIDFD) as u64,
        pidfd: pidfd as *mut RawFd as u64,
        // With CLONE_PARENT the exit signal is the zygote's own (SIGCHLD,
        // to the agent); clone3 wants 0 here.
        exit_signal: 0,
        ..CloneArgs::default()
    })
}

/// In the forked helper: each descriptor to its number (as posix_spawn's
/// dup2 actions do for an exec'd helper), every other one below
/// HELPER_FD_END closed, and the command line `bosun-init init CONFIG`.
/// Exits on failure: the agent then reads EOF on the report pipe, "helper
/// exited during set-up".
fn become_helper(fds: &[(i32, RawFd)], config: &Path, bounds: &MmMap) {
    if arrange(fds).is_err() {
        super::process::exit_now(127);
    }
    let mut cmdline = b"bosun-init\0init\0".to_vec();
    cmdline.extend_from_slice(config.as_os_str().as_bytes());
    cmdline.push(0);
    if set_cmdline(&cmdline, bounds).is_err() {
        super::process::exit_now(127);
    }
}

fn arrange(fds: &[(i32, RawFd)]) -> Result<(), nix::errno::Errno> {
    // First above every target, so that no dup2 overwrites a later source.
    let mut high = Vec::with_capacity(fds.len());
    for (to, fd) in fds {
        high.push((
            *to,
            nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HELPER_FD_END))?,
        ));
    }
    for (to, h) in &high {
        nix::unistd::dup2(*h, *to)?; // clears FD_CLOEXEC on `to`
    }
    for n in (0..HELPER_FD_END).filter(|n| !high.iter().any(|(to, _)| to == n)) {
        let _ = nix::unistd::close(n);
    }
    // The rest, from HELPER_FD_END up (the copies above, what the zygote
    // received, anything it inherited), `init::main` closes first thing,
    // for exec'd helpers as well.
    Ok(())
}

/// Points this process's command line (/proc/PID/cmdline) at `args`
/// (NUL-separated, NUL-ended) in a page of its own, kept for the life of
/// the process. PR_SET_MM_MAP (CONFIG_CHECKPOINT_RESTORE, no capability),
/// else PR_SET_MM_ARG_START/END (CAP_SYS_RESOURCE), as systemd renames
/// its processes.
fn set_cmdline(args: &[u8], bounds: &MmMap) -> io::Result<()> {
    debug_assert!(args.ends_with(&[0]));
    let len = args.len();
    // SAFETY: a fresh private anonymous mapping, written within its length
    // and never unmapped (the kernel reads the command line from it).
    let addr = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::copy_nonoverlapping(args.as_ptr(), p as *mut u8, len);
        p as u64
    };
    let end = addr + len as u64;
    match set_mm_map(bounds, addr, end) {
        Ok(()) => Ok(()),
        Err(map_err) => set_arg_bounds(addr, end)
            .map_err(|e| io::Error::other(format!("PR_SET_MM_MAP: {map_err}; PR_SET_MM_ARG_START: {e}"))),
    }
}

/// The kernel's `struct prctl_mm_map`.
#[repr(C)]
#[derive(Clone, Copy)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// PR_SET_MM_MAP with every bound as it is (/proc/self/stat) but the
/// arguments'.
fn set_mm_map(bounds: &MmMap, arg_start: u64, arg_end: u64) -> io::Result<()> {
    // SAFETY: brk(0) only reports the current break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0usize) } as u64;
    let map = MmMap {
        brk,
        arg_start,
        arg_end,
        ..*bounds
    };
    // SAFETY: PR_SET_MM_MAP reads a struct of the size given.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP,
            &map as *const MmMap as libc::c_ulong,
            std::mem::size_of::<MmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's memory bounds as /proc/self/stat gives them, but the
/// arguments' and the break (set per call). Read once in the zygote: its
/// forks have the same code, data, stack and environment, and reading
/// /proc/self/stat in each cost a tenth of a millisecond.
fn mm_bounds() -> io::Result<MmMap> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which may hold spaces: field N of
    // proc(5) is at N - 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    let at = |n: usize| {
        f.get(n - 3)
            .copied()
            .ok_or_else(|| io::Error::other("short /proc/self/stat"))
    };
    Ok(MmMap {
        start_code: at(26)?,
        end_code: at(27)?,
        start_stack: at(28)?,
        start_data: at(45)?,
        end_data: at(46)?,
        start_brk: at(47)?,
        brk: 0,
        arg_start: 0,
        arg_end: 0,
        env_start: at(50)?,
        env_end: at(51)?,
        auxv: 0,
        auxv_size: 0,     // the saved auxv stays
        exe_fd: u32::MAX, // the exe link stays
    })
}

/// PR_SET_MM_ARG_START and _END, in the order that keeps start <= end at
/// each step (it depends on where the new page lies against the old
/// arguments).
fn set_arg_bounds(start: u64, end: u64) -> io::Result<()> {
    let set = |what: libc::c_int, at: u64| {
        // SAFETY: PR_SET_MM with an address in this process's own mapping.
        match unsafe {
            libc::prctl(
                libc::PR_SET_MM,
                what,
                at as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    };
    if set(libc::PR_SET_MM_ARG_START, start).is_ok() {
        set(libc::PR_SET_MM_ARG_END, end)
    } else {
        set(libc::PR_SET_MM_ARG_END, end)?;
        set(libc::PR_SET_MM_ARG_START, start)
    }
}
