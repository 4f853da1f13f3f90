//! `bosun-bench` (`make bench`): latency, throughput, memory and size of a
//! Kata-protocol agent, side by side with the plain-socket floor measured in
//! the same run and the Kata agent 4.1.0's published figures. It speaks
//! only the Kata protocol: `--addr` points it at any agent, `--vs` measures
//! a second one interleaved with the first.

mod floor;
mod pods;
mod pull;
mod stats;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::Client;
use stats::{us, Row, Samples};

/// The Kata agent 4.1.0 on a 2-core machine of this kind (issue 10).
mod kata {
    pub const CHECK_P50_US: f64 = 39.4;
    pub const CHECK_P99_US: f64 = 78.0;
    pub const FLOOR_RATIO: f64 = 4.18;
    pub const TPUT_1: f64 = 24_500.0;
    pub const TPUT_8: f64 = 110_000.0;
    pub const CREATE_MS: f64 = 10.8;
    pub const START_MS: f64 = 0.86;
    pub const REMOVE_MS: f64 = 11.8;
    pub const CSR_MS: f64 = 23.3;
    pub const IDLE_RSS_MIB: f64 = 12.2;
    pub const RSS_1_MIB: f64 = 55.0;
    pub const BINARY_MB: f64 = 26.2;
}

struct Opts {
    addr: Option<Address>,
    vs: Option<Address>,
    vs_restart: Option<String>,
    json: bool,
    checks: usize,
    pods: usize,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: None,
        vs: None,
        vs_restart: None,
        json: false,
        checks: 20_000,
        pods: 100,
    };
    let mut it = std::env::args().skip(1).peekable();
    if it.peek().map(String::as_str) == Some("--floor-server") {
        let path = it.nth(1).ok_or("--floor-server needs a path")?;
        floor::serve(&path);
        std::process::exit(0);
    }
    while let Some(a) = it.next() {
        let mut val = |n: &str| it.next().ok_or(format!("{n} needs a value"));
        match a.as_str() {
            "--addr" => o.addr = Some(Address::parse(&val("--addr")?).map_err(|e| e.to_string())?),
            "--vs" => o.vs = Some(Address::parse(&val("--vs")?).map_err(|e| e.to_string())?),
            "--vs-restart" => o.vs_restart = Some(val("--vs-restart")?),
            "--json" => o.json = true,
            "--checks" => o.checks = val("--checks")?.parse().map_err(|_| "--checks: a number")?,
            "--pods" => o.pods = val("--pods")?.parse().map_err(|_| "--pods: a number")?,
            "-h" | "--help" => return Err("usage: bosun-bench [--addr ADDR] [--vs ADDR [--vs-restart CMD]] [--checks N] [--pods N] [--json]\n  without --addr, starts its own bosun (next to this binary) in private namespaces\n  --vs-restart CMD  a shell command that starts a fresh --vs agent and returns, run before each of its pods\n                    (the Kata agent exits after DestroySandbox)".into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(o)
}

/// A bosun started by the bench, stopped (by pid) when dropped.
struct OwnAgent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Starts the bench's own bosun in private mount, UTS and IPC namespaces,
/// and a private network namespace: `net` (the bench registry's) or a new one.
fn start_own(net: Option<&Path>) -> Result<(OwnAgent, Address), String> {
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("bosun");
    // The run dir (and so the state journal) on tmpfs, as /run is in a
    // guest: an fsync there costs what it costs in production, not what it
    // costs on this machine's disk.
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| e.to_string())?;
    let addr = Address::Unix(dir.path().join("bosun.sock"));
    let mut cmd = bosun_client::local_registry::isolated_command(net);
    cmd.arg(&exe);
    cmd.arg("--server-addr")
        .arg(addr.to_string())
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args([
            "--cgroup-parent",
            "bosun-bench",
            "--log-level",
            "warn",
            "--insecure-registries",
            "127.0.0.1:5000",
        ]);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", exe.display()))?;
    Ok((OwnAgent { child, _dir: dir }, addr))
}

/// Connects and waits until the agent answers Check (10 s bound).
pub async fn connect(addr: &Address) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(addr, Duration::from_secs(30)).await {
            Ok(c) if c.check().await.is_ok() => return Ok(c),
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(_) => return Err(format!("{addr}: Check failed")),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The agent's pid, from the kernel, for a unix-socket agent.
fn agent_pid(addr: &Address) -> Option<i32> {
    let s = match addr {
        Address::Unix(p) => std::os::unix::net::UnixStream::connect(p).ok()?,
        Address::UnixAbstract(n) => bosun::sys::socket::connect_abstract(n).ok()?,
        _ => return None,
    };
    bosun::sys::socket::peer_pid(&s).ok()
}

/// VmRSS in MiB.
fn rss_mib(pid: i32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// A kB field of /proc/PID/status (VmRSS:, VmHWM:) in MiB.
pub fn status_mib(pid: i32, key: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Size in MB, and whether the ELF has no interpreter (statically linked).
fn binary(pid: i32) -> Option<(f64, bool)> {
    let exe = std::fs::read(format!("/proc/{pid}/exe")).ok()?;
    let u16_at = |o: usize| u16::from_le_bytes([exe[o], exe[o + 1]]) as usize;
    if exe.len() < 64 || &exe[..4] != b"\x7fELF" {
        return None;
    }
    let u64_at = |o: usize| u64::from_le_bytes(exe[o..o + 8].try_into().unwrap_or([0; 8])) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    let has_interp = (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        exe.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            == Some(3)
    });
    Some((exe.len() as f64 / 1e6, !has_interp))
}

async fn check_latency(clients: &[&Client], n: usize) -> Result<Vec<Samples>, String> {
    // Blocks of calls alternate between the agents so that machine noise
    // falls on all of them alike.
    const BLOCK: usize = 1000;
    let mut out = vec![Samples::default(); clients.len()];
    for c in clients {
        for _ in 0..1000 {
            let _ = c.check().await; // warm-up
        }
    }
    let mut done = 0;
    while done < n {
        let k = BLOCK.min(n - done);
        for (i, c) in clients.iter().enumerate() {
            for _ in 0..k {
                let t = Instant::now();
                c.check().await.map_err(|e| format!("Check: {e}"))?;
                out[i].0.push(t.elapsed());
            }
        }
        done += k;
    }
    Ok(out)
}

fn throughput(addr: &Address, conns: usize) -> Result<f64, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(connect(addr).await?);
        }
        let stop = Instant::now() + Duration::from_secs(1);
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|c| {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        if c.check().await.is_err() {
                            return Err(());
                        }
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t
                .await
                .map_err(|e| e.to_string())?
                .map_err(|_| "Check failed under load".to_string())?;
        }
        Ok(total as f64)
    })
}

