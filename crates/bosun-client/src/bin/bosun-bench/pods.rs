//! Pod lifecycle latencies, 20 containers in parallel, and memory. Every
//! call's failure becomes a row that says what failed, never a panic: the
//! bench is pointed at agents that behave differently (the Kata agent exits
//! after DestroySandbox, refuses one-letter ids and a pause without a
//! rootfs), and that difference is a result.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_client::{spec, Client};
use bosun_protocols::agent::*;

use crate::stats::{ms, Row, Samples};
use crate::{anon_mib, kata, rss_mib};

/// Ids every agent accepts (the Kata agent refuses one-letter ids).
const PAUSE: &str = "bench-pause";
const WORK: &str = "bench-work";
const EXEC: &str = "bench-exec";
/// The pause's process: the busybox rootfs has no /pause, and the Kata
/// agent needs a real rootfs for it (only bosun has a built-in pause).
const PAUSE_ARGS: &[&str] = &["sleep", "2147483647"];

/// A minimal busybox rootfs in `dir`.
pub fn busybox_rootfs(dir: &Path) -> Result<PathBuf, String> {
    spec::busybox_rootfs(dir, &["sh", "true", "sleep"]).map_err(|e| format!("busybox rootfs: {e}"))
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
    /// CreateContainer after the agent sat idle (`IDLE`).
    create_idle: Samples,
}

/// Pods whose workload is created after the agent sat idle, and for how
/// long: a runtime rarely creates containers back to back, and some kernel
/// paths (an RCU grace period behind a cgroup migration) cost more when
/// nothing ran just before.
const IDLE_PODS: usize = 10;
const IDLE: Duration = Duration::from_millis(300);
/// The quiet spell before each agent's pod when agents alternate: the
/// other's last work (a process exiting, its namespaces going) is over.
const SETTLE: Duration = Duration::from_millis(50);

/// Runs one call; its time, or what failed.
async fn timed<T>(what: &str, f: impl std::future::Future<Output = ttrpc::Result<T>>) -> Result<Duration, String> {
    let t = Instant::now();
    match f.await {
        Ok(_) => Ok(t.elapsed()),
        Err(ttrpc::Error::RpcStatus(st)) => Err(format!("{what}: {:?}: {}", st.code(), first_line(st.message()))),
        Err(e) => Err(format!("{what}: {}", first_line(&e.to_string()))),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

fn pause_request(rootfs: &Path) -> CreateContainerRequest {
    let mut sp = spec::pause(Some(rootfs));
    if let Some(p) = sp.Process.as_mut() {
        p.Args = s(PAUSE_ARGS);
    }
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.exec_id, cc.OCI) = (PAUSE.into(), PAUSE.into(), Some(sp).into());
    cc
}

fn container_request(id: &str, rootfs: &Path) -> CreateContainerRequest {
    let mut cc = CreateContainerRequest::new();
    (cc.container_id, cc.exec_id, cc.OCI) = (
        id.into(),
        id.into(),
        Some(spec::container(Some(rootfs), &s(&["sleep", "300"]))).into(),
    );
    cc
}

fn start_request(id: &str) -> StartContainerRequest {
    let mut st = StartContainerRequest::new();
    st.container_id = id.into();
    st
}

fn remove_request(id: &str) -> RemoveContainerRequest {
    let mut rm = RemoveContainerRequest::new();
    (rm.container_id, rm.timeout) = (id.into(), 10);
    rm
}

/// A sandbox with its pause running; returns the CreateSandbox time.
async fn sandbox_with_pause(c: &Client, rootfs: &Path) -> Result<Duration, String> {
    let mut cs = CreateSandboxRequest::new();
    (cs.hostname, cs.sandbox_id) = ("bench".into(), "bench-sandbox".into());
    let sandbox = timed("CreateSandbox", c.agent.create_sandbox(c.ctx(), &cs)).await?;
    timed(
        "CreateContainer (pause)",
        c.agent.create_container(c.ctx(), &pause_request(rootfs)),
    )
    .await?;
    timed(
        "StartContainer (pause)",
        c.agent.start_container(c.ctx(), &start_request(PAUSE)),
    )
    .await?;
    Ok(sandbox)
}

/// One pod's life; with `idle`, the agent sits idle that long before the
/// workload's CreateContainer, and only that call's time is kept.
async fn one_pod(c: &Client, rootfs: &Path, p: &mut Pod, idle: Option<Duration>) -> Result<(), String> {
    let sandbox = sandbox_with_pause(c, rootfs).await?;
    if let Some(d) = idle {
        tokio::time::sleep(d).await;
    }
    let create = timed(
        "CreateContainer",
        c.agent.create_container(c.ctx(), &container_request(WORK, rootfs)),
    )
    .await?;
    let start = timed("StartContainer", c.agent.start_container(c.ctx(), &start_request(WORK))).await?;
    let t = Instant::now();
    let mut ex = ExecProcessRequest::new();
    (ex.container_id, ex.exec_id, ex.process) = (WORK.into(), EXEC.into(), Some(spec::process(&s(&["true"]))).into());
    timed("ExecProcess", c.agent.exec_process(c.ctx(), &ex)).await?;
    let mut w = WaitProcessRequest::new();
    (w.container_id, w.exec_id) = (WORK.into(), EXEC.into());
    timed("WaitProcess", c.agent.wait_process(c.long_poll(), &w)).await?;
    let exec = t.elapsed();
    let remove = timed(
        "RemoveContainer",
        c.agent.remove_container(c.ctx(), &remove_request(WORK)),
    )
    .await?;
    let destroy = timed(
        "DestroySandbox",
        c.agent.destroy_sandbox(c.ctx(), &DestroySandboxRequest::new()),
    )
    .await?;
    if idle.is_some() {
        p.create_idle.0.push(create);
        return Ok(());
    }
    p.sandbox.0.push(sandbox);
    p.create.0.push(create);
    p.start.0.push(start);
    p.exec.0.push(exec);
    p.remove.0.push(remove);
    p.destroy.0.push(destroy);
    p.csr.0.push(create + start + remove);
    Ok(())
}

/// Creates and starts `n` containers at once in one sandbox; returns the
/// wall time, and leaves them running.
async fn parallel(c: &Client, rootfs: &Path, n: usize) -> Result<Duration, String> {
    let t = Instant::now();
    let all = (0..n).map(|i| {
        let c = c.clone();
        let rootfs = rootfs.to_path_buf();
        async move {
            let id = format!("bench-par-{i}");
            timed(
                "CreateContainer",
                c.agent.create_container(c.ctx(), &container_request(&id, &rootfs)),
            )
            .await?;
            timed("StartContainer", c.agent.start_container(c.ctx(), &start_request(&id))).await
        }
    });
    for r in futures::future::join_all(all).await {
        r?;
    }
    Ok(t.elapsed())
}

/// The second agent of `--vs`, and how to get a fresh one for each pod
/// when it exits after DestroySandbox (`--vs-restart CMD`).
pub struct Peer<'a> {
    /// Its address.
    pub addr: &'a bosun::transport::Address,
    /// The connection.
    pub client: Client,
    /// A shell command that starts a fresh agent at `addr` (and returns).
    pub restart: Option<&'a str>,
}

