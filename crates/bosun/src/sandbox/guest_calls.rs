//! The calls about the whole guest and the agent's own record of the pod:
//! teardown reports and the container listing (GetDiagnosticData), stale
//! share mounts, the clock.

use std::path::Path;

use super::{copy_file, Sandbox, REPORTS_KEPT};
use crate::error::AgentError;

impl Sandbox {
    /// Keeps the latest teardown report of `key` (a container id, or "" for
    /// the sandbox).
    pub(crate) fn keep_report(&self, key: &str, report: String) {
        let mut st = self.state();
        st.reports.retain(|(k, _)| k != key);
        st.reports.push_back((key.to_string(), report));
        while st.reports.len() > REPORTS_KEPT {
            st.reports.pop_front();
        }
    }

    /// Every container with its state, as JSON lines for
    /// GetDiagnosticData("containers") (the Kata protocol has no list call).
    pub fn listing(&self) -> String {
        let mut v = Vec::new();
        for c in self.containers() {
            let st = c.status(self.init_exited(&c));
            let execs: Vec<String> = c.processes().iter().skip(1).map(|p| p.exec_id.clone()).collect();
            v.push(serde_json::json!({
                "id": c.id.as_str(), "status": st.name(), "pid": c.init.pid, "pause": c.is_pause,
                "protected": c.protected, "exit_status": c.init.exit_status(), "execs": execs,
            }));
        }
        serde_json::Value::Array(v).to_string()
    }

    /// The latest teardown report of a container ("" for the sandbox).
    pub fn teardown_report(&self, key: &str) -> Option<String> {
        self.state()
            .reports
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    /// RemoveStaleVirtiofsShareMounts, as the Kata agent serves it: a stat
    /// of every mount point under the shared directory, so that virtiofsd
    /// drops its cache (and fds) of those that are gone.
    pub fn touch_share_mounts(&self) {
        let shared = Path::new(copy_file::KATA_SHARED_DIR).join("shared");
        for m in crate::mount::mountinfo::mount_points().unwrap_or_default() {
            if m.starts_with(&shared) {
                let _ = std::fs::metadata(&m);
            }
        }
    }

    /// SetGuestDateTime. The clock is the whole guest's, so bosun sets it
    /// only as the guest's init; anywhere else (a test, a shared host) it
    /// refuses rather than move someone else's clock.
    pub fn set_time(&self, sec: i64, usec: i64) -> Result<(), AgentError> {
        if !(0..1_000_000).contains(&usec) || sec < 0 {
            return Err(AgentError::invalid(
                "Usec",
                format!("{sec} s {usec} µs: seconds >= 0, 0 <= µs < 1000000"),
            ));
        }
        if std::process::id() != 1 {
            return Err(AgentError::GuestOnly("setting the clock"));
        }
        crate::sys::process::set_realtime(sec, usec).map_err(|e| AgentError::Internal(format!("clock_settime: {e}")))
    }
}