fn fail(e: String) -> ! {
    eprintln!("bosun-bench: {e}");
    std::process::exit(1)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bosun-bench: {e}");
            std::process::exit(2);
        }
    };
    let root = nix::unistd::Uid::effective().is_root();
    // The pull rows' registry, when the bench runs its own bosun as root.
    let registry = match (root, &o.addr) {
        (true, None) => Some(pull::setup()),
        _ => None,
    };
    let net = registry.as_ref().and_then(|r| r.as_ref().ok()).map(|r| r.ns.path());
    let (_own, addr) = match &o.addr {
        Some(a) => (None, a.clone()),
        None => match start_own(net.as_deref()) {
            Ok((a, addr)) => (Some(a), addr),
            Err(e) => {
                eprintln!("bosun-bench: {e}");
                std::process::exit(1);
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    let c = rt.block_on(connect(&addr)).unwrap_or_else(|e| fail(e));
    let mut vs = o.vs.as_ref().map(|a| pods::Peer {
        addr: a,
        client: rt.block_on(connect(a)).unwrap_or_else(|e| fail(format!("--vs: {e}"))),
        restart: o.vs_restart.as_deref(),
    });
    let pid = agent_pid(&addr);
    let idle = pid.and_then(rss_mib);
    let mut rows = Vec::new();

    let floor = floor::processes(o.checks).unwrap_or_else(|e| fail(e));
    let floor_threads = floor::threads(o.checks).unwrap_or_else(|e| fail(e));
    let mut clients = vec![&c];
    if let Some(v) = &vs {
        clients.push(&v.client);
    }
    let lat = rt
        .block_on(check_latency(&clients, o.checks))
        .unwrap_or_else(|e| fail(e));
    let (p50, p99, p999) = (lat[0].pct(0.5), lat[0].pct(0.99), lat[0].pct(0.999));
    let vs_us = |q: f64| lat.get(1).map(|s| format!("{:.1} us", us(s.pct(q))));
    let vs_q = |q: f64| lat.get(1).map(|s| us(s.pct(q))).unwrap_or(0.0);
    rows.push(
        Row::new(
            "plain unix socket round trip p50, 2 processes (the floor)",
            format!("{:.1} us", us(floor)),
        )
        .baseline(9.4, us(floor), "us"),
    );
    rows.push(Row::new(
        "plain unix socket round trip p50, 2 threads",
        format!("{:.1} us", us(floor_threads)),
    ));
    rows.push(
        Row::new(
            &format!("Check p50 ({} sequential calls)", o.checks),
            format!("{:.1} us", us(p50)),
        )
        .vs(vs_us(0.5))
        .measured_ratio(us(p50), vs_q(0.5))
        .baseline(kata::CHECK_P50_US, us(p50), "us"),
    );
    rows.push(
        Row::new("Check p99", format!("{:.1} us", us(p99)))
            .vs(vs_us(0.99))
            .measured_ratio(us(p99), vs_q(0.99))
            .baseline(kata::CHECK_P99_US, us(p99), "us"),
    );
    rows.push(Row::new("Check p99.9", format!("{:.1} us", us(p999))).vs(vs_us(0.999)));
    let ratio = us(p50) / us(floor);
    rows.push(
        Row::new("Check p50 / floor", format!("{ratio:.2}x"))
            .vs(lat.get(1).map(|s| format!("{:.2}x", us(s.pct(0.5)) / us(floor))))
            .baseline(kata::FLOOR_RATIO, ratio, "x")
            .target("within 2x of the floor", ratio <= 2.0),
    );
    for conns in [1, 8, 64] {
        let t = throughput(&addr, conns).unwrap_or_else(|e| fail(e));
        let mut r = Row::new(
            &format!("Check throughput, {conns} connection(s)"),
            format!("{:.0}/s", t),
        );
        if let Some(v) = &o.vs {
            r = match throughput(v, conns) {
                Ok(theirs) => r.vs(Some(format!("{theirs:.0}/s"))).measured_ratio(t, theirs),
                Err(e) => r.vs(Some(format!("FAILED: {e}"))),
            };
        }
        r = match conns {
            1 => r.baseline(kata::TPUT_1, t, "/s"),
            _ => r.baseline(kata::TPUT_8, t, "/s"),
        };
        rows.push(r);
    }

    // Idle again after the Check load: the baseline for the leak check
    // (the allocator keeps some of what 64 connections used).
    let warm = pid.and_then(rss_mib);
    if root {
        let rootfs_dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
        let rootfs = pods::busybox_rootfs(rootfs_dir.path()).unwrap_or_else(|e| fail(e));
        pods::run(&rt, &c, vs.as_mut(), &rootfs, o.pods, pid, warm, &mut rows);
    } else {
        rows.push(Row::new("pod lifecycle", "SKIP (needs root)".into()));
    }
    match &registry {
        Some(Ok(reg)) => {
            let mut r = pull::rows(&rt, &c, reg, pid);
            if o.vs.is_some() {
                // The Kata agent pulls through a Confidential Data Hub process
                // (image-rs), which the bench does not run, and its namespace
                // does not reach the bench's registry.
                for row in r.iter_mut().skip(1).take(2) {
                    row.vs = Some("not measured (needs CDH)".into());
                }
            }
            rows.extend(r);
        }
        Some(Err(e)) => rows.push(Row::new("image pull", format!("FAILED: registry set-up: {e}"))),
        None => rows.push(Row::new(
            "image pull",
            "SKIP (needs root and the bench's own bosun: it runs in the bench registry's namespace)".into(),
        )),
    }
    if let Some(i) = idle {
        rows.push(
            Row::new("RSS idle (after start)", format!("{i:.1} MiB"))
                .baseline(kata::IDLE_RSS_MIB, i, "MiB")
                .target("under 4 MiB", i < 4.0),
        );
    }
    if let Some(w) = warm {
        rows.push(Row::new("RSS idle after the Check load", format!("{w:.1} MiB")));
    }
    if let Some((mb, is_static)) = pid.and_then(binary) {
        rows.push(
            Row::new("binary size", format!("{mb:.1} MB"))
                .baseline(kata::BINARY_MB, mb, "MB")
                // 8 MB before the policy engine (regorus) came in.
                .target("stripped static under 12 MB", mb < 12.0 && is_static),
        );
        rows.push(Row::new(
            "statically linked",
            if is_static { "yes" } else { "no (glibc)" }.into(),
        ));
    }
    if o.json {
        println!("{}", stats::json(&rows));
    } else {
        println!(
            "bosun-bench on {} ({} cores); agent {}",
            hostname(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            addr
        );
        stats::print(&rows, o.vs.as_ref().map(|a| a.to_string()).as_deref());
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
