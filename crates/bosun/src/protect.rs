//! Self-protection: what bosun refuses because it would cut off its own
//! control plane. Every refusal is PERMISSION_DENIED and names the rule and
//! the target; nothing is changed.
//!
//! The mount rules are general, not a list of bad requests:
//! - a mount bosun makes in its own namespace (a storage) may not be at,
//!   above or below a path the agent itself needs to work: the kernel
//!   filesystems it works through (`/proc`, `/sys` with the cgroup
//!   hierarchy, `/dev`) and its own files (socket, binary, run directory,
//!   image store);
//! - a bind source (a `bind` storage, an OCI bind mount, overlay layers
//!   named by the request, a watchable-bind source) may not be or hold
//!   one of the agent's own files: no container ever sees the journal,
//!   the socket or the image store. The copy area CopyFile writes to
//!   (`<run-dir>/shared`) and the sandbox's own files (`<run-dir>/sandbox`,
//!   resolv.conf) are the exceptions, as runtimes bind from them.

use std::path::{Component, Path, PathBuf};

use crate::error::AgentError;

/// The kernel filesystems the agent works through: covering one (a tmpfs
/// over `/proc`, `/dev` or `/sys/fs/cgroup`) breaks every later container
/// and the agent's own view of its mounts and processes.
const SYSTEM_PATHS: [(&str, &str); 3] = [
    ("/proc", "the guest's /proc (processes, mountinfo)"),
    ("/sys", "the guest's /sys (devices, cgroups)"),
    ("/dev", "the guest's /dev (nodes, terminals)"),
];

/// bosun's own process and files.
#[derive(Clone, Debug)]
pub struct Guard {
    own_pid: i32,
    is_pid1: bool,
    /// The socket file, binary, run dir and image store, resolved
    /// (symlinks followed).
    files: Vec<(&'static str, PathBuf)>,
    run_dir: PathBuf,
}

/// `p` with symlinks resolved as far as it exists, the rest appended: what
/// a mount(2) or open(2) on `p` would really touch.
pub fn resolve(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for n in rest.into_iter().rev() {
        out.push(n);
    }
    out.components().filter(|c| *c != Component::CurDir).collect()
}

impl Guard {
    /// The guard for this process, serving on `socket` (a unix path, if
    /// any) with state under `run_dir` and pulled images under `image_dir`.
    pub fn new(socket: Option<&Path>, run_dir: &Path, image_dir: &Path) -> Self {
        let mut files = Vec::new();
        if let Some(s) = socket {
            files.push(("the agent's socket", resolve(s)));
        }
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            files.push(("the agent's binary", resolve(&exe)));
        }
        let image_dir = resolve(image_dir);
        let run_dir = resolve(run_dir);
        if !image_dir.starts_with(&run_dir) {
            files.push(("the agent's image store", image_dir));
        }
        files.push(("the agent's run directory", run_dir.clone()));
        Self {
            own_pid: std::process::id() as i32,
            is_pid1: std::process::id() == 1,
            files,
            run_dir,
        }
    }

    fn refuse(rule: &'static str, target: impl Into<String>) -> AgentError {
        AgentError::Protected {
            rule,
            target: target.into(),
        }
    }

    /// A pid bosun may signal: not itself, not the guest's init (unless
    /// bosun is that init), not a process group or broadcast.
    pub fn check_pid(&self, pid: i32) -> Result<(), AgentError> {
        if pid <= 0 {
            return Err(Self::refuse("signal a process group or every process", pid.to_string()));
        }
        if pid == self.own_pid {
            return Err(Self::refuse("signal the agent itself", format!("pid {pid}")));
        }
        if pid == 1 && !self.is_pid1 {
            return Err(Self::refuse("signal the guest's init", "pid 1"));
        }
        Ok(())
    }

    /// A mount target bosun may mount on in its own namespace: not at,
    /// above or below one of the agent's files or the kernel filesystems
    /// it needs (see the module's rules).
    pub fn check_mount_target(&self, target: &Path) -> Result<(), AgentError> {
        let t = resolve(target);
        let system = SYSTEM_PATHS.iter().map(|(p, what)| (*what, PathBuf::from(p)));
        let own = self.files.iter().map(|(what, p)| (*what, p.clone()));
        for (what, p) in own.chain(system) {
            let rule = if p == t {
                "mount over"
            } else if p.starts_with(&t) {
                "mount over a directory holding"
            } else if t.starts_with(&p) {
                "mount inside"
            } else {
                continue;
            };
            return Err(Self::refuse(rule, format!("{} ({what})", p.display())));
        }
        Ok(())
    }

