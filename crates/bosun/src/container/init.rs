//! `bosun init CONFIG`: the helper that becomes a container process and
//! stays behind as its monitor.
//!
//! The agent is multi-threaded, so it never forks to set up a container.
//! It starts this helper (a fresh, single-threaded copy of its own binary);
//! the helper opens what it needs while the agent's view of the system is
//! still its own (namespace files, cgroup files), enters the pid namespace
//! for its child, forks once (into the v2 cgroup), reports the child's pid
//! and becomes the child's monitor (`monitor.rs`): its parent for good,
//! outside the container's namespaces and cgroup, keeping the agent's ends
//! of the child's stdio and recording its exit status where a restarted
//! agent finds it. The child joins a v1 cgroup and the other namespaces,
//! mounts the rootfs, waits for StartContainer when asked to, and execs.
//!
//! Report pipe (fd 4), one `Message` a line (`message.rs`): `Pid` (from
//! the helper), then `Ready` or `Error` (from the child, after set-up);
//! after the start gate, the pipe closes on a successful exec or carries
//! an `Error`.
//! Start gate (fd 3): one byte opens it; EOF aborts.
//! Fds 5 to 9: what the monitor keeps (`monitor.rs`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::init_config::{InitConfig, NsKind, NsMode, Payload, ProcessSpec};
use super::message::Message;
use super::rootfs;
use crate::cgroup::CgroupJoin;
use crate::sys::identity;
use crate::sys::process::{self as sysproc, Forked, NsFlags};

/// The helper's gate fd.
pub const GATE_FD: i32 = 3;
/// The helper's report fd.
pub const REPORT_FD: i32 = 4;

/// Runs the helper; returns the process exit code (it only returns on
/// failure or in the helper parent).
pub fn main(config_path: &Path) -> i32 {
    let mut report = crate::sys::fd::take(REPORT_FD);
    // Nothing above the fixed fds (0 to 9) is the helper's: one the agent
    // inherited without close-on-exec would reach the container's process.
    crate::sys::fd::close_from(crate::sys::spawn::HELPER_FD_END);
    // The helper, and the monitor it becomes, keep the agent's short slice,
    // inherited through vfork and exec (sys/sched.rs).
    // What the monitor keeps is not the process's (its own stdin's write
    // end would keep it from ever reading EOF): the exec closes them.
    for fd in crate::process::monitor::KEPT_FDS {
        let _ = crate::sys::fd::set_cloexec(fd);
    }
    let cfg: InitConfig = match fs::read(config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => return fail(&mut report, &format!("read init config: {e}")),
    };
    let cgroup = match CgroupFiles::open(&cfg.cgroup) {
        Ok(c) => c,
        Err(e) => return fail(&mut report, &e),
    };
    let mut ns = match Namespaces::open(&cfg) {
        Ok(n) => n,
        Err(e) => return fail(&mut report, &e),
    };
    if let Err(e) = ns.enter_pid() {
        return fail(&mut report, &e);
    }
    match fork_child(&cgroup) {
        Err(e) => fail(&mut report, &e),
        Ok((Forked::Parent(pid), _)) => {
            say(&mut report, &Message::Pid(pid));
            drop(report);
            if cfg.wait_for_start {
                // Only then is fd 3 the gate: without one, 3 was free and
                // the helper's own files may have got it.
                crate::sys::fd::close_number(GATE_FD);
            }
            // The monitor keeps its fixed fds only: not the container's
            // cgroup files, not the pod's namespaces.
            drop((cgroup, ns));
            super::monitor::run(pid)
        }
        Ok((Forked::Child, in_cgroup)) => {
            let code = child(&cfg, &cgroup, in_cgroup, &ns, &mut report);
            sysproc::exit_now(code)
        }
    }
}

/// Writes one report line in a single write(2) (see `message.rs`).
fn say(report: &mut File, m: &Message) -> bool {
    report.write_all(&m.line()).is_ok()
}

fn fail(report: &mut File, msg: &str) -> i32 {
    say(report, &Message::Error(msg.to_string()));
    1
}

/// The cgroup files, opened while the agent's /sys/fs/cgroup is still in
/// view (see `Cgroup::join`): the child joins through them, so that the
/// monitor stays out of the container's cgroup (its limits, its freezer,
/// its kill at removal, its process list).
enum CgroupFiles {
    None,
    /// v1: each hierarchy's `tasks` file, written by the child.
    V1(Vec<(File, PathBuf)>),
    /// v2: the directory the child is cloned into, and `cgroup.procs`
    /// for a kernel without CLONE_INTO_CGROUP (before 5.7).
    V2 {
        dir: File,
        procs: File,
        path: PathBuf,
    },
}

