//! `bosun init CONFIG`: the helper that becomes a container process.
//!
//! The agent is multi-threaded, so it never forks to set up a container.
//! It starts this helper (a fresh, single-threaded copy of its own binary);
//! the helper enters or creates the namespaces, forks once so the child is
//! inside the new pid namespace, reports the child's pid and exits. The
//! child, reparented to the agent (a subreaper), mounts the rootfs, waits
//! for StartContainer when asked to, and execs the process.
//!
//! Report pipe (fd 4), one `Message` a line (`message.rs`): `Pid` (from
//! the helper), then `Ready` or `Error` (from the child, after set-up);
//! after the start gate, the pipe closes on a successful exec or carries
//! an `Error`.
//! Start gate (fd 3): one byte opens it; EOF aborts.

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
    let cfg: InitConfig = match fs::read(config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => return fail(&mut report, &format!("read init config: {e}")),
    };
    let v2_cgroup = match join_cgroup(&cfg.cgroup) {
        Ok(d) => d,
        Err(e) => return fail(&mut report, &e),
    };
    if let Payload::Exec(p) = &cfg.payload {
        if let Err(e) = set_oom_score(p) {
            return fail(&mut report, &e);
        }
    }
    if let Err(e) = enter_namespaces(&cfg) {
        return fail(&mut report, &e);
    }
    match fork_child(v2_cgroup) {
        Err(e) => fail(&mut report, &e),
        Ok(Forked::Parent(pid)) => {
            say(&mut report, &Message::Pid(pid));
            0
        }
        Ok(Forked::Child) => {
            let code = child(&cfg, &mut report);
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

/// Joins a v1 cgroup at once, while the agent's /sys/fs/cgroup is still in
/// view (see `Cgroup::join`); a v2 one is opened here and entered by the
/// fork. Everything forked from here on is accounted there.
fn join_cgroup(join: &CgroupJoin) -> Result<Option<(File, PathBuf)>, String> {
    match join {
        CgroupJoin::None => Ok(None),
        CgroupJoin::V1Tasks(files) => {
            for f in files {
                fs::write(f, "0").map_err(|e| format!("join cgroup {}: {e}", f.display()))?;
            }
            Ok(None)
        }
        CgroupJoin::V2Dir(d) => {
            let dir = File::open(d).map_err(|e| format!("open cgroup {}: {e}", d.display()))?;
            Ok(Some((dir, d.clone())))
        }
    }
}

/// Forks the container's process, into its v2 cgroup when there is one.
/// A kernel without CLONE_INTO_CGROUP (before 5.7): the helper joins by
/// writing cgroup.procs, and forks.
fn fork_child(v2_cgroup: Option<(File, PathBuf)>) -> Result<Forked, String> {
    if let Some((dir, path)) = v2_cgroup {
        match sysproc::fork_into_cgroup(&dir) {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => {
                let procs = path.join("cgroup.procs");
                fs::write(&procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
            }
            r => return r.map_err(|e| format!("clone3 into cgroup {}: {e}", path.display())),
        }
    }
    sysproc::fork().map_err(|e| format!("fork: {e}"))
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

/// Opens every namespace to join first (the paths go through /proc, which
/// a mount-namespace switch would change), then joins, then unshares.
fn enter_namespaces(cfg: &InitConfig) -> Result<(), String> {
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
    // A user namespace first (the others are then joined with its
    // credentials, as runc does); the mount namespace last: after it,
    // /proc is the container's.
    joins.sort_by_key(|(k, _)| match k {
        NsKind::User => 0,
        NsKind::Mnt => 2,
        _ => 1,
    });
    for (kind, f) in &joins {
        sysproc::setns(f, flag(*kind)).map_err(|e| format!("join {} namespace: {e}", kind.proc_name()))?;
    }
    if !new.is_empty() {
        sysproc::unshare(new).map_err(|e| format!("unshare {new:?}: {e}"))?;
    }
    Ok(())
}

fn child(cfg: &InitConfig, report: &mut File) -> i32 {
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

/// Sets the OOM score the process will have, in the helper, before any
/// namespace is entered: through the agent's /proc (the container's may
/// have none mounted), inherited by the fork. Lowering it needs
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