    /// A path a request wants bound (or layered) somewhere: not one of the
    /// agent's files, nor a directory holding one. The run directory's
    /// copy area and sandbox files are runtimes' sources and allowed.
    pub fn check_bind_source(&self, source: &Path) -> Result<(), AgentError> {
        let s = resolve(source);
        let shareable = ["shared", "sandbox"]
            .iter()
            .any(|d| s.starts_with(self.run_dir.join(d)));
        if shareable {
            return Ok(());
        }
        for (what, p) in &self.files {
            if *p == s || p.starts_with(&s) || s.starts_with(p) {
                return Err(Self::refuse(
                    "expose its own files",
                    format!("{} holds {} ({what})", s.display(), p.display()),
                ));
            }
        }
        Ok(())
    }

    /// A namespace a container may join by path: not the agent's own mount
    /// namespace (the container's rootfs would be set up, and pivoted
    /// into, in the agent's).
    pub fn check_joined_namespace(
        &self,
        kind: crate::container::init_config::NsKind,
        ns: &crate::sys::ns::Namespace,
    ) -> Result<(), AgentError> {
        use crate::container::init_config::NsKind;
        let own = crate::sys::ns::namespace_of(Path::new("/proc/self/ns/mnt")).ok();
        if kind == NsKind::Mnt && own.is_some_and(|o| o.inode == ns.inode) {
            return Err(Self::refuse(
                "set a container up in its own mount namespace",
                format!("mnt:[{}]", ns.inode),
            ));
        }
        Ok(())
    }

    /// A file CopyFile may write: not one of bosun's files, and inside the
    /// run directory only below its `shared` directory.
    pub fn check_write(&self, dest: &Path) -> Result<(), AgentError> {
        let d = resolve(dest);
        for (what, p) in self.files.iter().filter(|(_, p)| *p != self.run_dir) {
            if *p == d || d.starts_with(p) {
                return Err(Self::refuse("overwrite", format!("{} ({what})", p.display())));
            }
        }
        if d.starts_with(&self.run_dir) && !d.starts_with(self.run_dir.join("shared")) {
            return Err(Self::refuse(
                "write into the agent's run directory",
                d.display().to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir_all(run.join("shared")).unwrap();
        let sock = d.path().join("sock/bosun.sock");
        std::fs::create_dir_all(sock.parent().unwrap()).unwrap();
        std::fs::write(&sock, b"").unwrap();
        std::os::unix::fs::symlink(&run, d.path().join("alias")).unwrap();
        let images = d.path().join("images");
        let g = Guard::new(Some(&sock), &run, &images);
        assert!(g.check_pid(std::process::id() as i32).is_err());
        assert!(g.check_pid(0).is_err() && g.check_pid(-1).is_err());
        assert_eq!(g.check_pid(1).is_err(), std::process::id() != 1);
        assert!(g.check_pid(12345).is_ok());
        let refused_targets = [
            sock.clone(),
            sock.parent().unwrap().to_path_buf(),
            d.path().to_path_buf(),
            run.clone(),
            run.join("x/y"),
            d.path().join("alias/z"),
            images.join("layers"),
            "/proc".into(),
            "/proc/sys".into(),
            "/sys/fs/cgroup".into(),
            "/sys/fs/cgroup/memory".into(),
            "/dev".into(),
            "/dev/shm".into(),
        ];
        for (i, bad) in refused_targets.iter().enumerate() {
            let e = g
                .check_mount_target(bad)
                .expect_err(&format!("test[{i}]: {} should be refused", bad.display()));
            assert!(matches!(e, AgentError::Protected { .. }), "test[{i}]: {e}");
        }
        for (i, ok) in [
            d.path().join("mnt/a"),
            "/run/kata-containers/shared/x".into(),
            "/mnt/vol".into(),
        ]
        .iter()
        .enumerate()
        {
            assert!(g.check_mount_target(ok).is_ok(), "test[{i}]: {}", ok.display());
        }
        let refused_sources = [
            run.clone(),
            run.join("state.json"),
            run.join("containers/c1"),
            d.path().to_path_buf(),
            images.clone(),
            images.join("layers/x"),
            sock.clone(),
            "/".into(),
        ];
        for (i, bad) in refused_sources.iter().enumerate() {
            let e = g
                .check_bind_source(bad)
                .expect_err(&format!("test[{i}]: {} should be refused", bad.display()));
            assert!(matches!(e, AgentError::Protected { .. }), "test[{i}]: {e}");
        }
        for (i, ok) in [
            run.join("shared/cm"),
            run.join("sandbox/resolv.conf"),
            "/proc".into(),
            "/dev/shm".into(),
            d.path().join("mnt/a"),
        ]
        .iter()
        .enumerate()
        {
            assert!(g.check_bind_source(ok).is_ok(), "test[{i}]: {}", ok.display());
        }
        assert!(g.check_write(&sock).is_err());
        assert!(g.check_write(&run.join("containers/x")).is_err());
        assert!(g.check_write(&images.join("x")).is_err());
        assert!(g.check_write(&run.join("shared/x")).is_ok());
    }
}
