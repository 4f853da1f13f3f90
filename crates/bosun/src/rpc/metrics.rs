//! GetMetrics: Prometheus text exposition (format 0.0.4) of bosun's own
//! process, its calls (counts by method and code, latency histograms) and
//! the guest (memory, CPU time, load), which the kata shim scrapes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, seconds: from a Check (tens of µs) to a pull or
/// a slow teardown (seconds).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Method {
    by_code: BTreeMap<&'static str, u64>,
    /// Cumulative-to-be counts per bucket (not cumulative as stored).
    buckets: [u64; 12],
    sum: f64,
    count: u64,
}

static CALLS: Mutex<BTreeMap<&'static str, Method>> = Mutex::new(BTreeMap::new());

/// The code's name as a metric label.
pub fn code_name(c: ttrpc::Code) -> &'static str {
    use ttrpc::Code::*;
    match c {
        OK => "OK",
        CANCELLED => "CANCELLED",
        UNKNOWN => "UNKNOWN",
        INVALID_ARGUMENT => "INVALID_ARGUMENT",
        DEADLINE_EXCEEDED => "DEADLINE_EXCEEDED",
        NOT_FOUND => "NOT_FOUND",
        ALREADY_EXISTS => "ALREADY_EXISTS",
        PERMISSION_DENIED => "PERMISSION_DENIED",
        RESOURCE_EXHAUSTED => "RESOURCE_EXHAUSTED",
        FAILED_PRECONDITION => "FAILED_PRECONDITION",
        ABORTED => "ABORTED",
        OUT_OF_RANGE => "OUT_OF_RANGE",
        UNIMPLEMENTED => "UNIMPLEMENTED",
        INTERNAL => "INTERNAL",
        UNAVAILABLE => "UNAVAILABLE",
        DATA_LOSS => "DATA_LOSS",
        UNAUTHENTICATED => "UNAUTHENTICATED",
    }
}

/// Records one call of `method` that answered `code` after `took`.
pub fn record(method: &'static str, code: &'static str, took: Duration) {
    let s = took.as_secs_f64();
    let mut calls = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    let m = calls.entry(method).or_default();
    *m.by_code.entry(code).or_default() += 1;
    if let Some(i) = BUCKETS.iter().position(|b| s <= *b) {
        m.buckets[i] += 1;
    }
    m.sum += s;
    m.count += 1;
}

/// How the helpers that set up containers and execs were started.
fn helpers(out: &mut String) {
    let (forked, execd) = crate::container::zygote::starts();
    let name = "bosun_helper_starts_total";
    help(
        out,
        name,
        "counter",
        "Helpers started (one per container and exec), by how: forked by the zygote or exec'd.",
    );
    let _ = writeln!(out, "{name}{{how=\"zygote\"}} {forked}\n{name}{{how=\"exec\"}} {execd}");
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

/// The whole exposition; with the connections' counters when given.
pub fn render(gate: Option<&crate::transport::limits::Gate>) -> String {
    let mut out = String::new();
    process(&mut out);
    if let Some(g) = gate {
        connections(&mut out, g);
    }
    calls(&mut out);
    helpers(&mut out);
    policy(&mut out);
    guest(&mut out);
    out
}

fn connections(out: &mut String, g: &crate::transport::limits::Gate) {
    for (name, what, v) in [
        ("bosun_connections", "Connections served now.", g.connections()),
        (
            "bosun_pending_requests",
            "Requests read and not yet answered, over every connection.",
            g.pending(),
        ),
        (
            "bosun_buffered_request_bytes",
            "Bytes of incomplete request frames held, over every connection.",
            g.buffered(),
        ),
    ] {
        help(out, name, "gauge", what);
        let _ = writeln!(out, "{name} {v}");
    }
}

fn policy(out: &mut String) {
    help(
        out,
        "bosun_policy_denials_total",
        "counter",
        "Requests the agent policy refused, by request type.",
    );
    for (r, n) in crate::policy::denials() {
        let _ = writeln!(out, "bosun_policy_denials_total{{request=\"{r}\"}} {n}");
    }
}

fn calls(out: &mut String) {
    let calls = CALLS.lock().unwrap_or_else(|e| e.into_inner());
    help(
        out,
        "bosun_rpc_requests_total",
        "counter",
        "Calls answered, by method and ttrpc code.",
    );
    for (m, s) in calls.iter() {
        for (code, n) in &s.by_code {
            let _ = writeln!(out, "bosun_rpc_requests_total{{method=\"{m}\",code=\"{code}\"}} {n}");
        }
    }
    help(
        out,
        "bosun_rpc_duration_seconds",
        "histogram",
        "Time to answer a call, by method.",
    );
    for (m, s) in calls.iter() {
        let mut acc = 0;
        for (b, n) in BUCKETS.iter().zip(s.buckets.iter()) {
            acc += n;
            let _ = writeln!(
                out,
                "bosun_rpc_duration_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {acc}"
            );
        }
        let _ = writeln!(
            out,
            "bosun_rpc_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}",
            s.count
        );
        let _ = writeln!(out, "bosun_rpc_duration_seconds_sum{{method=\"{m}\"}} {}", s.sum);
        let _ = writeln!(out, "bosun_rpc_duration_seconds_count{{method=\"{m}\"}} {}", s.count);
    }
}

/// `key: N kB` lines of a /proc status-like file, in bytes.
fn kb_fields(text: &str, keys: &[&str]) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            keys.contains(&k)
                .then(|| {
                    v.split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                        .map(|n| (k.to_string(), n * 1024))
                })
                .flatten()
        })
        .collect()
}

