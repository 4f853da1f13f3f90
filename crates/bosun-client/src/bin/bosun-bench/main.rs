//! `bosun-bench` (`make bench`): latency, throughput, memory and size of a
//! Kata-protocol agent, side by side with the plain-socket floor measured in
//! the same run and the Kata agent 4.1.0's published figures. It speaks
//! only the Kata protocol: `--addr` points it at any agent, `--vs` measures
//! a second one interleaved with the first.

mod floor;
mod load;
mod pods;
mod pull;
mod stats;
mod throughput;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::Client;
use stats::{spread, us, Blocks, Row, Samples, Spread};

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
    load: Option<usize>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        addr: None,
        vs: None,
        vs_restart: None,
        json: false,
        checks: 20_000,
        pods: 100,
        load: None,
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
            "--load" => o.load = Some(val("--load")?.parse().map_err(|_| "--load: a number of CPU hogs")?),
            "-h" | "--help" => return Err("usage: bosun-bench [--addr ADDR] [--vs ADDR [--vs-restart CMD]] [--checks N] [--pods N] [--load N] [--json]\n  without --addr, starts its own bosun (next to this binary) in private namespaces\n  --vs-restart CMD  a shell command that starts a fresh --vs agent and returns, run before each of its pods\n                    (the Kata agent exits after DestroySandbox)\n  --load N          then every row again while N CPU hogs (stress-ng) run in a cgroup of their own (root)".into()),
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
    let child = load::in_own_session(&mut cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", exe.display()))?;
    Ok((OwnAgent { child, _dir: dir }, addr))
}

/// Whether the CPU scheduler groups processes by session (autogroup).
fn autogroup() -> &'static str {
    match std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").map(|s| s.trim().to_string()) {
        Ok(v) if v == "1" => "on",
        Ok(_) => "off",
        Err(_) => "absent",
    }
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

