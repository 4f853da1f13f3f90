//! Self-protection: what bosun refuses because it would cut off its own
//! control plane. Every refusal is PERMISSION_DENIED and names the rule and
//! the target; nothing is changed.

use std::path::{Component, Path, PathBuf};

use crate::error::AgentError;

/// bosun's own process and files.
#[derive(Clone, Debug)]
pub struct Guard {
    own_pid: i32,
    is_pid1: bool,
    /// The socket file, binary and run dir, resolved (symlinks followed).
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
    /// any) with state under `run_dir`.
    pub fn new(socket: Option<&Path>, run_dir: &Path) -> Self {
        let mut files = Vec::new();
        if let Some(s) = socket {
            files.push(("the agent's socket", resolve(s)));
        }
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            files.push(("the agent's binary", resolve(&exe)));
        }
        let run_dir = resolve(run_dir);
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

    /// A mount target bosun may mount on: not one of its files, not a
    /// directory that holds one (mounting there would hide it), not inside
    /// its run directory (bosun's own).
    pub fn check_mount_target(&self, target: &Path) -> Result<(), AgentError> {
        let t = resolve(target);
        for (what, p) in &self.files {
            if *p == t || p.starts_with(&t) {
                return Err(Self::refuse(
                    if *p == t {
                        "mount over"
                    } else {
                        "mount over a directory holding"
                    },
                    format!("{} ({what})", p.display()),
                ));
            }
        }
        if t.starts_with(&self.run_dir) {
            return Err(Self::refuse(
                "mount inside the agent's run directory",
                t.display().to_string(),
            ));
        }
        Ok(())
    }

    /// A file CopyFile may write: not one of bosun's files, and inside the
    /// run directory only below its `shared` directory.
    pub fn check_write(&self, dest: &Path) -> Result<(), AgentError> {
        let d = resolve(dest);
        for (what, p) in &self.files[..self.files.len() - 1] {
            if *p == d {
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
        let g = Guard::new(Some(&sock), &run);
        assert!(g.check_pid(std::process::id() as i32).is_err());
        assert!(g.check_pid(0).is_err() && g.check_pid(-1).is_err());
        assert_eq!(g.check_pid(1).is_err(), std::process::id() != 1);
        assert!(g.check_pid(12345).is_ok());
        for bad in [
            sock.clone(),
            sock.parent().unwrap().to_path_buf(),
            d.path().to_path_buf(),
            run.clone(),
            run.join("x/y"),
            d.path().join("alias/z"),
        ] {
            assert!(
                g.check_mount_target(&bad).is_err(),
                "{} should be refused",
                bad.display()
            );
        }
        assert!(g.check_mount_target(&d.path().join("mnt/a")).is_ok());
        assert!(g.check_write(&sock).is_err());
        assert!(g.check_write(&run.join("containers/x")).is_err());
        assert!(g.check_write(&run.join("shared/x")).is_ok());
        for e in [g.check_pid(0).unwrap_err(), g.check_mount_target(&run).unwrap_err()] {
            assert_eq!(e.code(), ttrpc::Code::PERMISSION_DENIED, "{e}");
        }
    }
}
