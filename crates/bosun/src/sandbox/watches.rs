//! The sandbox's side of watchable-bind storages (see mount::watch): the
//! tmpfs they live in, the list of copies and the task that keeps them in
//! step.

use std::path::Path;
use std::sync::{Arc, Weak};

use super::Sandbox;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::mount::ledger::Owner;
use crate::mount::storage::{self, Driver, StorageSpec};
use crate::mount::watch::{self, WATCH_ROOT};

impl Sandbox {
    /// Checks watchable-bind targets (below WATCH_ROOT only) and mounts the
    /// tmpfs there once for the sandbox.
    pub(super) fn prepare_watches(&self, storages: &[StorageSpec]) -> Result<(), AgentError> {
        let watched: Vec<&StorageSpec> = storages
            .iter()
            .filter(|s| s.driver.is(storage::WATCHABLE_BIND))
            .collect();
        if watched.is_empty() {
            return Ok(());
        }
        if let Some(s) = watched
            .iter()
            .find(|s| !s.mount_point.starts_with(WATCH_ROOT) || s.mount_point == Path::new(WATCH_ROOT))
        {
            return Err(AgentError::invalid(
                "storage.mount_point",
                format!(
                    "{}: a watchable-bind copy goes below {WATCH_ROOT}",
                    s.mount_point.display()
                ),
            ));
        }
        let have = crate::sync::lock(&self.ledger)
            .all()
            .iter()
            .any(|e| e.target == Path::new(WATCH_ROOT));
        if !have {
            let root = StorageSpec {
                driver: Driver::new(&storage::Ephemeral),
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                options: vec!["mode=0755".into()],
                mount_point: WATCH_ROOT.into(),
                layers: Vec::new(),
            };
            storage::mount_storage(&self.ledger, &Owner::Sandbox, &root, &|| {
                let _ = self.persist();
            })?;
        }
        Ok(())
    }

    /// Registers the copies (not the ones bound instead) of container `id`.
    pub(super) fn add_watches(&self, id: &ContainerId, storages: &[StorageSpec]) {
        let mut st = self.state();
        for s in storages.iter().filter(|s| s.driver.is(storage::WATCHABLE_BIND)) {
            let bound = crate::mount::mountinfo::fstype_at(&s.mount_point)
                .ok()
                .flatten()
                .is_some();
            if !bound {
                st.watches
                    .push((id.clone(), s.source.clone().into(), s.mount_point.clone()));
            }
        }
    }

    /// Stops keeping container `id`'s copies in step (its teardown removes them).
    pub(super) fn drop_watches(&self, id: &ContainerId) {
        self.state().watches.retain(|(c, _, _)| c != id);
    }

    /// Starts the task that re-copies changed sources every
    /// `watch::INTERVAL`; a source that grew past the caps stops being
    /// copied (logged), and keeps its last copy.
    pub fn watch_binds(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(watch::INTERVAL).await;
                let Some(sb) = weak.upgrade() else { return };
                let list = sb.state().watches.clone();
                for (cid, src, dst) in list {
                    let r = tokio::task::spawn_blocking({
                        let (src, dst) = (src.clone(), dst.clone());
                        move || watch::sync(&src, &dst)
                    })
                    .await;
                    match r {
                        Ok(Ok(0)) => {}
                        Ok(Ok(n)) => {
                            slog::debug!(sb.log, "watched copy updated"; "cid" => %cid, "target" => %dst.display(), "changed" => n)
                        }
                        Ok(Err(e)) => {
                            slog::warn!(sb.log, "watched copy no longer kept in step"; "cid" => %cid, "target" => %dst.display(), "error" => %e);
                            sb.state().watches.retain(|(c, _, d)| !(c == &cid && d == &dst));
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    }
}
