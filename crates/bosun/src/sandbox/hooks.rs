//! OCI hooks found in the guest (CreateSandbox `guest_hook_path`), as the
//! Kata agent runs them: every executable regular file in
//! `<path>/prestart`, `<path>/poststart` and `<path>/poststop`, in name
//! order, with argv `[name, kind]` and the container's OCI state as JSON on
//! stdin. prestart runs before the container's process starts and a
//! failure stops the start; poststart and poststop failures are logged.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use slog::warn;

use super::Sandbox;
use crate::container::Container;

/// How long one hook may run before it is killed: hooks set up devices or
/// networking, seconds at most; a hung one must not hang StartContainer.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    /// After the container is set up, before its process runs.
    Prestart,
    /// After the process started.
    Poststart,
    /// After the container was removed.
    Poststop,
}

impl HookKind {
    fn dir(self) -> &'static str {
        match self {
            Self::Prestart => "prestart",
            Self::Poststart => "poststart",
            Self::Poststop => "poststop",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Self::Prestart => "created",
            Self::Poststart => "running",
            Self::Poststop => "stopped",
        }
    }
}

/// The hooks of `kind` under `base`: executable regular files (not links),
/// sorted by name. A missing directory has none.
pub fn find(base: &Path, kind: HookKind) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(base.join(kind.dir())) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_ok_and(|t| t.is_file()) && e.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

impl Sandbox {
    /// Runs the sandbox's hooks of `kind` for container `c`; the first
    /// failure is returned (the caller decides whether it matters).
    pub(super) async fn run_hooks(&self, kind: HookKind, c: &Container) -> Result<(), String> {
        let Some(base) = self.sandbox_spec().ok().and_then(|s| s.guest_hook_path) else {
            return Ok(());
        };
        let state = serde_json::json!({
            "ociVersion": "1.0.2", "id": c.id.as_str(), "status": kind.status(),
            "pid": c.init.pid, "bundle": c.dir.display().to_string(), "annotations": {},
        })
        .to_string();
        for hook in find(&base, kind) {
            self.run_hook(&hook, kind, &state).await.map_err(|e| {
                warn!(self.log, "hook failed"; "cid" => %c.id, "step" => kind.dir(), "target" => %hook.display(), "error" => &e);
                format!("{} hook {}: {e}", kind.dir(), hook.display())
            })?;
        }
        Ok(())
    }

    async fn run_hook(&self, hook: &Path, kind: HookKind, state: &str) -> Result<(), String> {
        let name = hook
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = Command::new(hook);
        cmd.arg0(&name).arg(kind.dir());
        let out = self
            .reaper
            .output(cmd, state.as_bytes(), HOOK_TIMEOUT)
            .await
            .map_err(|e| format!("start: {e}"))?;
        if out.timed_out {
            return Err(format!("still running after {HOOK_TIMEOUT:?}: killed"));
        }
        if out.status != 0 {
            let (status, err) = (out.status, String::from_utf8_lossy(&out.stderr));
            let tail: String = err
                .chars()
                .rev()
                .take(512)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!("exit status {status}: {}", tail.trim()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_executable_files_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        let pre = d.path().join("prestart");
        std::fs::create_dir_all(&pre).unwrap();
        for (name, mode) in [("20-b", 0o755), ("10-a", 0o700), ("30-not-exec", 0o644)] {
            std::fs::write(pre.join(name), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(pre.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink(pre.join("10-a"), pre.join("40-link")).unwrap();
        std::fs::create_dir(pre.join("50-dir")).unwrap();
        assert_eq!(
            find(d.path(), HookKind::Prestart),
            vec![pre.join("10-a"), pre.join("20-b")]
        );
        assert!(find(d.path(), HookKind::Poststop).is_empty());
    }
}
