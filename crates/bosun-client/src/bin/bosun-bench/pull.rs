//! Image pull rows: a 5-layer image of ~100 MiB pushed to a local registry
//! (docker-registry on the loopback of a network namespace of the
//! bench's, the one its own bosun runs in), pulled and unpacked by
//! CreateContainer with a cold store and again with the layers cached,
//! next to `skopeo copy` of the same image to a directory in the same run:
//! the transfer every puller pays, without unpacking.

use std::time::{Duration, Instant};

use bosun_client::local_registry::{Auth, NetNs, Registry};
use bosun_client::oci_layout::{self, Comp, Entry};
use bosun_client::{spec, Client};
use bosun_protocols::agent::*;

use crate::stats::{ms, Row};

const LAYERS: usize = 5;
const FILES_PER_LAYER: usize = 200;
const FILE_BYTES: usize = 128 << 10;
const IMAGE: &str = "bench/image";

/// The registry and the image in it.
pub struct Setup {
    pub ns: NetNs,
    registry: Registry,
    _dir: tempfile::TempDir,
    /// Blob bytes (what a pull transfers).
    blob_bytes: u64,
    /// Unpacked bytes.
    tar_bytes: u64,
}

/// Half random, half text-like bytes: compresses about as a real image.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut v = oci_layout::noise(len / 2, seed);
    let words = b"container image layer pull unpack overlay agent guest ";
    while v.len() < len {
        v.extend_from_slice(words);
    }
    v.truncate(len);
    v
}

