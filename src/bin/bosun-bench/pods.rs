//! Pod lifecycle latencies, 20 containers in parallel, and memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun::client::{spec, Client};
use bosun::protocols::agent::*;

use crate::stats::{ms, Row, Samples};
use crate::{kata, rss_mib};

/// A minimal busybox rootfs in `dir`.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    spec::busybox_rootfs(dir, &["sh", "true", "sleep"]).expect("busybox rootfs")
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Each call of one pod's life, timed.
#[derive(Default, Clone)]
struct Pod {
    sandbox: Samples,
    create: Samples,
    start: Samples,
    exec: Samples,
    remove: Samples,
    destroy: Samples,
    csr: Samples,
}

async fn timed<T>(f: impl std::future::Future<Output = ttrpc::Result<T>>) -> Duration {
    let t = Instant::now();
    f.await.expect("call");
    t.elapsed()
}

async fn one_pod(c: &Client, rootfs: &Path, p: &mut Pod) {
    let mut cs = CreateSandboxRequest::new();
    cs.hostname = "bench".into();
    p.sandbox.0.push(timed(c.agent.create_sandbox(c.ctx(), &cs)).await);
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.OCI) = ("pause".into(), Some(spec::pause(None)).into());
    c.agent.create_container(c.ctx(), &cc).await.expect("pause");
    let mut st = StartContainerRequest::new();
    st.container_id = "pause".into();
    c.agent.start_container(c.ctx(), &st).await.expect("start pause");
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.OCI) = (
        "w".into(),
        Some(spec::container(Some(rootfs), &s(&["sleep", "300"]))).into(),
    );
    let create = timed(c.agent.create_container(c.ctx(), &cc)).await;
    st.container_id = "w".into();
    let start = timed(c.agent.start_container(c.ctx(), &st)).await;
    let t = Instant::now();
    let mut ex = ExecProcessRequest::new();
    (ex.container_id, ex.exec_id, ex.process) = ("w".into(), "t".into(), Some(spec::process(&s(&["true"]))).into());
    c.agent.exec_process(c.ctx(), &ex).await.expect("exec");
    let mut w = WaitProcessRequest::new();
    (w.container_id, w.exec_id) = ("w".into(), "t".into());
    c.agent.wait_process(c.long_poll(), &w).await.expect("wait");
    p.exec.0.push(t.elapsed());
    let mut rm = RemoveContainerRequest::new();
    (rm.container_id, rm.timeout) = ("w".into(), 10);
    let remove = timed(c.agent.remove_container(c.ctx(), &rm)).await;
    p.destroy
        .0
        .push(timed(c.agent.destroy_sandbox(c.ctx(), &DestroySandboxRequest::new())).await);
    p.create.0.push(create);
    p.start.0.push(start);
    p.remove.0.push(remove);
    p.csr.0.push(create + start + remove);
}

/// Creates and starts `n` containers at once in one sandbox; returns the
/// wall time, and leaves them running.
async fn parallel(c: &Client, rootfs: &Path, n: usize) -> Duration {
    let t = Instant::now();
    let all = (0..n).map(|i| {
        let c = c.clone();
        let rootfs = rootfs.to_path_buf();
        async move {
            let id = format!("p{i}");
            let mut cc = CreateContainerRequest::new();
            (cc.container_id, cc.OCI) = (
                id.clone(),
                Some(spec::container(Some(&rootfs), &s(&["sleep", "300"]))).into(),
            );
            c.agent.create_container(c.ctx(), &cc).await.expect("create");
            let mut st = StartContainerRequest::new();
            st.container_id = id;
            c.agent.start_container(c.ctx(), &st).await.expect("start");
        }
    });
    futures::future::join_all(all).await;
    t.elapsed()
}

fn lat_row(name: &str, s: &Samples, vs: Option<&Samples>) -> Row {
    Row::new(name, format!("{:.2} / {:.2} ms", ms(s.pct(0.5)), ms(s.pct(0.99))))
        .vs(vs.map(|v| format!("{:.2} / {:.2} ms", ms(v.pct(0.5)), ms(v.pct(0.99)))))
}