impl Peer<'_> {
    /// A fresh agent (with `--vs-restart`) and a new connection to it.
    pub async fn fresh(&mut self) -> Result<(), String> {
        let Some(cmd) = self.restart else { return Ok(()) };
        restart(cmd).await?;
        self.client = crate::connect(self.addr).await?;
        Ok(())
    }
}

/// Runs the `--vs-restart` command, in a session of its own: the agent it
/// starts stays in that session (see `load::in_own_session`).
pub async fn restart(cmd: &str) -> Result<(), String> {
    let mut sh = std::process::Command::new("sh");
    crate::load::in_own_session(sh.args(["-c", cmd]));
    let st = tokio::process::Command::from(sh)
        .status()
        .await
        .map_err(|e| format!("--vs-restart: {e}"))?;
    if !st.success() {
        return Err(format!("--vs-restart {cmd:?}: {st}"));
    }
    Ok(())
}

fn lat_row(name: &str, s: &Samples, vs: Option<&Result<Pod, String>>, pick: fn(&Pod) -> &Samples) -> Row {
    let fmt = |s: &Samples| format!("{:.2} / {:.2} ms", ms(s.pct(0.5)), ms(s.pct(0.99)));
    let row = Row::new(name, fmt(s));
    match vs {
        Some(Ok(p)) => row
            .vs(Some(fmt(pick(p))))
            .measured_ratio(ms(s.pct(0.5)), ms(pick(p).pct(0.5))),
        Some(Err(e)) => row.vs(Some(format!("FAILED: {e}"))),
        None => row,
    }
}