impl CgroupFiles {
    fn open(join: &CgroupJoin) -> Result<Self, String> {
        let w = |f: &PathBuf| {
            File::options()
                .write(true)
                .open(f)
                .map_err(|e| format!("open cgroup {}: {e}", f.display()))
        };
        Ok(match join {
            CgroupJoin::None => Self::None,
            CgroupJoin::V1Tasks(files) => Self::V1(
                files
                    .iter()
                    .map(|f| Ok((w(f)?, f.clone())))
                    .collect::<Result<_, String>>()?,
            ),
            CgroupJoin::V2Dir(d) => Self::V2 {
                dir: File::open(d).map_err(|e| format!("open cgroup {}: {e}", d.display()))?,
                procs: w(&d.join("cgroup.procs"))?,
                path: d.clone(),
            },
        })
    }

    /// In the child: joins the cgroup, unless it was born in it.
    fn join(&self, born_in: bool) -> Result<(), String> {
        let write = |mut f: &File, p: &Path| {
            f.write_all(b"0")
                .map_err(|e| format!("join cgroup {}: {e}", p.display()))
        };
        match self {
            Self::None => Ok(()),
            Self::V1(files) => files.iter().try_for_each(|(f, p)| write(f, p)),
            Self::V2 { .. } if born_in => Ok(()),
            Self::V2 { procs, path, .. } => write(procs, path),
        }
    }
}

/// Forks the container's process, into its v2 cgroup when there is one
/// and the kernel has CLONE_INTO_CGROUP; says whether it was born there.
fn fork_child(cgroup: &CgroupFiles) -> Result<(Forked, bool), String> {
    if let CgroupFiles::V2 { dir, path, .. } = cgroup {
        match sysproc::fork_into_cgroup(dir) {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => {}
            r => {
                return r
                    .map(|f| (f, true))
                    .map_err(|e| format!("clone3 into cgroup {}: {e}", path.display()))
            }
        }
    }
    sysproc::fork().map(|f| (f, false)).map_err(|e| format!("fork: {e}"))
}

fn flag(kind: NsKind) -> NsFlags {
    match kind {
        NsKind::Mnt => NsFlags::CLONE_NEWNS,
        NsKind::Uts => NsFlags::CLONE_NEWUTS,
        NsKind::Ipc => NsFlags::CLONE_NEWIPC,
        NsKind::Net => NsFlags::CLONE_NEWNET,
        NsKind::Pid => NsFlags::CLONE_NEWPID,
        NsKind::User => NsFlags::CLONE_NEWUSER,
        NsKind::Cgroup => NsFlags::CLONE_NEWCGROUP,
    }
}

/// The namespaces to join (opened first: the paths go through /proc,
/// which a mount-namespace switch would change) and to create.
struct Namespaces {
    joins: Vec<(NsKind, File)>,
    new: NsFlags,
}

impl Namespaces {
    fn open(cfg: &InitConfig) -> Result<Self, String> {
        let mut joins = Vec::new();
        let mut new = NsFlags::empty();
        for (kind, mode) in &cfg.namespaces {
            match mode {
                NsMode::New => new |= flag(*kind),
                NsMode::Join(p) => joins.push((
                    *kind,
                    File::open(p).map_err(|e| format!("open namespace {}: {e}", p.display()))?,
                )),
            }
        }
        Ok(Self { joins, new })
    }

    /// In the helper, before the fork: the pid namespace (joined or new),
    /// which only the children of a process enter. The helper itself, the
    /// monitor to be, stays in the agent's.
    fn enter_pid(&mut self) -> Result<(), String> {
        if let Some(i) = self.joins.iter().position(|(k, _)| *k == NsKind::Pid) {
            let (_, f) = self.joins.remove(i);
            sysproc::setns(&f, NsFlags::CLONE_NEWPID).map_err(|e| format!("join pid namespace: {e}"))?;
        }
        if self.new.contains(NsFlags::CLONE_NEWPID) {
            self.new.remove(NsFlags::CLONE_NEWPID);
            sysproc::unshare(NsFlags::CLONE_NEWPID).map_err(|e| format!("unshare pid namespace: {e}"))?;
        }
        Ok(())
    }

    /// In the child: the others. A user namespace first (the others are
    /// then joined with its credentials, as runc does); the mount
    /// namespace last: after it, /proc is the container's.
    fn enter_rest(&self) -> Result<(), String> {
        let mut joins: Vec<&(NsKind, File)> = self.joins.iter().collect();
        joins.sort_by_key(|(k, _)| match k {
            NsKind::User => 0,
            NsKind::Mnt => 2,
            _ => 1,
        });
        for (kind, f) in joins {
            sysproc::setns(f, flag(*kind)).map_err(|e| format!("join {} namespace: {e}", kind.proc_name()))?;
        }
        if !self.new.is_empty() {
            sysproc::unshare(self.new).map_err(|e| format!("unshare {:?}: {e}", self.new))?;
        }
        Ok(())
    }
}