/// Starts the registry and pushes the image (a few seconds).
pub fn setup() -> Result<Setup, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ns = NetNs::new().map_err(|e| format!("network namespace: {e}"))?;
    let registry = Registry::start(&ns, &dir.path().join("registry"), 5000, &Auth::None)
        .map_err(|e| format!("docker-registry: {e}"))?;
    let mut layers = vec![(
        oci_layout::busybox_layer(&["sh", "true", "sleep"]).map_err(|e| e.to_string())?,
        Comp::Gzip,
    )];
    for l in 1..LAYERS {
        let mut e = vec![Entry::Dir(format!("data{l}"), 0o755)];
        for f in 0..FILES_PER_LAYER {
            e.push(Entry::File(
                format!("data{l}/f{f}"),
                content(FILE_BYTES, (l * 1000 + f) as u64),
                0o644,
            ));
        }
        layers.push((e, if l % 2 == 0 { Comp::Zstd } else { Comp::Gzip }));
    }
    let layout = dir.path().join("layout");
    let built = oci_layout::write_layout(&layout, "v1", &layers, 0).map_err(|e| e.to_string())?;
    registry
        .push(&ns, &layout, "v1", IMAGE, None)
        .map_err(|e| e.to_string())?;
    let tar_bytes = ((LAYERS - 1) * FILES_PER_LAYER * FILE_BYTES) as u64;
    Ok(Setup {
        ns,
        registry,
        _dir: dir,
        blob_bytes: built.blob_bytes,
        tar_bytes,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / 1048576.0
}

/// `skopeo copy` of the image to a fresh directory: seconds.
fn skopeo_floor(s: &Setup) -> Result<Duration, String> {
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let st =
        s.ns.command("skopeo")
            .args(["copy", "--quiet", "--insecure-policy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{IMAGE}:v1", s.registry.addr))
            .arg(format!("dir:{}", out.path().join("img").display()))
            .status()
            .map_err(|e| format!("skopeo: {e}"))?;
    if !st.success() {
        return Err(format!("skopeo copy: {st}"));
    }
    Ok(t.elapsed())
}

async fn call<T>(what: &str, f: impl std::future::Future<Output = ttrpc::Result<T>>) -> Result<Duration, String> {
    let t = Instant::now();
    f.await.map_err(|e| match e {
        ttrpc::Error::RpcStatus(st) => format!("{what}: {:?}: {}", st.code(), st.message()),
        other => format!("{what}: {other}"),
    })?;
    Ok(t.elapsed())
}

/// (pod start cold, pull cold, container start warm, pull warm).
async fn pod(c: &Client, image: &str) -> Result<[Duration; 4], String> {
    let t = Instant::now();
    let mut cs = CreateSandboxRequest::new();
    (cs.hostname, cs.sandbox_id) = ("bench-pull".into(), "bench-pull".into());
    call("CreateSandbox", c.agent.create_sandbox(c.ctx(), &cs)).await?;
    let pause = spec::guest_pull_request("bench-pull-pause", "pause", spec::pause(None), true);
    call("CreateContainer (pause)", c.agent.create_container(c.ctx(), &pause)).await?;
    let start = |id: &str| {
        let mut r = StartContainerRequest::new();
        r.container_id = id.into();
        r
    };
    call(
        "StartContainer (pause)",
        c.agent.start_container(c.ctx(), &start("bench-pull-pause")),
    )
    .await?;
    let args = ["sleep".to_string(), "300".into()];
    let mut pulls = [Duration::ZERO; 2];
    let mut starts = [Duration::ZERO; 2];
    for (i, id) in ["bench-pull-cold", "bench-pull-warm"].iter().enumerate() {
        let t1 = Instant::now();
        let r = spec::guest_pull_request(id, image, spec::container(None, &args), false);
        pulls[i] = call("CreateContainer (pulled image)", c.agent.create_container(c.ctx(), &r)).await?;
        call("StartContainer", c.agent.start_container(c.ctx(), &start(id))).await?;
        starts[i] = if i == 0 { t.elapsed() } else { t1.elapsed() };
    }
    call(
        "DestroySandbox",
        c.agent.destroy_sandbox(c.ctx(), &DestroySandboxRequest::new()),
    )
    .await?;
    Ok([starts[0], pulls[0], starts[1], pulls[1]])
}

/// The pull rows for the agent at `c` (bosun started in `s.ns`).
pub fn rows(rt: &tokio::runtime::Runtime, c: &Client, s: &Setup, pid: Option<i32>) -> Vec<Row> {
    let image = format!("{}/{IMAGE}:v1", s.registry.addr);
    let what = format!(
        "{LAYERS} layers, {:.0} MiB unpacked, {:.0} MiB transferred",
        mib(s.tar_bytes),
        mib(s.blob_bytes)
    );
    let floor = skopeo_floor(s);
    let ours = rt.block_on(pod(c, &image));
    let mut rows = Vec::new();
    let rate = |d: Duration| mib(s.blob_bytes) / d.as_secs_f64();
    match &floor {
        Ok(d) => rows.push(Row::new(
            &format!("skopeo copy to a directory ({what}): the transfer floor"),
            format!("{:.0} ms, {:.0} MiB/s", ms(*d), rate(*d)),
        )),
        Err(e) => rows.push(Row::new("skopeo copy (the transfer floor)", format!("FAILED: {e}"))),
    }
    match ours {
        Ok([pod_cold, pull_cold, start_warm, pull_warm]) => {
            let mut r = Row::new(
                "image pull + unpack + overlay, cold store (CreateContainer)",
                format!("{:.0} ms, {:.0} MiB/s", ms(pull_cold), rate(pull_cold)),
            );
            if let Ok(f) = floor {
                r = r.target(
                    "within 2x of skopeo's transfer",
                    pull_cold.as_secs_f64() <= 2.0 * f.as_secs_f64(),
                );
            }
            rows.push(r);
            rows.push(Row::new(
                "image pull, warm store (layers cached; CreateContainer)",
                format!("{:.1} ms", ms(pull_warm)),
            ));
            rows.push(Row::new(
                "pod start with the image pulled, cold store (sandbox, pause, workload started)",
                format!("{:.0} ms", ms(pod_cold)),
            ));
            rows.push(Row::new(
                "container start from the same image, warm store",
                format!("{:.1} ms", ms(start_warm)),
            ));
        }
        Err(e) => rows.push(Row::new("image pull", format!("FAILED: {e}"))),
    }
    if let Some(hwm) = pid.and_then(|p| crate::status_mib(p, "VmHWM:")) {
        rows.push(Row::new(
            "RSS peak of the agent (VmHWM) after the pulls",
            format!("{hwm:.1} MiB"),
        ));
    }
    rows
}
