//! `--hostile`: the adversarial scenarios, for any Kata-protocol agent, so
//! that bosun and another agent can be attacked the same way side by side.
//! Each says PASS when the agent kept its promise (refused, stayed bounded,
//! kept serving), FAIL with what it did otherwise, and prints its figures.
//! The wire scenarios need the agent on this machine behind a unix socket
//! (`--local`): they read its resident memory through its pid.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::Client;
use bosun_protocols::agent::*;

use crate::calls::Calls;
use crate::ctx::{check, mark, ok, pod, running, storage, Ctx, Outcome, Verdict};

/// The hostile scenarios, by name, with what each attacks.
pub const ALL: &[(&str, &str)] = &[
    (
        "storage_over_proc",
        "an ephemeral storage at /proc is refused; the agent still runs a pod",
    ),
    (
        "storage_over_cgroups",
        "an ephemeral storage at /sys/fs/cgroup is refused; the agent still runs a pod",
    ),
    (
        "storage_over_dev",
        "an ephemeral storage at /dev is refused; the agent still runs a pod",
    ),
    (
        "bind_agent_state",
        "an OCI bind of /run (the agent's state) into a container is refused",
    ),
    (
        "one_id_twenty_connections",
        "20 creates of one id at once: the winner is whole, the rest OK or ALREADY_EXISTS",
    ),
    (
        "creates_cut_off",
        "creates cut off by 1-25 ms deadlines: each retry succeeds and the pod tears down clean",
    ),
    (
        "deep_copy_file",
        "CopyFile 500 levels deep is refused or cheap; Check on another connection stays fast",
    ),
    (
        "announced_frames",
        "150 connections announce 4 MiB frames and send a byte: resident memory stays bounded",
    ),
    (
        "almost_whole_frames",
        "150 connections send all but the last byte of a 4 MiB frame: resident memory stays bounded",
    ),
    (
        "pipelined_unread",
        "Checks pipelined without reading the answers: the sender is blocked, memory bounded",
    ),
];

/// What the hostile scenarios need besides the plain ones.
pub struct Hostile<'a> {
    pub ctx: &'a Ctx<'a>,
    pub addr: &'a Address,
    pub local: bool,
}

pub async fn run(name: &str, h: &Hostile<'_>) -> Result<String, Verdict> {
    match name {
        "storage_over_proc" => storage_over(h, "/proc").await,
        "storage_over_cgroups" => storage_over(h, "/sys/fs/cgroup").await,
        "storage_over_dev" => storage_over(h, "/dev").await,
        "bind_agent_state" => bind_agent_state(h).await,
        "one_id_twenty_connections" => one_id_twenty(h).await,
        "creates_cut_off" => creates_cut_off(h).await,
        "deep_copy_file" => deep_copy_file(h).await,
        "announced_frames" => announced_frames(h).await,
        "almost_whole_frames" => almost_whole_frames(h).await,
        "pipelined_unread" => pipelined_unread(h).await,
        other => Err(Verdict::Fail(format!("no hostile scenario {other}"))),
    }
}

/// After an attack: a workload still starts and answers an exec.
async fn still_works(c: &Ctx<'_>) -> Outcome {
    running(c, "survivor").await?;
    ok(
        c.calls.exec("survivor", "probe", &["echo", "alive"]).await,
        "ExecProcess after the attack",
    )?;
    let out = ok(
        c.calls.read_all("survivor", "probe").await,
        "ReadStdout after the attack",
    )?;
    check(out == b"alive\n", format!("the exec after the attack said {out:?}"))
}

