//! Pulling images inside the guest (remote-hypervisor mode's
//! `image_guest_pull`): a registry client, a content-addressed layer store
//! under `--image-dir`, and the overlay each container runs on.
//!
//! Layout of the store (bosun owns all of it and nothing outside it):
//! `layers/<hex of diff_id>/` unpacked layers, published by rename once
//! verified; `tmp/` layers being unpacked (emptied at start: a pull cut by
//! a restart is discarded); `containers/<cid>/{upper,work}` the writable
//! part of each container's overlay; `images.json` what was pulled.
//!
//! A layer is in use while a container's overlay entry in the mount
//! ledger names it, or a pull holds a pin on it; `collect` deletes the
//! others.

pub mod layer;
pub mod manifest;
pub mod mirrors;
pub mod proxy;
pub mod reference;
pub mod registry;
pub mod unpack;
pub mod zstd_frames;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};
use sha2::{Digest as _, Sha256};
use slog::{info, o, warn, Logger};

use manifest::{Descriptor, Fetched};
use reference::Reference;
use registry::{Registry, RegistryConfig, RegistryError};

/// Layers downloaded at once (across every pull).
const PARALLEL_LAYERS: usize = 3;

/// Why a pull failed.
#[derive(Debug, thiserror::Error, Clone)]
pub enum PullError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    /// The registry said no, or could not be reached.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Content that is not an image bosun can run.
    #[error("{0}")]
    BadContent(String),
    /// A digest or size that does not match the manifest or config.
    #[error("{0}")]
    Digest(String),
    /// A tar entry that would reach outside its layer.
    #[error("{0}")]
    Hostile(String),
    /// Over the space or a cap.
    #[error("{0}")]
    TooLarge(String),
    /// The layer stream broke (corrupt compression or tar).
    #[error("layer stream: {0}")]
    Stream(String),
    /// The store itself failed.
    #[error("image store: {0}")]
    Internal(String),
    /// A registry the configuration blocks.
    #[error(transparent)]
    Blocked(#[from] mirrors::Blocked),
}

/// An image ready to be mounted: its layers, bottom first, pinned until
/// this value is dropped (after the overlay's ledger entry names them).
pub struct Pulled {
    /// The reference as normalized.
    pub reference: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// Layer ids (hex of the diff_id), bottom first.
    pub layers: Vec<String>,
    _pin: Pin,
}

struct Pin {
    store: Arc<ImageStore>,
    layers: Vec<String>,
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut pins = crate::sync::lock(&self.store.pins);
        for l in &self.layers {
            if let Some(n) = pins.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(l);
                }
            }
        }
    }
}

/// An image pulled, as `images.json` keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// Manifest digest.
    pub manifest_digest: String,
    /// Layer ids, bottom first.
    pub layers: Vec<String>,
}

type LayerJob = Shared<BoxFuture<'static, Result<(), PullError>>>;

/// The store and the client; one per agent.
pub struct ImageStore {
    dir: PathBuf,
    registry: Registry,
    log: Logger,
    /// Layers being fetched: a second pull of the same layer waits for the first.
    inflight: Mutex<HashMap<String, LayerJob>>,
    pins: Mutex<HashMap<String, usize>>,
    images: Mutex<BTreeMap<String, ImageRecord>>,
    slots: Arc<tokio::sync::Semaphore>,
    owns_dir: bool,
}

/// The store's directories (see the module's doc).
const SUBDIRS: [&str; 3] = ["layers", "tmp", "containers"];

/// What GetDiagnosticData and `bosunctl images` show.
#[derive(Debug, serde::Serialize)]
pub struct Inventory {
    /// The store's directory.
    pub dir: PathBuf,
    /// Images pulled, by reference.
    pub images: BTreeMap<String, ImageRecord>,
    /// Layers on disk: id → bytes.
    pub layers: BTreeMap<String, u64>,
    /// Layers being fetched.
    pub pulling: Vec<String>,
}