/// Waits until the process `exiting` (if any) is gone (2 s bound).
async fn gone(exiting: Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while let Some(pid) = exiting.filter(|_| Instant::now() < deadline) {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Measures `pods` pods on `c`, alternating with the `--vs` peer.
fn measure_pods(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    mut vs: Option<&mut Peer<'_>>,
    rootfs: &Path,
    pods: usize,
) -> (Result<Pod, String>, Option<Result<Pod, String>>, Duration) {
    let (mut a, mut b) = (Ok(Pod::default()), vs.as_ref().map(|_| Ok(Pod::default())));
    let mut ours_total = Duration::ZERO;
    for i in 0..pods + IDLE_PODS {
        let idle = (i >= pods).then_some(IDLE);
        // Pods alternate between the agents (noise falls on both alike).
        if let Ok(p) = &mut a {
            if vs.is_some() {
                rt.block_on(async { tokio::time::sleep(SETTLE).await });
            }
            let t1 = Instant::now();
            if let Err(e) = rt.block_on(one_pod(c, rootfs, p, idle)) {
                a = Err(e);
            }
            if idle.is_none() {
                ours_total += t1.elapsed();
            }
        }
        if let (Some(peer), Some(Ok(p))) = (vs.as_deref_mut(), b.as_mut()) {
            let r = rt.block_on(async {
                peer.fresh().await?;
                tokio::time::sleep(SETTLE).await;
                let pid = peer.restart.and_then(|_| crate::agent_pid(peer.addr));
                let r = one_pod(&peer.client, rootfs, p, idle).await;
                // An agent that exits after its pod (Kata's) tears its
                // namespaces down as it exits: that work is its own, and
                // must not land on bosun's next pod.
                gone(pid).await;
                r
            });
            if let Err(e) = r {
                b = Some(Err(e));
            }
        }
    }
    (a, b, ours_total)
}

/// Runs the pod measurements and appends their rows.
#[allow(clippy::too_many_arguments)]
pub fn run(
    rt: &tokio::runtime::Runtime,
    c: &Client,
    mut vs: Option<&mut Peer<'_>>,
    rootfs: &Path,
    pods: usize,
    pid: Option<i32>,
    idle_anon: Option<f64>,
    loaded: bool,
    rows: &mut Vec<Row>,
) {
    let (a, b, ours_total) = measure_pods(rt, c, vs.as_deref_mut(), rootfs, pods);
    let a = match a {
        Ok(a) => a,
        Err(e) => {
            rows.push(Row::new("pod lifecycle", format!("FAILED: {e}")));
            return;
        }
    };
    let bv = b.as_ref();
    rows.push(lat_row(
        &format!("CreateSandbox p50 / p99 ({pods} pods)"),
        &a.sandbox,
        bv,
        |p| &p.sandbox,
    ));
    rows.push(
        lat_row("CreateContainer p50 / p99", &a.create, bv, |p| &p.create).baseline(
            kata::CREATE_MS,
            ms(a.create.pct(0.5)),
            "ms",
        ),
    );
    rows.push(lat_row(
        &format!("CreateContainer after {} ms idle ({IDLE_PODS} pods)", IDLE.as_millis()),
        &a.create_idle,
        bv,
        |p| &p.create_idle,
    ));
    rows.push(
        lat_row("StartContainer p50 / p99", &a.start, bv, |p| &p.start).baseline(
            kata::START_MS,
            ms(a.start.pct(0.5)),
            "ms",
        ),
    );
    let theirs = |pick: fn(&Pod) -> &Samples| match bv {
        Some(Ok(p)) => Some(ms(pick(p).pct(0.5))),
        _ => None,
    };
    rows.push(
        lat_row("exec `true` + WaitProcess p50 / p99", &a.exec, bv, |p| &p.exec).vs_target(
            "at most 0.5x the --vs agent (Kata)",
            ms(a.exec.pct(0.5)),
            theirs(|p| &p.exec),
            0.5,
        ),
    );
    rows.push(
        lat_row("RemoveContainer p50 / p99", &a.remove, bv, |p| &p.remove).baseline(
            kata::REMOVE_MS,
            ms(a.remove.pct(0.5)),
            "ms",
        ),
    );
    rows.push(lat_row("DestroySandbox p50 / p99", &a.destroy, bv, |p| &p.destroy));
    let csr = ms(a.csr.pct(0.5));
    rows.push(
        lat_row("create + start + remove p50 / p99", &a.csr, bv, |p| &p.csr)
            .baseline(kata::CSR_MS, csr, "ms")
            .target("under 8 ms", csr < 8.0)
            .vs_target("at most 0.25x the --vs agent (Kata)", csr, theirs(|p| &p.csr), 0.25),
    );
    rows.push(Row::new(
        &format!("{pods} pods in sequence, total"),
        format!("{:.2} s", ours_total.as_secs_f64()),
    ));
    let ours = memory(rt, c, rootfs, pid);
    let theirs = vs.map(|peer| {
        rt.block_on(peer.fresh())?;
        let pid = crate::agent_pid(peer.addr);
        memory(rt, &peer.client, rootfs, pid)
    });
    match ours {
        Ok(m) => rows.extend(memory_rows(&m, theirs.as_ref(), idle_anon, loaded)),
        Err(e) => rows.push(Row::new("20 containers in parallel", format!("FAILED: {e}"))),
    }
}

/// One agent's sandbox of 21 containers: the parallel start's wall time,
/// and the agent's RSS (when its pid is known) along the way.
struct Memory {
    wall: Duration,
    with_pause: Option<f64>,
    with_21: Option<f64>,
    after: Option<f64>,
    after_anon: Option<f64>,
}

/// One sandbox: RSS with 1 and 21 containers, then after removal.
fn memory(rt: &tokio::runtime::Runtime, c: &Client, rootfs: &Path, pid: Option<i32>) -> Result<Memory, String> {
    let rss = || pid.and_then(rss_mib);
    rt.block_on(sandbox_with_pause(c, rootfs))?;
    let with_pause = rss();
    let wall = rt.block_on(parallel(c, rootfs, 20))?;
    let with_21 = rss();
    rt.block_on(async {
        let all = (0..20).map(|i| {
            let c = c.clone();
            async move {
                let rm = remove_request(&format!("bench-par-{i}"));
                timed("RemoveContainer", c.agent.remove_container(c.ctx(), &rm)).await
            }
        });
        for r in futures::future::join_all(all).await {
            r?;
        }
        timed(
            "DestroySandbox",
            c.agent.destroy_sandbox(c.ctx(), &DestroySandboxRequest::new()),
        )
        .await
    })?;
    // The Kata agent exits after DestroySandbox: no RSS to read then.
    let after = rss();
    let after_anon = pid.and_then(anon_mib);
    Ok(Memory {
        wall,
        with_pause,
        with_21,
        after,
        after_anon,
    })
}

/// The parallel and RSS rows, with the `--vs` agent's figures beside ours.
/// `idle_anon`: the agent's anonymous RSS idle, before the pods.
fn memory_rows(m: &Memory, vs: Option<&Result<Memory, String>>, idle_anon: Option<f64>, loaded: bool) -> Vec<Row> {
    let mib = |v: Option<f64>| v.map(|x| format!("{x:.1} MiB")).unwrap_or_else(|| "not read".into());
    let peer = |f: &dyn Fn(&Memory) -> String| match vs {
        Some(Ok(t)) => Some(f(t)),
        Some(Err(e)) => Some(format!("FAILED: {e}")),
        None => None,
    };
    let theirs = vs.and_then(|r| r.as_ref().ok());
    // The ratio when the --vs agent's figure was read.
    let ratio = |row: Row, ours: f64, their: Option<f64>| match their {
        Some(t) => row.measured_ratio(ours, t),
        None => row,
    };
    let wall = Row::new(
        "20 containers create+start in parallel, total",
        format!("{:.1} ms", ms(m.wall)),
    )
    .vs(peer(&|t| format!("{:.1} ms", ms(t.wall))));
    // Starting containers while the pod's workload keeps the CPUs busy.
    let wall = match loaded {
        true => wall.vs_target(
            "at most 0.5x the --vs agent (Kata)",
            ms(m.wall),
            theirs.map(|t| ms(t.wall)),
            0.5,
        ),
        false => wall,
    };
    let mut rows = vec![ratio(wall, ms(m.wall), theirs.map(|t| ms(t.wall)))];
    if let (Some(i), Some(p), Some(t), Some(af), Some(aa)) = (idle_anon, m.with_pause, m.with_21, m.after, m.after_anon)
    {
        let one = Row::new("RSS with 1 container (pause)", format!("{p:.1} MiB"))
            .vs(peer(&|t| mib(t.with_pause)))
            .baseline(kata::RSS_1_MIB, p, "MiB");
        rows.push(ratio(one, p, theirs.and_then(|x| x.with_pause)));
        let per = (t - p) / 20.0;
        let many = Row::new("RSS with 21 containers", format!("{t:.1} MiB ({per:.2}/ctr)"))
            .vs(peer(&|x| match (x.with_pause, x.with_21) {
                (Some(a), Some(b)) => format!("{b:.1} MiB ({:.2}/ctr)", (b - a) / 20.0),
                _ => "not read".into(),
            }))
            .target("growth under 1 MiB per container", per < 1.0);
        rows.push(ratio(many, t, theirs.and_then(|x| x.with_21)));
        rows.push(
            Row::new(
                "RSS after removing them all",
                format!("{af:.1} MiB ({aa:.1} anonymous)"),
            )
            .vs(peer(&|x| match x.after {
                Some(v) => format!("{v:.1} MiB"),
                None => "exited".into(),
            }))
            .target("anonymous back near idle (warm idle's + 1 MiB)", aa <= i + 1.0),
        );
    }
    rows
}