async fn storage_over(h: &Hostile<'_>, target: &str) -> Result<String, Verdict> {
    let c = h.ctx;
    pod(c, "hostile").await?;
    let s = storage("ephemeral", "tmpfs", "tmpfs", Path::new(target));
    let r = c
        .calls
        .create_spec(
            "workload",
            bosun_client::spec::container(Some(&c.rootfs), &["true".into()]),
            vec![s],
        )
        .await;
    let answer = match &r {
        Ok(()) => "accepted".to_string(),
        Err(f) => said(f),
    };
    if let Err(v) = still_works(c).await {
        let why = match v {
            Verdict::Fail(d) | Verdict::Skip(d) => d,
        };
        return Err(Verdict::Fail(format!("storage at {target}: {answer}; then {why}")));
    }
    check(
        r.is_err(),
        format!("a tmpfs over {target} was accepted (the pod still ran)"),
    )?;
    Ok(answer)
}

async fn bind_agent_state(h: &Hostile<'_>) -> Result<String, Verdict> {
    let c = h.ctx;
    pod(c, "hostile").await?;
    let mut spec = bosun_client::spec::container(Some(&c.rootfs), &["ls".into(), "/agent".into()]);
    let mut m = bosun_protocols::oci::Mount::new();
    (m.destination, m.source, m.type_) = ("/agent".into(), "/run".into(), "bind".into());
    m.options = vec!["rbind".into(), "rw".into()];
    spec.Mounts.push(m);
    let r = c.calls.create_spec("workload", spec, vec![]).await;
    match r {
        Err(f) => Ok(said(&f)),
        Ok(()) => {
            let _ = c.calls.start("workload").await;
            let out = c.calls.read_all("workload", "").await.unwrap_or_default();
            let seen = String::from_utf8_lossy(&out)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            Err(Verdict::Fail(format!("accepted: the container lists /run: {seen}")))
        }
    }
}

async fn one_id_twenty(h: &Hostile<'_>) -> Result<String, Verdict> {
    let c = h.ctx;
    pod(c, "race").await?;
    let clients = connections(h.addr, 20).await?;
    let spec = bosun_client::spec::container(Some(&c.rootfs), &["sleep".into(), mark().into()]);
    let s = storage("ephemeral", "tmpfs", "tmpfs", &c.mnt.join("race"));
    let calls = clients.iter().map(|cl| {
        let (spec, s) = (spec.clone(), s.clone());
        async move { Calls(cl).create_spec("workload", spec, vec![s]).await }
    });
    let got = futures::future::join_all(calls).await;
    let mut codes = std::collections::BTreeMap::new();
    for r in &got {
        *codes
            .entry(r.as_ref().map(|_| "OK".to_string()).unwrap_or_else(said))
            .or_insert(0) += 1;
    }
    let summary = codes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let fine = got.iter().all(|r| r.as_ref().is_ok_or_exists());
    check(fine, format!("answers: {summary}"))?;
    ok(c.calls.start("workload").await, "StartContainer of the winner")?;
    ok(
        c.calls.exec("workload", "e1", &["echo", "whole"]).await,
        "ExecProcess in the winner",
    )?;
    let out = ok(c.calls.read_all("workload", "e1").await, "ReadStdout")?;
    check(out == b"whole\n", format!("the winner's exec said {out:?} ({summary})"))?;
    Ok(summary)
}

trait OkOrExists {
    fn is_ok_or_exists(&self) -> bool;
}

impl OkOrExists for Result<&(), &crate::calls::Fail> {
    fn is_ok_or_exists(&self) -> bool {
        match self {
            Ok(_) => true,
            Err(f) => f.code == ttrpc::Code::ALREADY_EXISTS,
        }
    }
}

async fn creates_cut_off(h: &Hostile<'_>) -> Result<String, Verdict> {
    let c = h.ctx;
    pod(c, "cut").await?;
    let mut cut = 0;
    for (i, ms) in (1..=25u64).step_by(2).enumerate() {
        let id = format!("c{i}");
        let mut r = CreateContainerRequest::new();
        let spec = bosun_client::spec::container(Some(&c.rootfs), &["sleep".into(), mark().into()]);
        (r.container_id, r.exec_id, r.OCI) = (id.clone(), id.clone(), Some(spec).into());
        r.storages = vec![storage("ephemeral", "tmpfs", "tmpfs", &c.mnt.join(&id))];
        let ctx = ttrpc::context::with_timeout(Duration::from_millis(ms).as_nanos() as i64);
        if c.calls.0.agent.create_container(ctx, &r).await.is_err() {
            cut += 1;
        }
        ok(
            c.calls.send_container(&r).await,
            &format!("the retry after a create cut at {ms} ms"),
        )?;
        ok(
            c.calls.start(&id).await,
            &format!("StartContainer after a create cut at {ms} ms"),
        )?;
    }
    Ok(format!("{cut} of 13 cut off"))
}