impl ImageStore {
    /// Opens (creating) the store at `dir`; discards half-unpacked layers.
    /// Nothing is created until the first pull; `owns_dir`: the directory
    /// itself is bosun's (the default, under the run dir) and goes when
    /// the store is empty, rather than only what bosun made inside it.
    pub fn open(dir: &Path, owns_dir: bool, cfg: RegistryConfig, log: &Logger) -> Result<Arc<Self>, String> {
        if !dir.is_absolute() {
            return Err(format!("{} is not an absolute path", dir.display()));
        }
        let log = log.new(o!("subsystem" => "image"));
        let tmp = dir.join("tmp");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                match crate::mount::fsutil::remove_dir_same_fs(&e.path()) {
                    Ok(()) => info!(log, "discarded a layer left half-unpacked"; "path" => %e.path().display()),
                    Err(err) => {
                        warn!(log, "could not discard a half-unpacked layer"; "path" => %e.path().display(), "error" => %err)
                    }
                }
            }
        }
        let images = std::fs::read(dir.join("images.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            registry: Registry::new(cfg),
            log,
            inflight: Mutex::new(HashMap::new()),
            pins: Mutex::new(HashMap::new()),
            images: Mutex::new(images),
            slots: Arc::new(tokio::sync::Semaphore::new(PARALLEL_LAYERS)),
            owns_dir,
        }))
    }

    /// Creates the store's directories (at each pull: cheap once they exist).
    fn prepare(&self) -> Result<(), PullError> {
        for d in SUBDIRS {
            let p = self.dir.join(d);
            std::fs::create_dir_all(&p).map_err(|e| PullError::Internal(format!("create {}: {e}", p.display())))?;
        }
        Ok(())
    }

    /// Removes the store's empty directories (DestroySandbox, after the
    /// layers went): the pod leaves nothing. Anything still inside stays.
    pub fn tidy(&self) {
        if !crate::sync::lock(&self.inflight).is_empty() {
            return;
        }
        for d in SUBDIRS {
            let _ = std::fs::remove_dir(self.dir.join(d));
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    /// Where layer `id` lives.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.dir.join("layers").join(id)
    }

    /// The writable directory of container `cid`'s overlay.
    pub fn container_dir(&self, cid: &str) -> PathBuf {
        self.dir.join("containers").join(cid)
    }

    /// Bound on one pull in all (the configured image pull timeout).
    pub fn pull_timeout(&self) -> std::time::Duration {
        self.registry.pull_timeout()
    }

    /// Pulls `reference` (layers already in the store are not fetched
    /// again; a layer another pull is fetching is waited for). The layer
    /// downloads run as their own tasks: a caller that stops waiting
    /// leaves them to finish, so that a retry finds them done.
    pub async fn pull(self: &Arc<Self>, reference: &str) -> Result<Pulled, PullError> {
        let asked = Reference::parse(reference)?;
        self.prepare()?;
        let (r, (manifest_digest, config, layers)) = self.resolve_at_a_source(&asked).await?;
        if config.size > manifest::MAX_CONFIG {
            return Err(PullError::TooLarge(format!(
                "image config is {} bytes, over the {}-byte cap",
                config.size,
                manifest::MAX_CONFIG
            )));
        }
        let cfg_resp = self.registry.blob(&r, &config.digest).await?;
        let cfg_body = self
            .registry
            .read_capped(&r, cfg_resp, config.size, "image config")
            .await?;
        check_blob(&cfg_body, &config, "image config")?;
        let diff_ids = manifest::diff_ids(&cfg_body).map_err(PullError::BadContent)?;
        if diff_ids.len() != layers.len() {
            return Err(PullError::BadContent(format!(
                "the manifest has {} layers and the config {} diff_ids",
                layers.len(),
                diff_ids.len()
            )));
        }
        let ids: Vec<String> = diff_ids.iter().map(|d| d["sha256:".len()..].to_string()).collect();
        let (pin, present) = self.pin(&ids);
        let jobs: Vec<LayerJob> = layers
            .iter()
            .zip(&diff_ids)
            .zip(&ids)
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(((desc, diff), id), _)| self.layer_job(&r, desc, diff, id))
            .collect();
        for res in futures::future::join_all(jobs).await {
            res?;
        }
        let rec = ImageRecord {
            manifest_digest: manifest_digest.clone(),
            layers: ids.clone(),
        };
        {
            let mut images = crate::sync::lock(&self.images);
            images.insert(asked.to_string(), rec);
            self.write_index(&images)
        }
        .map_err(|e| PullError::Internal(format!("write images.json: {e}")))?;
        Ok(Pulled {
            reference: asked.to_string(),
            manifest_digest,
            layers: ids,
            _pin: pin,
        })
    }

    /// The manifest of `asked` at the first of its sources (mirrors, then
    /// its registry: `mirrors`) that serves it, and that source, from
    /// which the whole pull is then made. A source that fails is logged
    /// and the next tried; the last one's error is the pull's.
    async fn resolve_at_a_source(
        &self,
        asked: &Reference,
    ) -> Result<(Reference, (String, Descriptor, Vec<Descriptor>)), PullError> {
        let sources = self.registry.sources(asked)?;
        let n = sources.len();
        for (i, src) in sources.into_iter().enumerate() {
            match self.resolve(&src.reference).await {
                Ok(found) => {
                    if src.mirror {
                        info!(self.log, "pulling from a mirror"; "image" => %asked, "from" => %src.reference);
                    }
                    return Ok((src.reference, found));
                }
                Err(e @ (PullError::Internal(_) | PullError::Reference(_))) => return Err(e),
                Err(e) if i + 1 == n => return Err(e),
                Err(e) => {
                    warn!(self.log, "a source of the image failed, trying the next";
                        "image" => %asked, "source" => %src.reference, "error" => %e);
                }
            }
        }
        unreachable!("sources always end with the registry itself")
    }

    /// The manifest for this guest's platform: (digest, config, layers).
    async fn resolve(&self, r: &Reference) -> Result<(String, Descriptor, Vec<Descriptor>), PullError> {
        let (body, ct) = self.registry.manifest(r, r.manifest_ref()).await?;
        let digest = sha256_digest(&body);
        if let Some(want) = &r.digest {
            if &digest != want {
                return Err(PullError::Digest(format!(
                    "manifest hashes to {digest}, the reference pins {want}"
                )));
            }
        }
        match manifest::parse(&body, &ct).map_err(PullError::BadContent)? {
            Fetched::Image { config, layers } => Ok((digest, config, layers)),
            Fetched::Index(entries) => {
                let (os, arch) = manifest::this_platform();
                let d = manifest::pick(&entries, os, arch).ok_or_else(|| {
                    PullError::BadContent(format!("the image index of {r} has no {os}/{arch} manifest"))
                })?;
                let (body, ct) = self.registry.manifest(r, &d.digest).await?;
                check_blob(&body, d, "platform manifest")?;
                match manifest::parse(&body, &ct).map_err(PullError::BadContent)? {
                    Fetched::Image { config, layers } => Ok((d.digest.clone(), config, layers)),
                    Fetched::Index(_) => Err(PullError::BadContent("an image index inside an image index".into())),
                }
            }
        }
    }

    /// Pins `ids` and says which are in the store, both under the pins
    /// lock, which `collect` holds while it takes a layer away: a layer
    /// seen here is never deleted under the pull.
    fn pin(self: &Arc<Self>, ids: &[String]) -> (Pin, Vec<bool>) {
        let mut pins = crate::sync::lock(&self.pins);
        for id in ids {
            *pins.entry(id.clone()).or_default() += 1;
        }
        let present = ids.iter().map(|id| self.layer_dir(id).is_dir()).collect();
        let pin = Pin {
            store: self.clone(),
            layers: ids.to_vec(),
        };
        (pin, present)
    }

    /// The download of layer `id`: the one running, or a new one.
    fn layer_job(self: &Arc<Self>, r: &Reference, desc: &Descriptor, diff_id: &str, id: &str) -> LayerJob {
        let mut inflight = crate::sync::lock(&self.inflight);
        if let Some(j) = inflight.get(id) {
            return j.clone();
        }
        let (store, r, desc, diff_id, id2) = (
            self.clone(),
            r.clone(),
            desc.clone(),
            diff_id.to_string(),
            id.to_string(),
        );
        let task = tokio::spawn(async move {
            let res = store.fetch_layer(&r, &desc, &diff_id, &id2).await;
            crate::sync::lock(&store.inflight).remove(&id2);
            res
        });
        let job: LayerJob = async move {
            task.await
                .map_err(|e| PullError::Internal(format!("layer task: {e}")))?
        }
        .boxed()
        .shared();
        inflight.insert(id.to_string(), job.clone());
        job
    }

    async fn fetch_layer(&self, r: &Reference, desc: &Descriptor, diff_id: &str, id: &str) -> Result<(), PullError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| PullError::Internal("store closed".into()))?;
        let dest = self.layer_dir(id);
        if dest.is_dir() {
            return Ok(());
        }
        let retries = 2;
        let mut attempt = 0;
        loop {
            let tmp = self.dir.join("tmp").join(format!("{id}.{attempt}"));
            let _ = crate::mount::fsutil::remove_dir_same_fs(&tmp);
            std::fs::create_dir(&tmp).map_err(|e| PullError::Internal(format!("create {}: {e}", tmp.display())))?;
            let res = layer::fetch(&self.registry, &self.log, r, desc, diff_id, &tmp).await;
            match res {
                Ok(()) => {
                    return std::fs::rename(&tmp, &dest).map_err(|e| {
                        let _ = crate::mount::fsutil::remove_dir_same_fs(&tmp);
                        PullError::Internal(format!("publish layer {id}: {e}"))
                    });
                }
                Err(e) => {
                    if let Err(err) = crate::mount::fsutil::remove_dir_same_fs(&tmp) {
                        warn!(self.log, "could not remove a failed layer"; "path" => %tmp.display(), "error" => %err);
                    }
                    // A transfer cut mid-blob is tried again; bad content is not.
                    let retry =
                        matches!(e, PullError::Registry(RegistryError::Unavailable { .. })) && attempt < retries;
                    if !retry {
                        return Err(e);
                    }
                    warn!(self.log, "layer transfer failed; trying again"; "layer" => &id[..12], "error" => %e);
                    attempt += 1;
                }
            }
        }
    }

    /// Deletes the layers that no container uses (`in_use`) and no pull
    /// holds; returns how many.
    /// Blocking: call it off the async threads.
    pub fn collect(&self, in_use: &HashSet<String>) -> Result<usize, String> {
        let mut removed = 0;
        let mut errors = Vec::new();
        let rd = match std::fs::read_dir(self.dir.join("layers")) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.to_string()),
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if in_use.contains(&id) {
                continue;
            }
            // Out of `layers/` under the lock (a rename: quick), deleted after.
            let doomed = self.dir.join("tmp").join(format!("{id}.unused"));
            {
                let pins = crate::sync::lock(&self.pins);
                if pins.contains_key(&id) {
                    continue;
                }
                if let Err(err) = std::fs::rename(e.path(), &doomed) {
                    errors.push(format!("layer {id}: {err}"));
                    continue;
                }
            }
            match crate::mount::fsutil::remove_dir_same_fs(&doomed) {
                Ok(()) => removed += 1,
                Err(err) => errors.push(format!("layer {id}: {err}")),
            }
        }
        if removed > 0 {
            let mut images = crate::sync::lock(&self.images);
            images.retain(|_, rec| rec.layers.iter().all(|l| self.layer_dir(l).is_dir()));
            if let Err(e) = self.write_index(&images) {
                errors.push(format!("write images.json: {e}"));
            }
            info!(self.log, "unused layers deleted"; "count" => removed);
        }
        if errors.is_empty() {
            Ok(removed)
        } else {
            Err(errors.join("; "))
        }
    }

    /// Writes `images.json` (removed when empty: an unused store holds
    /// nothing).
    fn write_index(&self, images: &BTreeMap<String, ImageRecord>) -> std::io::Result<()> {
        let path = self.dir.join("images.json");
        if images.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(images).unwrap_or_default())?;
        std::fs::rename(&tmp, path)
    }

    /// What the store holds.
    pub fn inventory(&self) -> Inventory {
        let mut layers = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join("layers")) {
            for e in rd.flatten() {
                layers.insert(e.file_name().to_string_lossy().into_owned(), du(&e.path()));
            }
        }
        Inventory {
            dir: self.dir.clone(),
            images: crate::sync::lock(&self.images).clone(),
            layers,
            pulling: crate::sync::lock(&self.inflight).keys().cloned().collect(),
        }
    }
}

/// `sha256:<hex>` of a finished SHA-256 hash.
pub fn digest_string(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The `sha256:<hex>` digest of `b`.
pub fn sha256_digest(b: &[u8]) -> String {
    digest_string(&Sha256::digest(b))
}

fn check_blob(body: &[u8], d: &Descriptor, what: &str) -> Result<(), PullError> {
    let got = sha256_digest(body);
    if body.len() as u64 != d.size || got != d.digest {
        return Err(PullError::Digest(format!(
            "{what} is {} bytes hashing to {got}; the manifest says {} bytes, {}",
            body.len(),
            d.size,
            d.digest
        )));
    }
    Ok(())
}

/// Bytes held by the files under `p` (not following links).
fn du(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}