fn child(cfg: &InitConfig, cgroup: &CgroupFiles, in_cgroup: bool, ns: &Namespaces, report: &mut File) -> i32 {
    if let Err(e) = cgroup.join(in_cgroup) {
        return fail(report, &e);
    }
    if let Payload::Exec(p) = &cfg.payload {
        if let Err(e) = set_oom_score(p) {
            return fail(report, &e);
        }
    }
    if let Err(e) = ns.enter_rest() {
        return fail(report, &e);
    }
    if let Err(e) = set_up(cfg) {
        return fail(report, &e);
    }
    if cfg.wait_for_start {
        if !say(report, &Message::Ready) {
            return 1;
        }
        let mut gate = crate::sys::fd::take(GATE_FD);
        let mut b = [0u8];
        if !matches!(gate.read(&mut b), Ok(1)) {
            return 1; // the agent gave up on this container
        }
    }
    // The workload runs with the kernel's default slice, not the agent's.
    if let Err(e) = crate::sys::sched::default_slice() {
        return fail(report, &format!("reset the time slice: {e}"));
    }
    match &cfg.payload {
        Payload::BuiltinPause => {
            drop(std::mem::replace(report, crate::sys::fd::dev_null()));
            super::pause::run()
        }
        Payload::Exec(p) => {
            let e = exec(p);
            fail(report, &e)
        }
    }
}

fn set_up(cfg: &InitConfig) -> Result<(), String> {
    // Before the pivot: /proc is still the agent's, and /proc/sys answers
    // for the namespaces this process is now in.
    for (path, value) in &cfg.sysctls {
        let file = Path::new("/proc/sys").join(path);
        fs::write(&file, value).map_err(|e| format!("sysctl {} = {value:?}: {e}", file.display()))?;
    }
    if let Some(root) = &cfg.rootfs {
        rootfs::prepare(
            root,
            &cfg.mounts,
            cfg.readonly_rootfs,
            &cfg.masked_paths,
            &cfg.readonly_paths,
            &cfg.devices,
        )?;
    }
    if let Some(h) = &cfg.hostname {
        sysproc::sethostname(h).map_err(|e| format!("sethostname {h:?}: {e}"))?;
    }
    Ok(())
}

/// Sets the OOM score of the process, in the child before it enters the
/// mount namespace: through the agent's /proc (the container's may
/// have none mounted), inherited by the exec. Lowering it needs
/// CAP_SYS_RESOURCE; an agent without it (never in a guest; some test
/// hosts) leaves the process at the agent's own score rather than fail
/// the pod: kubelet asks -998 for every pause container.
fn set_oom_score(p: &ProcessSpec) -> Result<(), String> {
    match fs::write("/proc/self/oom_score_adj", p.oom_score_adj.to_string()) {
        Err(e) if !(e.kind() == std::io::ErrorKind::PermissionDenied && p.oom_score_adj < 0) => {
            Err(format!("oom_score_adj {}: {e}", p.oom_score_adj))
        }
        _ => Ok(()),
    }
}

/// Sets the process's identity and directory, then execs; returns the
/// reason when it could not.
fn exec(p: &ProcessSpec) -> String {
    if p.terminal.is_some() {
        if let Err(e) = crate::sys::tty::make_controlling() {
            return format!("make the terminal controlling: {e}");
        }
    }
    if let Err(e) = std::env::set_current_dir(&p.cwd) {
        return format!("chdir {}: {e}", p.cwd.display());
    }
    if let Err(e) = identity::set_rlimits(&p.rlimits) {
        return e;
    }
    if let Some(c) = &p.capabilities {
        if let Err(e) = identity::before_credentials(c) {
            return e;
        }
    }
    if let Err(e) = sysproc::set_credentials(p.uid, p.gid, &p.additional_gids) {
        return format!("set uid {} gid {}: {e}", p.uid, p.gid);
    }
    if let Some(c) = &p.capabilities {
        if let Err(e) = identity::after_credentials(c) {
            return e;
        }
    }
    if p.no_new_privileges {
        if let Err(e) = sysproc::set_no_new_privs() {
            return format!("no_new_privs: {e}");
        }
    }
    // execvpe searches the caller's PATH, not the new environment's: take
    // the container's PATH (this helper started with an empty environment).
    if let Some(path) = p.env.iter().find_map(|e| e.strip_prefix("PATH=")) {
        std::env::set_var("PATH", path);
    }
    if let Err(e) = sysproc::reset_signals() {
        return format!("reset signal dispositions: {e}");
    }
    if let Err(e) = crate::sys::fd::set_cloexec(REPORT_FD) {
        return format!("cloexec on report pipe: {e}");
    }
    let err = sysproc::exec(&p.args, &p.env);
    format!("exec {:?}: {err}", p.args.first().map(String::as_str).unwrap_or(""))
}
