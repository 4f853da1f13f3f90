//! WaitProcess: a long poll, answered when the process has exited; and
//! forgetting exec'd processes once all about them was delivered.

use std::sync::Arc;

use super::Sandbox;
use crate::container::Container;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::process::Process;

/// Exec'd processes whose status and output were all delivered that a
/// container keeps answering for (a WaitProcess asked again, a last read):
/// past them the oldest is forgotten, its record, exit file and config
/// removed. Without a bound, a pod probed by exec every 10 s grows its
/// record (and the journal written at each call) by 8,640 a day.
pub const DELIVERED_EXECS_KEPT: usize = 64;

impl Sandbox {
    /// Waits (without bound) for the process to exit; returns its status.
    pub async fn wait(&self, id: &ContainerId, exec_id: Option<&str>) -> Result<i32, AgentError> {
        let (c, p) = self.process(id, exec_id)?;
        let status = p.wait().await;
        p.mark_waited();
        self.note_delivered(&c, &p);
        Ok(status)
    }

    /// Called when `p`'s status was answered or a stream reached EOF: once
    /// an exec'd process has had all delivered, it is queued, and the
    /// oldest delivered past `DELIVERED_EXECS_KEPT` are forgotten.
    pub(super) fn note_delivered(&self, c: &Container, p: &Arc<Process>) {
        if p.exec_id == c.id.as_str() || !p.newly_delivered() {
            return;
        }
        let old = c.queue_delivered(&p.exec_id, DELIVERED_EXECS_KEPT);
        if old.is_empty() {
            return;
        }
        for exec_id in &old {
            if let Some(gone) = c.remove_exec(exec_id) {
                gone.release_monitor();
            }
            super::exec::remove_exec_files(&c.dir, exec_id);
        }
        let _ = self.persist();
    }
}