/// RssAnon in MiB: what a leak would grow (text pages the pods' code
/// paths mapped are clean and shared, and stay mapped).
pub fn anon_mib(pid: i32) -> Option<f64> {
    status_mib(pid, "RssAnon:")
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

/// Check latency: blocks of plain-socket round trips (the floor) and of
/// each agent's Checks, in turn, so that machine noise falls on all of them
/// alike and every block of an agent has a floor block beside it.
async fn check_blocks(
    floor: &mut floor::Floor,
    clients: &[&Client],
    n: usize,
) -> Result<(Blocks, Vec<Blocks>), String> {
    const BLOCK: usize = 1000;
    let mut fl = Blocks::default();
    let mut out = vec![Blocks::default(); clients.len()];
    for c in clients {
        for _ in 0..1000 {
            let _ = c.check().await; // warm-up
        }
    }
    let mut done = 0;
    while done < n {
        let k = BLOCK.min(n - done);
        fl.0.push(floor.block(k)?);
        for (i, c) in clients.iter().enumerate() {
            let mut s = Samples::default();
            for _ in 0..k {
                let t = Instant::now();
                c.check().await.map_err(|e| format!("Check: {e}"))?;
                s.0.push(t.elapsed());
            }
            out[i].0.push(s);
        }
        done += k;
    }
    Ok((fl, out))
}

/// Per-block ratios of an agent's p50 to the floor's block beside it.
fn floor_ratios(agent: &Blocks, floor: &Blocks) -> Vec<f64> {
    agent
        .p50s_us()
        .iter()
        .zip(floor.p50s_us())
        .map(|(a, f)| a / f)
        .collect()
}

/// The Check rows: the floor, latency percentiles, the ratio to the floor.
fn check_rows(
    rt: &tokio::runtime::Runtime,
    floor: &mut floor::Floor,
    clients: &[&Client],
    n: usize,
    loaded: bool,
    rows: &mut Vec<Row>,
) -> Result<(), String> {
    let (fl, lat) = rt.block_on(check_blocks(floor, clients, n))?;
    let f = spread(&fl.p50s_us());
    rows.push(
        Row::new(
            "plain unix socket round trip p50, 2 processes (the floor)",
            f.show("us"),
        )
        .baseline(9.4, f.median, "us"),
    );
    let ours = spread(&lat[0].p50s_us());
    let theirs = lat.get(1).map(|b| spread(&b.p50s_us()));
    rows.push(
        Row::new(
            &format!("Check p50 ({n} sequential calls, {} blocks)", fl.0.len()),
            ours.show("us"),
        )
        .vs(theirs.map(|t| t.show("us")))
        .measured_ratio(ours.median, theirs.map(|t| t.median).unwrap_or(0.0))
        .baseline(kata::CHECK_P50_US, ours.median, "us"),
    );
    let all: Vec<Samples> = lat.iter().map(Blocks::all).collect();
    let q_us = |i: usize, q: f64| all.get(i).map(|s| us(s.pct(q))).unwrap_or(0.0);
    let vs_us = |q: f64| all.get(1).map(|s| format!("{:.1} us", us(s.pct(q))));
    let p99 = Row::new("Check p99", format!("{:.1} us", q_us(0, 0.99)))
        .vs(vs_us(0.99))
        .measured_ratio(q_us(0, 0.99), q_us(1, 0.99))
        .baseline(kata::CHECK_P99_US, q_us(0, 0.99), "us");
    // While the pod's workload keeps the CPUs busy: no worse than Kata.
    rows.push(match loaded {
        true => p99.vs_target(
            "at most the --vs agent's (Kata)",
            q_us(0, 0.99),
            all.get(1).map(|_| q_us(1, 0.99)),
            1.0,
        ),
        false => p99,
    });
    rows.push(Row::new("Check p99.9", format!("{:.1} us", q_us(0, 0.999))).vs(vs_us(0.999)));
    let ratio = spread(&floor_ratios(&lat[0], &fl));
    let show = |s: Spread| format!("{:.2}x ({:.2}-{:.2})", s.median, s.lo, s.hi);
    rows.push(
        Row::new("Check p50 / floor (per block)", show(ratio))
            .vs(lat.get(1).map(|b| show(spread(&floor_ratios(b, &fl)))))
            .baseline(kata::FLOOR_RATIO, ratio.median, "x")
            .target("within 1.5x of the floor", ratio.median <= 1.5),
    );
    Ok(())
}

/// Check throughput at 1, 8 and 64 connections, both agents in turn
/// (`throughput.rs`); the target is the issue's: 2x the `--vs` agent (or
/// the Kata reference without one) quiet, at least its equal under load.
fn throughput_rows(addr: &Address, vs: Option<&Address>, loaded: bool, rows: &mut Vec<Row>) -> Result<(), String> {
    let show = |s: &Spread| format!("{:.0}k/s ({:.0}-{:.0})", s.median / 1e3, s.lo / 1e3, s.hi / 1e3);
    for conns in [1, 8, 64] {
        let addrs: Vec<&Address> = std::iter::once(addr).chain(vs).collect();
        let t = throughput::measure(&addrs, conns)?;
        let ours = t[0].median;
        let base = if conns == 1 { kata::TPUT_1 } else { kata::TPUT_8 };
        let mut r = Row::new(&format!("Check throughput, {conns} connection(s)"), show(&t[0]))
            .vs(t.get(1).map(show))
            .measured_ratio(ours, t.get(1).map_or(0.0, |s| s.median))
            .baseline(base, ours, "/s");
        if conns > 1 {
            let theirs = t.get(1).map_or(base, |s| s.median);
            r = match loaded {
                false => r.target("at least 2x the --vs agent (Kata)", ours >= 2.0 * theirs),
                true => r.target("at least the --vs agent (Kata)", ours >= theirs),
            };
        }
        rows.push(r);
    }
    Ok(())
}

fn fail(e: String) -> ! {
    load::stop();
    eprintln!("bosun-bench: {e}");
    std::panic::resume_unwind(Box::new(e))
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
    let mut vs = o.vs.as_ref().map(|a| {
        // With --vs-restart the first agent is the bench's too, started like
        // every later one (in a session of its own).
        if let Some(cmd) = o.vs_restart.as_deref() {
            rt.block_on(pods::restart(cmd)).unwrap_or_else(|e| fail(e));
        }
        pods::Peer {
            addr: a,
            client: rt.block_on(connect(a)).unwrap_or_else(|e| fail(format!("--vs: {e}"))),
            restart: o.vs_restart.as_deref(),
        }
    });
    let pid = agent_pid(&addr);
    let idle = pid.and_then(rss_mib);
    let mut rows = Vec::new();

    let mut floor = floor::Floor::start().unwrap_or_else(|e| fail(e));
    let floor_threads = floor::threads(o.checks).unwrap_or_else(|e| fail(e));
    let mut clients = vec![&c];
    if let Some(v) = &vs {
        clients.push(&v.client);
    }
    check_rows(&rt, &mut floor, &clients, o.checks, false, &mut rows).unwrap_or_else(|e| fail(e));
    rows.insert(
        1,
        Row::new(
            "plain unix socket round trip p50, 2 threads",
            format!("{:.1} us", us(floor_threads)),
        ),
    );
    throughput_rows(&addr, o.vs.as_ref(), false, &mut rows).unwrap_or_else(|e| fail(e));

    // Idle again after the Check load: the baseline for the leak check
    // (the allocator keeps some of what 64 connections used).
    let warm = pid.and_then(rss_mib);
    let warm_anon = pid.and_then(anon_mib);
    let rootfs_dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("tempdir: {e}")));
    let rootfs = match root {
        true => Some(pods::busybox_rootfs(rootfs_dir.path()).unwrap_or_else(|e| fail(e))),
        false => None,
    };
    match &rootfs {
        Some(r) => pods::run(&rt, &c, vs.as_mut(), r, o.pods, pid, warm_anon, false, &mut rows),
        None => rows.push(Row::new("pod lifecycle", "SKIP (needs root)".into())),
    }
    if let Some(n) = o.load {
        // Every row again, both agents under the same load, in this run.
        let before = rows.len();
        let started = match root {
            true => load::run(n),
            false => Err("SKIP (needs root: the hogs' cgroup)".into()),
        };
        match started {
            Err(e) if !root => rows.push(Row::new("under load", e)),
            Err(e) => rows.push(Row::new("under load", format!("FAILED: {e}"))),
            Ok(()) => {
                // The --vs agent may have exited after its last pod (Kata's does).
                if let Some(v) = vs.as_mut() {
                    rt.block_on(v.fresh()).unwrap_or_else(|e| fail(e));
                }
                let mut clients = vec![&c];
                if let Some(v) = &vs {
                    clients.push(&v.client);
                }
                check_rows(&rt, &mut floor, &clients, o.checks, true, &mut rows).unwrap_or_else(|e| fail(e));
                throughput_rows(&addr, o.vs.as_ref(), true, &mut rows).unwrap_or_else(|e| fail(e));
                if let Some(r) = &rootfs {
                    pods::run(&rt, &c, vs.as_mut(), r, o.pods, pid, warm_anon, true, &mut rows);
                }
                load::stop();
            }
        }
        for r in &mut rows[before..] {
            r.name = format!("[{n} CPU hogs] {}", r.name);
        }
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
    if let (Some(w), Some(a)) = (warm, warm_anon) {
        rows.push(Row::new(
            "RSS idle after the Check load",
            format!("{w:.1} MiB ({a:.1} anonymous)"),
        ));
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
            "bosun-bench on {} ({} cores, sched_autogroup {}; each agent started in a session of its own); agent {}",
            hostname(),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            autogroup(),
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
