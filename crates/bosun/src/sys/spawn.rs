//! Starting bosun's own helper (`bosun init`) with fixed descriptors.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg};

/// The helper's descriptors are numbered below this (see `HelperFds`);
/// every one from it up is closed when the helper starts.
pub const HELPER_FD_END: i32 = 10;

/// Descriptors the helper gets: stdio, fds 3 (gate) and 4 (report), and
/// what its monitor keeps (5 to 9).
pub struct HelperFds {
    /// Becomes fd 0.
    pub stdin: OwnedFd,
    /// Becomes fd 1.
    pub stdout: OwnedFd,
    /// Becomes fd 2.
    pub stderr: OwnedFd,
    /// Becomes fd 3 (start gate), when the helper waits for StartContainer.
    pub gate: Option<OwnedFd>,
    /// Becomes fd 4 (report pipe).
    pub report: OwnedFd,
    /// Each becomes the fd number it is paired with (5 to 9).
    pub keep: Vec<(i32, OwnedFd)>,
}

impl HelperFds {
    /// Each descriptor with the number it gets in the helper.
    pub fn moves(&self) -> Vec<(i32, &OwnedFd)> {
        let mut moves = vec![
            (0, &self.stdin),
            (1, &self.stdout),
            (2, &self.stderr),
            (4, &self.report),
        ];
        if let Some(g) = &self.gate {
            moves.push((3, g));
        }
        moves.extend(self.keep.iter().map(|(to, f)| (*to, f)));
        moves
    }
}

/// Starts `/proc/self/exe init CONFIG`; returns the helper's pid.
pub fn spawn_helper(config: &Path, fds: HelperFds) -> io::Result<u32> {
    let config = CString::new(config.as_os_str().as_bytes()).map_err(io::Error::other)?;
    spawn_exe(&[c"bosun-init", c"init", &config], &fds.moves())
}

/// Starts `/proc/self/exe` with `args` (argv, from argv[0]), an empty
/// environment and each of `fds` at its number; returns the pid.
///
/// posix_spawn, not fork: glibc clones with CLONE_VM|CLONE_VFORK, so the
/// multi-threaded agent's page tables are not copied, and its pages are not
/// left copy-on-write behind a child that execs at once (std's Command
/// forks whenever a `pre_exec` hook is set, which fds 3 and 4 needed).
pub fn spawn_exe(args: &[&CStr], fds: &[(i32, &OwnedFd)]) -> io::Result<u32> {
    let exe = c"/proc/self/exe";
    let argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp = [std::ptr::null::<libc::c_char>()];
    // Every source is first copied to a number >= HIGH_FD, so that no dup2
    // action overwrites the source of a later one (a pipe may have got a
    // number from 0 to 4).
    let high: Vec<(i32, OwnedFd)> = fds
        .iter()
        .map(|(to, f)| Ok((*to, dup_high(f)?)))
        .collect::<io::Result<_>>()?;
    let actions = FileActions::new()?;
    for (to, f) in &high {
        actions.dup2(f.as_raw_fd(), *to)?;
    }
    let attr = SpawnAttr::new()?;
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer is valid for the call: exe, argv and envp are
    // NUL-terminated and outlive it, and actions/attr were initialised.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            exe.as_ptr(),
            &actions.0,
            &attr.0,
            argv.as_ptr() as *const *mut libc::c_char,
            envp.as_ptr() as *const *mut libc::c_char,
        )
    };
    drop(high);
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(pid as u32)
}

/// Lowest number the sources of the dup2 actions are moved to, so that no
/// action can overwrite the source of a later one (above every target).
const HIGH_FD: i32 = 16;

/// A close-on-exec copy of `f` numbered HIGH_FD or above.
fn dup_high(f: &OwnedFd) -> io::Result<OwnedFd> {
    let fd = fcntl(f.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(HIGH_FD))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// posix_spawn_file_actions_t, destroyed on drop.
struct FileActions(libc::posix_spawn_file_actions_t);

impl FileActions {
    fn new() -> io::Result<Self> {
        // SAFETY: zeroed storage is what posix_spawn_file_actions_init fills in.
        let mut a = Self(unsafe { std::mem::zeroed() });
        // SAFETY: a valid pointer to the storage above.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut a.0) })?;
        Ok(a)
    }
    /// In the child, `from` becomes `to` (without FD_CLOEXEC).
    fn dup2(&self, from: i32, to: i32) -> io::Result<()> {
        // SAFETY: initialised actions; glibc copies the numbers.
        check(unsafe { libc::posix_spawn_file_actions_adddup2(&self.0 as *const _ as *mut _, from, to) })
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// posix_spawnattr_t: the child starts with no signal blocked, and SIGPIPE
/// (which the agent ignores) back at its default, as std's Command does.
struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnAttr {
    fn new() -> io::Result<Self> {
        // SAFETY: zeroed storage is what posix_spawnattr_init fills in; the
        // sigset calls get valid pointers to local sets.
        unsafe {
            let mut a = Self(std::mem::zeroed());
            check(libc::posix_spawnattr_init(&mut a.0))?;
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigmask(&mut a.0, &none))?;
            check(libc::posix_spawnattr_setsigdefault(&mut a.0, &pipe))?;
            let flags = libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(&mut a.0, flags as libc::c_short))?;
            Ok(a)
        }
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

fn check(rc: i32) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}
