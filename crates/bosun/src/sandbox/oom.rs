//! GetOOMEvent: the kernel's OOM kills in container cgroups, as a queue of
//! container ids that the long-poll call drains.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::Sandbox;
use crate::ids::ContainerId;

/// How often the memory cgroups are read. The kernel has no cheap
/// cross-version notification (v1 needs an eventfd per cgroup, v2 inotify);
/// a read of one small file per container every 100 ms costs little and
/// reports an OOM kill well within the runtime's own polling.
pub const OOM_POLL: Duration = Duration::from_millis(100);
/// Events kept for a runtime that has not asked yet.
const OOM_QUEUE: usize = 1024;

/// Pending OOM events.
#[derive(Default)]
pub struct OomEvents {
    queue: Mutex<VecDeque<ContainerId>>,
    ready: Notify,
}

impl OomEvents {
    fn push(&self, id: ContainerId) {
        let mut q = crate::sync::lock(&self.queue);
        q.push_back(id);
        while q.len() > OOM_QUEUE {
            q.pop_front();
        }
        drop(q);
        self.ready.notify_waiters();
    }

    /// Waits for the next OOM kill; returns its container.
    pub async fn next(&self) -> ContainerId {
        loop {
            let n = self.ready.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if let Some(id) = crate::sync::lock(&self.queue).pop_front() {
                return id;
            }
            n.await;
        }
    }
}

impl Sandbox {
    /// Starts watching the containers' memory cgroups for OOM kills.
    pub fn watch_oom(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen: HashMap<ContainerId, u64> = HashMap::new();
            loop {
                tokio::time::sleep(OOM_POLL).await;
                let Some(sb) = weak.upgrade() else { return };
                let mut live = HashMap::new();
                for c in sb.containers() {
                    let Some(cg) = &c.cgroup else { continue };
                    let kills = cg.oom_kills();
                    if kills > seen.get(&c.id).copied().unwrap_or(0) {
                        slog::warn!(sb.log, "container OOM kill"; "cid" => %c.id, "kills" => kills);
                        sb.oom.push(c.id.clone());
                    }
                    live.insert(c.id.clone(), kills);
                }
                seen = live;
            }
        });
    }

    /// GetOOMEvent: the next container that had a task OOM-killed.
    pub async fn next_oom(&self) -> ContainerId {
        self.oom.next().await
    }
}