/// Runs the pod measurements and appends their rows.
#[allow(clippy::too_many_arguments)]
pub fn run(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    vs: Option<&Client>,
    rootfs: &Path,
    pods: usize,
    pid: Option<i32>,
    idle: Option<f64>,
    rows: &mut Vec<Row>,
) {
    let (mut a, mut b) = (Pod::default(), Pod::default());
    let mut ours_total = Duration::ZERO;
    for _ in 0..pods {
        // Pods alternate between the agents (noise falls on both alike).
        let t1 = Instant::now();
        rt.block_on(one_pod(c, rootfs, &mut a));
        ours_total += t1.elapsed();
        if let Some(v) = vs {
            rt.block_on(one_pod(v, rootfs, &mut b));
        }
    }
    let bv = vs.map(|_| &b);
    rows.push(lat_row(
        &format!("CreateSandbox p50 / p99 ({pods} pods)"),
        &a.sandbox,
        bv.map(|b| &b.sandbox),
    ));
    rows.push(
        lat_row("CreateContainer p50 / p99", &a.create, bv.map(|b| &b.create)).baseline(
            kata::CREATE_MS,
            ms(a.create.pct(0.5)),
            "ms",
        ),
    );
    rows.push(
        lat_row("StartContainer p50 / p99", &a.start, bv.map(|b| &b.start)).baseline(
            kata::START_MS,
            ms(a.start.pct(0.5)),
            "ms",
        ),
    );
    rows.push(lat_row(
        "exec `true` + WaitProcess p50 / p99",
        &a.exec,
        bv.map(|b| &b.exec),
    ));
    rows.push(
        lat_row("RemoveContainer p50 / p99", &a.remove, bv.map(|b| &b.remove)).baseline(
            kata::REMOVE_MS,
            ms(a.remove.pct(0.5)),
            "ms",
        ),
    );
    rows.push(lat_row("DestroySandbox p50 / p99", &a.destroy, bv.map(|b| &b.destroy)));
    let csr = ms(a.csr.pct(0.5));
    rows.push(
        lat_row("create + start + remove p50 / p99", &a.csr, bv.map(|b| &b.csr))
            .baseline(kata::CSR_MS, csr, "ms")
            .target("under 8 ms", csr < 8.0),
    );
    rows.push(Row::new(
        &format!("{pods} pods in sequence, total"),
        format!("{:.2} s", ours_total.as_secs_f64()),
    ));

    // One sandbox: RSS with 1 and 20 containers, then after removal.
    let rss = || pid.and_then(rss_mib);
    rt.block_on(async {
        let mut cs = CreateSandboxRequest::new();
        cs.hostname = "bench".into();
        c.agent.create_sandbox(c.ctx(), &cs).await.expect("sandbox");
        let mut cc = CreateContainerRequest::new();
        (cc.container_id, cc.OCI) = ("pause".into(), Some(spec::pause(None)).into());
        c.agent.create_container(c.ctx(), &cc).await.expect("pause");
    });
    let with_pause = rss();
    let wall = rt.block_on(parallel(c, rootfs, 20));
    let with_20 = rss();
    rt.block_on(async {
        let all = (0..20).map(|i| {
            let c = c.clone();
            async move {
                let mut rm = RemoveContainerRequest::new();
                (rm.container_id, rm.timeout) = (format!("p{i}"), 10);
                c.agent.remove_container(c.ctx(), &rm).await.expect("remove");
            }
        });
        futures::future::join_all(all).await;
        c.agent
            .destroy_sandbox(c.ctx(), &DestroySandboxRequest::new())
            .await
            .expect("destroy");
    });
    let after = rss();
    rows.push(Row::new(
        "20 containers create+start in parallel, total",
        format!("{:.1} ms", ms(wall)),
    ));
    if let (Some(i), Some(p), Some(t), Some(af)) = (idle, with_pause, with_20, after) {
        rows.push(Row::new("RSS with 1 container (pause)", format!("{p:.1} MiB")).baseline(kata::RSS_1_MIB, p, "MiB"));
        let per = (t - p) / 20.0;
        rows.push(
            Row::new("RSS with 21 containers", format!("{t:.1} MiB ({per:.2}/ctr)"))
                .target("growth under 1 MiB per container", per < 1.0),
        );
        rows.push(
            Row::new("RSS after removing them all", format!("{af:.1} MiB"))
                .target("back near idle (warm idle + 1 MiB)", af <= i + 1.0),
        );
    }
}