async fn deep_copy_file(h: &Hostile<'_>) -> Result<String, Verdict> {
    let c = h.ctx;
    ok(c.calls.sandbox("deep").await, "CreateSandbox")?;
    let probe = Client::connect(h.addr, Duration::from_secs(10))
        .await
        .map_err(|e| Verdict::Fail(format!("a second connection: {e}")))?;
    let mut r = CopyFileRequest::new();
    r.path = format!("/run/kata-containers/shared/containers/hostile/{}f", "d/".repeat(500));
    (r.file_size, r.file_mode, r.dir_mode, r.data) = (1, 0o100644, 0o750, b"x".to_vec());
    let copy = async {
        let t = Instant::now();
        let res = c.calls.copy_file(&r).await;
        (t.elapsed(), res)
    };
    let check_while = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t = Instant::now();
        let _ = probe.check().await;
        t.elapsed()
    };
    let ((took, res), check_took) = tokio::join!(copy, check_while);
    let answer = res
        .as_ref()
        .map(|_| "OK".to_string())
        .unwrap_or_else(|f| format!("{:?}", f.code));
    let figures = format!(
        "CopyFile {answer} in {} ms; Check meanwhile {} ms",
        took.as_millis(),
        check_took.as_millis()
    );
    check(
        check_took < Duration::from_millis(500),
        format!("the agent stalled: {figures}"),
    )?;
    Ok(figures)
}