fn process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mem = kb_fields(&status, &["VmRSS", "VmSize"]);
    if let Some((_, rss)) = mem.iter().find(|(k, _)| k == "VmRSS") {
        help(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the agent.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {rss}");
    }
    if let Some((_, vsz)) = mem.iter().find(|(k, _)| k == "VmSize") {
        help(
            out,
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory of the agent.",
        );
        let _ = writeln!(out, "process_virtual_memory_bytes {vsz}");
    }
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(t) = threads {
        help(out, "process_threads", "gauge", "Threads of the agent.");
        let _ = writeln!(out, "process_threads {t}");
    }
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    help(out, "process_open_fds", "gauge", "Open file descriptors of the agent.");
    let _ = writeln!(out, "process_open_fds {fds}");
    // utime + stime (fields 14, 15 of /proc/self/stat), in clock ticks.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks: Option<u64> = stat.rfind(')').and_then(|i| {
        let f: Vec<&str> = stat[i + 2..].split(' ').collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    if let Some(t) = ticks {
        help(out, "process_cpu_seconds_total", "counter", "CPU time of the agent.");
        let _ = writeln!(out, "process_cpu_seconds_total {}", t as f64 / clock_ticks());
    }
}

/// USER_HZ: 100 on every Linux the guest runs (the kernel fixes it for
/// /proc, whatever CONFIG_HZ is).
fn clock_ticks() -> f64 {
    100.0
}

fn guest(out: &mut String) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    help(
        out,
        "guest_memory_bytes",
        "gauge",
        "Guest memory from /proc/meminfo, by field.",
    );
    for (k, v) in kb_fields(
        &meminfo,
        &[
            "MemTotal",
            "MemFree",
            "MemAvailable",
            "Buffers",
            "Cached",
            "SwapTotal",
            "SwapFree",
        ],
    ) {
        let _ = writeln!(out, "guest_memory_bytes{{field=\"{k}\"}} {v}");
    }
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    if let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) {
        help(
            out,
            "guest_cpu_seconds_total",
            "counter",
            "Guest CPU time from /proc/stat, by mode.",
        );
        let modes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
        for (m, v) in modes.iter().zip(cpu.split_whitespace().skip(1)) {
            if let Ok(t) = v.parse::<u64>() {
                let _ = writeln!(
                    out,
                    "guest_cpu_seconds_total{{mode=\"{m}\"}} {}",
                    t as f64 / clock_ticks()
                );
            }
        }
    }
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    help(out, "guest_cpus_online", "gauge", "Guest CPUs online.");
    let _ = writeln!(out, "guest_cpus_online {cpus}");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let l: Vec<&str> = load.split_whitespace().collect();
    help(out, "guest_load_average", "gauge", "Guest load average, by window.");
    for (w, v) in ["1m", "5m", "15m"].iter().zip(l.iter()) {
        let _ = writeln!(out, "guest_load_average{{window=\"{w}\"}} {v}");
    }
}
