//! `image_guest_pull` storages (remote-hypervisor mode): the sandbox
//! container's `pause` needs nothing pulled; a workload's image is pulled
//! into the image store and mounted as an overlay of its layers, with a
//! writable part of its own that goes with the container.

use std::collections::HashSet;

use slog::{info, warn};

use super::Sandbox;
use crate::error::AgentError;
use crate::ids::ContainerId;
use crate::image::{ImageStore, Pulled};
use crate::mount::storage::{self, Driver, StorageSpec};

/// overlayfs reads its options from one page.
const MAX_OVERLAY_OPTIONS: usize = 4000;

impl Sandbox {
    /// Sets the image store (once, at start).
    pub fn set_image_store(&self, store: std::sync::Arc<ImageStore>) {
        let _ = self.images.set(store);
    }

    /// The image store, if the agent has one.
    pub fn image_store(&self) -> Option<&std::sync::Arc<ImageStore>> {
        self.images.get()
    }

    /// Replaces the `image_guest_pull` storages by what they stand for:
    /// nothing for the sandbox's `pause`; for a workload, the directories
    /// of its overlay's writable part and the overlay itself. Waits for
    /// the pull until `deadline`.
    pub(super) async fn guest_pull(
        &self,
        id: &ContainerId,
        storages: Vec<StorageSpec>,
        is_pause: bool,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<(Vec<StorageSpec>, Vec<Pulled>), AgentError> {
        let mut kept = Vec::with_capacity(storages.len());
        let mut pulled = Vec::new();
        for s in storages {
            if !s.driver.is(storage::GUEST_PULL) {
                kept.push(s);
                continue;
            }
            if is_pause && s.source == "pause" {
                continue; // the pod VM's pause bundle, or the built-in pause
            }
            let store = self
                .images
                .get()
                .ok_or_else(|| AgentError::Unavailable("image_guest_pull: this agent has no image store".into()))?
                .clone();
            let p = self.pull_until(&store, &s.source, deadline).await?;
            kept.extend(overlay_storages(&store, id, &s, &p)?);
            pulled.push(p);
        }
        Ok((kept, pulled))
    }

    async fn pull_until(
        &self,
        store: &std::sync::Arc<ImageStore>,
        image: &str,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Pulled, AgentError> {
        let start = tokio::time::Instant::now();
        // The configured bound, or the request's deadline when it is sooner.
        let bound = start + store.pull_timeout();
        let deadline = Some(deadline.map_or(bound, |d| d.min(bound)));
        let pull = store.pull(image);
        let res = match deadline {
            Some(d) => match tokio::time::timeout_at(d, pull).await {
                Ok(r) => r,
                Err(_) => {
                    warn!(self.log, "image pull outlasted the request"; "image" => image, "ms" => start.elapsed().as_millis() as u64);
                    return Err(AgentError::DeadlineExceeded(format!(
                        "image pull of {image:?} still running after {} ms, the request's timeout; the layers it fetches are kept for a CreateContainer sent again",
                        start.elapsed().as_millis()
                    )));
                }
            },
            None => pull.await,
        };
        match res {
            Ok(p) => {
                info!(self.log, "image pulled"; "image" => &p.reference, "manifest" => &p.manifest_digest, "layers" => p.layers.len(), "ms" => start.elapsed().as_millis() as u64);
                Ok(p)
            }
            Err(e) => {
                // A failed pull keeps nothing: what it unpacked no container uses.
                let _ = self.collect_layers().await;
                Err(e.into())
            }
        }
    }

    /// Deletes the image layers no container's overlay reads.
    pub async fn collect_layers(&self) -> Result<String, String> {
        let Some(store) = self.images.get().cloned() else {
            return Ok("no image store".into());
        };
        let in_use: HashSet<String> = crate::sync::lock(&self.ledger).layers_in_use();
        let n = tokio::task::spawn_blocking(move || store.collect(&in_use))
            .await
            .map_err(|e| format!("layer collection task: {e}"))??;
        Ok(format!("{n} unused layer(s) deleted"))
    }
}

/// The storages of an image container: its writable part (`upper`,
/// `work`: `local` directories, removed with it) and the overlay.
fn overlay_storages(
    store: &ImageStore,
    id: &ContainerId,
    s: &StorageSpec,
    p: &Pulled,
) -> Result<Vec<StorageSpec>, AgentError> {
    let cdir = store.container_dir(id.as_str());
    let (upper, work) = (cdir.join("upper"), cdir.join("work"));
    let lower: Vec<String> = p
        .layers
        .iter()
        .rev() // overlayfs lists the top layer first
        .map(|l| store.layer_dir(l).display().to_string())
        .collect();
    let options = vec![
        format!("lowerdir={}", lower.join(":")),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
    ];
    let len: usize = options.iter().map(|o| o.len() + 1).sum();
    if len > MAX_OVERLAY_OPTIONS {
        return Err(AgentError::Pull(crate::image::PullError::TooLarge(format!(
            "image {} has {} layers: the overlay's options ({len} bytes) do not fit in a page",
            p.reference,
            p.layers.len()
        ))));
    }
    let local = |dir: std::path::PathBuf, mode: &str| StorageSpec {
        driver: Driver::new(&storage::Local),
        source: String::new(),
        fstype: String::new(),
        options: vec![format!("mode={mode}")],
        mount_point: dir,
        layers: Vec::new(),
    };
    Ok(vec![
        // The upper dir's mode is the container's `/`.
        local(upper, "0755"),
        local(work, "0700"),
        StorageSpec {
            driver: Driver::new(&storage::Overlay),
            source: "overlay".into(),
            fstype: "overlay".into(),
            options,
            mount_point: s.mount_point.clone(),
            layers: p.layers.clone(),
        },
    ])
}
