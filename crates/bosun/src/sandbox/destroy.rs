//! DestroySandbox: creates and execs in flight are stopped or waited for,
//! then workloads go first, the pause container last, then the sandbox's
//! storages, copied files, image layers and directories, and whatever a
//! cut-off call or a restart left behind (`sweep.rs`). Every step runs;
//! failures are reported together and a second call finishes the job.

use std::sync::Arc;

use slog::info;

use super::teardown::{TeardownReport, DEFAULT_KILL_WAIT};
use super::Sandbox;
use crate::container::Container;
use crate::error::AgentError;
use crate::faults::crash_point;
use crate::mount::fsutil::remove_dir_same_fs;
use crate::mount::ledger::Owner;

impl Sandbox {
    /// DestroySandbox, detached from the call. Idempotent.
    pub async fn destroy_sandbox(self: &Arc<Self>) -> Result<(), AgentError> {
        let sb = self.clone();
        super::run_detached(Box::pin(async move { sb.destroy_now().await })).await
    }

    async fn destroy_now(&self) -> Result<(), AgentError> {
        // Creates waiting on a pull or a device stop now; the rest finish
        // (or roll back) before the teardown starts, and none starts until
        // it ends.
        self.closing.send_replace(true);
        let _all = self.pod_ops.write().await;
        let r = self.destroy_everything().await;
        self.closing.send_replace(false);
        r
    }

    async fn destroy_everything(&self) -> Result<(), AgentError> {
        let mut failures = Vec::new();
        let all = self.containers();
        let (pause, workloads): (Vec<Arc<Container>>, Vec<Arc<Container>>) = all.into_iter().partition(|c| c.is_pause);
        for c in workloads.iter().chain(pause.iter()) {
            if let Err(e) = self.tear_down(&c.id, DEFAULT_KILL_WAIT).await {
                failures.push(e.to_string());
            }
        }
        crash_point("destroy-after-containers");
        let mut report = TeardownReport::default();
        report.run("umount", self.unmount_owned_async(Owner::Sandbox).await);
        report.run("copied files", self.remove_copied());
        self.sweep_orphans(&mut report).await;
        if let Some(store) = self.image_store().cloned() {
            report.run("image layers", self.collect_layers().await);
            store.tidy();
        }
        report.run(
            "rmdir",
            remove_dir_same_fs(&self.sandbox_dir())
                .map(|_| "removed".to_string())
                .map_err(|e| e.to_string()),
        );
        let _ = std::fs::remove_dir(self.containers_dir());
        // The copy area in the run directory is bosun's; gone once empty.
        let _ = std::fs::remove_dir(self.run_dir.join("shared"));
        self.cgroups.remove_if_empty();
        let mut summary = format!(
            "{} container(s) removed; sandbox {report}",
            workloads.len() + pause.len() - failures.len()
        );
        if !failures.is_empty() {
            summary = format!("{summary}; failed: {}", failures.join("; "));
        }
        self.keep_report("", summary);
        if !report.ok() {
            failures.push(report.failures());
        }
        if !failures.is_empty() {
            let _ = self.persist();
            return Err(AgentError::TeardownIncomplete {
                what: "sandbox".into(),
                failures: failures.join("; "),
            });
        }
        let sid = {
            let mut st = self.state();
            st.removed.clear();
            st.sandbox.take().map(|s| s.id).unwrap_or_default()
        };
        self.persist()?;
        crate::sys::process::release_free_memory();
        info!(self.log, "sandbox destroyed"; "sid" => sid);
        Ok(())
    }
}