/// Resident memory of the agent at `addr` (a local unix socket), KiB.
fn agent_rss(addr: &Address) -> Result<(i32, u64), Verdict> {
    let path = match addr {
        Address::Unix(p) => p.clone(),
        _ => return Err(Verdict::Skip("needs --local and a unix socket path".into())),
    };
    let s = UnixStream::connect(&path).map_err(|e| Verdict::Fail(format!("connect: {e}")))?;
    let pid = bosun::sys::socket::peer_pid(&s).map_err(|e| Verdict::Fail(format!("peer pid: {e}")))?;
    Ok((pid, rss_kib(pid)))
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn frame_header(len: u32, stream: u32) -> Vec<u8> {
    let mut h = len.to_be_bytes().to_vec();
    h.extend_from_slice(&stream.to_be_bytes());
    h.extend_from_slice(&[1, 0]);
    h
}

fn socket_path(h: &Hostile<'_>) -> Result<std::path::PathBuf, Verdict> {
    match (h.local, h.addr) {
        (true, Address::Unix(p)) => Ok(p.clone()),
        _ => Err(Verdict::Skip("needs --local and a unix socket path".into())),
    }
}

async fn announced_frames(h: &Hostile<'_>) -> Result<String, Verdict> {
    let path = socket_path(h)?;
    // One whole 3 MiB request first, as a CopyFile chunk would be: once
    // such a block is freed, glibc serves the next ones from its heap, and
    // a calloc'd body is then touched (resident) at once.
    let mut warm = UnixStream::connect(&path).map_err(|e| Verdict::Fail(format!("connect: {e}")))?;
    let mut body = vec![0x0a, 11];
    body.extend_from_slice(b"grpc.Health");
    body.extend_from_slice(&[0x12, 5]);
    body.extend_from_slice(b"Check");
    body.extend_from_slice(&[0x1a, 0x80, 0x80, 0xc0, 0x01]); // field 3 (payload), 3 MiB
    body.resize(body.len() + (3 << 20), 0);
    let mut f = frame_header(body.len() as u32, 1);
    f.extend_from_slice(&body);
    let _ = warm.write_all(&f);
    let _ = warm.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = std::io::Read::read(&mut warm, &mut [0u8; 64]);
    drop(warm);
    let (pid, before) = agent_rss(h.addr)?;
    let conns: Vec<UnixStream> = (0..150)
        .filter_map(|_| {
            let mut s = UnixStream::connect(&path).ok()?;
            s.write_all(&frame_header(4 << 20, 1)).ok()?;
            s.write_all(&[0]).ok()?;
            Some(s)
        })
        .collect();
    // Let the agent read what was sent (it has nothing to answer).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib(pid).saturating_sub(before);
    let serves = Client::connect(h.addr, Duration::from_secs(10))
        .await
        .is_ok_and(|_| true);
    drop(conns);
    let figures = format!("{} connections, RSS +{} MiB", 150, grown >> 10);
    check(serves && grown < 48 << 10, format!("unbounded: {figures}"))?;
    Ok(figures)
}

async fn almost_whole_frames(h: &Hostile<'_>) -> Result<String, Verdict> {
    let path = socket_path(h)?;
    let (pid, before) = agent_rss(h.addr)?;
    let body = vec![0u8; (4 << 20) - 1];
    let senders: Vec<std::thread::JoinHandle<Option<UnixStream>>> = (0..150)
        .map(|_| {
            let (path, body) = (path.clone(), body.clone());
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).ok()?;
                s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(&frame_header(4 << 20, 1)).ok()?;
                let _ = s.write_all(&body); // a closed connection is the agent's answer
                Some(s)
            })
        })
        .collect();
    let conns: Vec<UnixStream> = senders.into_iter().filter_map(|t| t.join().ok().flatten()).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss_kib(pid).saturating_sub(before);
    let serves = Client::connect(h.addr, Duration::from_secs(10)).await.is_ok();
    drop(conns);
    let figures = format!("150 connections x 4 MiB - 1, RSS +{} MiB", grown >> 10);
    check(serves && grown < 160 << 10, format!("unbounded: {figures}"))?;
    Ok(figures)
}

async fn pipelined_unread(h: &Hostile<'_>) -> Result<String, Verdict> {
    const MOST: u32 = 200_000;
    let path = socket_path(h)?;
    let (pid, before) = agent_rss(h.addr)?;
    let mut body = vec![0x0a, 11];
    body.extend_from_slice(b"grpc.Health");
    body.extend_from_slice(&[0x12, 5]);
    body.extend_from_slice(b"Check");
    let mut s = UnixStream::connect(&path).map_err(|e| Verdict::Fail(format!("connect: {e}")))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| Verdict::Fail(e.to_string()))?;
    let mut sent = 0u32;
    let blocked = loop {
        if sent == MOST {
            break false;
        }
        let mut f = frame_header(body.len() as u32, 2 * sent + 1);
        f.extend_from_slice(&body);
        match s.write_all(&f) {
            Ok(()) => sent += 1,
            Err(_) => break true,
        }
    };
    let grown = rss_kib(pid).saturating_sub(before);
    drop(s);
    let figures = format!(
        "{sent} requests {}, RSS +{} MiB",
        if blocked { "then blocked" } else { "sent, never blocked" },
        grown >> 10
    );
    check(blocked && grown < 64 << 10, format!("unbounded: {figures}"))?;
    Ok(figures)
}

/// A refusal as code and the start of its message.
fn said(f: &crate::calls::Fail) -> String {
    let msg: String = f.msg.lines().next().unwrap_or("").chars().take(90).collect();
    format!("{:?} ({msg})", f.code)
}

async fn connections(addr: &Address, n: usize) -> Result<Vec<Client>, Verdict> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(
            Client::connect(addr, Duration::from_secs(10))
                .await
                .map_err(|e| Verdict::Fail(format!("connection {}: {e}", v.len() + 1)))?,
        );
    }
    Ok(v)
}
