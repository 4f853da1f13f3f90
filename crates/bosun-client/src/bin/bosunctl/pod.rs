//! Pod commands of bosunctl: sandbox, create, start, exec, wait, kill, rm,
//! logs, run. Each is a sequence of Kata protocol calls.

use std::io::Write;
use std::path::PathBuf;

use bosun_client::{spec, Client};
use bosun_protocols::agent::*;

use crate::args::Args;
use crate::{describe, Failure, Out};

pub async fn sandbox(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    match a.positional("sandbox action (create|destroy)")?.as_str() {
        "create" => {
            let mut r = CreateSandboxRequest::new();
            r.sandbox_id = a.option("--id")?.unwrap_or_default();
            r.hostname = a.option("--hostname")?.unwrap_or_default();
            r.sandbox_pidns = a.flag("--pidns");
            r.dns = a.options("--dns")?;
            r.guest_hook_path = a.option("--hook-path")?.unwrap_or_default();
            // NAME or NAME,key=value,...
            r.kernel_modules = a
                .options("--kernel-module")?
                .iter()
                .map(|m| {
                    let mut parts = m.split(',');
                    let mut k = KernelModule::new();
                    k.name = parts.next().unwrap_or_default().to_string();
                    k.parameters = parts.map(str::to_string).collect();
                    k
                })
                .collect();
            a.done()?;
            c.agent.create_sandbox(c.ctx(), &r).await.map_err(describe)?;
            Ok(Out::Ok)
        }
        "destroy" => {
            let verbose = a.flag("--verbose");
            a.done()?;
            let res = c
                .agent
                .destroy_sandbox(c.ctx(), &DestroySandboxRequest::new())
                .await
                .map_err(describe);
            if verbose {
                print_report(c, "").await;
            }
            res.map(|_| Out::Ok)
        }
        other => Err(format!("unknown sandbox action {other:?}").into()),
    }
}

pub async fn create(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let id = a.positional("container id")?;
    let rootfs = a.option("--rootfs")?.map(PathBuf::from);
    let bundle = a.option("--bundle")?.map(PathBuf::from);
    let pause = a.flag("--pause");
    let image = a.option("--image")?;
    let annotations = a
        .options("--annotation")?
        .into_iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or(format!("--annotation {kv:?}: expected KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cmd = a.rest();
    if let Some(image) = image {
        // As runtime-rs in remote-hypervisor mode: the guest pulls it.
        if rootfs.is_some() || bundle.is_some() {
            return Err("--image and --rootfs/--bundle exclude each other".into());
        }
        let mut s = if pause {
            spec::pause(None)
        } else if cmd.is_empty() {
            return Err("create --image needs a command after -- (or --pause with --image pause)".into());
        } else {
            spec::container(None, &cmd)
        };
        s.Annotations.extend(annotations);
        let r = spec::guest_pull_request(&id, &image, s, pause);
        c.agent.create_container(c.ctx(), &r).await.map_err(describe)?;
        return Ok(Out::Ok);
    }
    let mut s = match (&bundle, pause, cmd.is_empty()) {
        (Some(b), _, _) => spec::bundle_spec(b, &cmd).map_err(Failure::Usage)?,
        (None, true, _) => spec::pause(rootfs.as_deref()),
        (None, false, false) => spec::container(rootfs.as_deref(), &cmd),
        (None, false, true) => return Err("create needs --bundle DIR, a command after --, or --pause".into()),
    };
    s.Annotations.extend(annotations);
    let mut r = CreateContainerRequest::new();
    r.container_id = id.clone();
    r.exec_id = id;
    r.OCI = Some(s).into();
    c.agent.create_container(c.ctx(), &r).await.map_err(describe)?;
    Ok(Out::Ok)
}

/// GetDiagnosticData of `log_type`: its data.
async fn diagnostic(c: &Client, log_type: &str) -> Result<String, Failure> {
    let mut q = GetDiagnosticDataRequest::new();
    q.log_type = log_type.into();
    Ok(c.agent.get_diagnostic_data(c.ctx(), &q).await.map_err(describe)?.data)
}

/// What the image store holds (GetDiagnosticData "images", a bosun
/// extension).
pub async fn images(c: &Client, a: &mut Args, json: bool) -> Result<Out, Failure> {
    a.done()?;
    let data = diagnostic(c, "images").await?;
    if json {
        return Ok(Out::Text(data));
    }
    let v: serde_json::Value = serde_json::from_str(&data).map_err(|e| Failure::Call(format!("bad inventory: {e}")))?;
    if v.is_null() {
        return Ok(Out::Text("no image store".into()));
    }
    let mut out = format!("{:<60} {:<20} LAYERS", "IMAGE", "MANIFEST");
    for (r, rec) in v["images"].as_object().into_iter().flatten() {
        let d = rec["manifest_digest"].as_str().unwrap_or("");
        let n = rec["layers"].as_array().map(|l| l.len()).unwrap_or(0);
        out += &format!("\n{r:<60} {:<20} {n}", &d[..d.len().min(19)]);
    }
    let layers = v["layers"].as_object().cloned().unwrap_or_default();
    let bytes: u64 = layers.values().filter_map(|b| b.as_u64()).sum();
    out += &format!(
        "\n{} layer(s), {:.1} MiB in {}",
        layers.len(),
        bytes as f64 / 1048576.0,
        v["dir"].as_str().unwrap_or("")
    );
    if let Some(p) = v["pulling"].as_array().filter(|p| !p.is_empty()) {
        out += &format!("; {} being pulled", p.len());
    }
    Ok(Out::Text(out))
}

/// Containers and their state (GetDiagnosticData "containers", a bosun
/// extension: the Kata protocol has no list call).
pub async fn ps(c: &Client, a: &mut Args, json: bool) -> Result<Out, Failure> {
    a.done()?;
    let data = diagnostic(c, "containers").await?;
    if json {
        return Ok(Out::Text(data));
    }
    let v: serde_json::Value = serde_json::from_str(&data).map_err(|e| Failure::Call(format!("bad listing: {e}")))?;
    let mut out = format!("{:<24} {:<14} {:>8} {:<6} EXECS", "ID", "STATUS", "PID", "PAUSE");
    for c in v.as_array().into_iter().flatten() {
        let execs: Vec<&str> = c["execs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .collect();
        out += &format!(
            "\n{:<24} {:<14} {:>8} {:<6} {}",
            c["id"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or(""),
            c["pid"],
            c["pause"],
            execs.join(",")
        );
    }
    Ok(Out::Text(out))
}

/// StatsContainer, as JSON.
pub async fn stats(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let mut r = StatsContainerRequest::new();
    r.container_id = a.positional("container id")?;
    a.done()?;
    let s = c.agent.stats_container(c.ctx(), &r).await.map_err(describe)?;
    let cg = s.cgroup_stats.as_ref();
    let mem = cg.and_then(|c| c.memory_stats.usage.as_ref());
    let v = serde_json::json!({
        "cpu_total_ns": cg.and_then(|c| c.cpu_stats.cpu_usage.as_ref()).map(|u| u.total_usage),
        "memory_usage": mem.map(|m| m.usage),
        "memory_limit": mem.map(|m| m.limit),
        "pids": cg.map(|c| c.pids_stats.current),
        "network": s.network_stats.iter().map(|n| serde_json::json!({"name": n.name, "rx_bytes": n.rx_bytes, "tx_bytes": n.tx_bytes})).collect::<Vec<_>>(),
    });
    Ok(Out::Text(serde_json::to_string_pretty(&v).unwrap_or_default()))
}

pub async fn start(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let mut r = StartContainerRequest::new();
    r.container_id = a.positional("container id")?;
    a.done()?;
    c.agent.start_container(c.ctx(), &r).await.map_err(describe)?;
    Ok(Out::Ok)
}

pub async fn exec(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let id = a.positional("container id")?;
    let exec_id = a.positional("exec id")?;
    let stdin = a.flag("-i");
    let tty = a.flag("-t");
    let cmd = a.rest();
    if cmd.is_empty() {
        return Err("exec needs a command after --".into());
    }
    let mut p = spec::process(&cmd);
    if tty {
        // The size from LINES/COLUMNS when the shell exports them, else VT100's.
        let dim = |k: &str, d: u32| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
        let mut b = bosun_protocols::oci::Box::new();
        (b.Height, b.Width) = (dim("LINES", 24), dim("COLUMNS", 80));
        p.Terminal = true;
        p.ConsoleSize = Some(b).into();
    }
    let mut r = ExecProcessRequest::new();
    r.container_id = id.clone();
    r.exec_id = exec_id.clone();
    r.process = Some(p).into();
    c.agent.exec_process(c.ctx(), &r).await.map_err(describe)?;
    if !stdin {
        return logs_and_wait(c, &id, &exec_id).await;
    }
    // Input and output at the same time: an interactive process answers
    // before its stdin ends.
    let (fwd, out) = tokio::join!(forward_stdin(c, &id, &exec_id), logs_and_wait(c, &id, &exec_id));
    fwd?;
    out
}

/// Copies bosunctl's stdin to the process, then closes it (empty write).
async fn forward_stdin(c: &Client, id: &str, exec_id: &str) -> Result<(), Failure> {
    use tokio::io::AsyncReadExt;
    let mut input = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| Failure::Call(format!("read stdin: {e}")))?;
        let mut r = WriteStreamRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        r.data = buf[..n].to_vec();
        c.agent.write_stdin(c.ctx(), &r).await.map_err(describe)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// Streams stdout and stderr until EOF, then waits; the process's status
/// becomes bosunctl's exit code.
async fn logs_and_wait(c: &Client, id: &str, exec_id: &str) -> Result<Out, Failure> {
    copy_streams(c, id, exec_id).await?;
    let mut r = WaitProcessRequest::new();
    r.container_id = id.into();
    r.exec_id = exec_id.into();
    let st = c.agent.wait_process(c.long_poll(), &r).await.map_err(describe)?;
    Ok(Out::Status(st.status))
}

async fn copy_streams(c: &Client, id: &str, exec_id: &str) -> Result<(), Failure> {
    let (o, e) = tokio::join!(copy_stream(c, id, exec_id, false), copy_stream(c, id, exec_id, true));
    o.and(e)
}

async fn copy_stream(c: &Client, id: &str, exec_id: &str, stderr: bool) -> Result<(), Failure> {
    loop {
        let mut r = ReadStreamRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        r.len = 1 << 20;
        let resp = if stderr {
            c.agent.read_stderr(c.long_poll(), &r).await
        } else {
            c.agent.read_stdout(c.long_poll(), &r).await
        };
        let data = resp.map_err(describe)?.data;
        if data.is_empty() {
            return Ok(());
        }
        let w = if stderr {
            std::io::stderr().write_all(&data)
        } else {
            std::io::stdout().write_all(&data)
        };
        w.map_err(|e| Failure::Call(format!("write output: {e}")))?;
    }
}

pub async fn logs(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let id = a.positional("container id")?;
    let exec_id = a.maybe_positional().unwrap_or_default();
    a.done()?;
    copy_streams(c, &id, &exec_id).await?;
    Ok(Out::Ok)
}

pub async fn wait(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let mut r = WaitProcessRequest::new();
    r.container_id = a.positional("container id")?;
    r.exec_id = a.maybe_positional().unwrap_or_default();
    a.done()?;
    let st = c.agent.wait_process(c.long_poll(), &r).await.map_err(describe)?;
    Ok(Out::Status(st.status))
}

/// The containers a bulk operation acts on: every one not protected (the
/// pause container, or annotated `io.bosun.protected=true`). The skipped
/// ones are named on stderr: a bulk stop never silently spares, or hits,
/// the pod's control containers.
async fn bulk_targets(c: &Client) -> Result<Vec<String>, Failure> {
    let data = diagnostic(c, "containers").await?;
    let v: serde_json::Value = serde_json::from_str(&data).map_err(|e| Failure::Call(format!("bad listing: {e}")))?;
    let mut ids = Vec::new();
    for ctr in v.as_array().into_iter().flatten() {
        let id = ctr["id"].as_str().unwrap_or_default().to_string();
        if ctr["protected"].as_bool().unwrap_or(true) {
            eprintln!("bosunctl: skipping protected container {id:?} (name it to act on it)");
        } else {
            ids.push(id);
        }
    }
    Ok(ids)
}

pub async fn kill(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    // Options first: their values must not be taken for positionals.
    let sig = a.option("--signal")?.unwrap_or_else(|| "15".into());
    let signal: u32 = sig
        .parse()
        .map_err(|_| format!("--signal {sig:?}: expected a signal number"))?;
    let targets = if a.flag("--all") {
        a.done()?;
        bulk_targets(c)
            .await?
            .into_iter()
            .map(|id| (id, String::new()))
            .collect()
    } else {
        let id = a.positional("container id (or --all)")?;
        let exec = a.maybe_positional().unwrap_or_default();
        a.done()?;
        vec![(id, exec)]
    };
    for (id, exec) in targets {
        let mut r = SignalProcessRequest::new();
        (r.container_id, r.exec_id, r.signal) = (id, exec, signal);
        c.agent.signal_process(c.ctx(), &r).await.map_err(describe)?;
    }
    Ok(Out::Ok)
}

pub async fn rm(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let verbose = a.flag("--verbose");
    let t = a.option("--timeout")?.unwrap_or_else(|| "10".into());
    let timeout: u32 = t
        .parse()
        .map_err(|_| format!("--timeout {t:?}: expected whole seconds"))?;
    let ids = if a.flag("--all") {
        a.done()?;
        bulk_targets(c).await?
    } else {
        let id = a.positional("container id (or --all)")?;
        a.done()?;
        vec![id]
    };
    for id in ids {
        let mut r = RemoveContainerRequest::new();
        (r.container_id, r.timeout) = (id, timeout);
        let res = c.agent.remove_container(c.ctx(), &r).await.map_err(describe);
        if verbose {
            print_report(c, &r.container_id).await;
        }
        res?;
    }
    Ok(Out::Ok)
}

/// Prints the agent's teardown report (GetDiagnosticData "teardown"): each
/// step, its result, what was left.
async fn print_report(c: &Client, container_id: &str) {
    let mut q = GetDiagnosticDataRequest::new();
    q.log_type = "teardown".into();
    q.container_id = container_id.into();
    match c.agent.get_diagnostic_data(c.ctx(), &q).await {
        Ok(r) => {
            for step in r.data.split("; ") {
                println!("  {step}");
            }
        }
        Err(e) => eprintln!(
            "bosunctl: no teardown report: {}",
            match describe(e) {
                Failure::Call(m) | Failure::Usage(m) => m,
            }
        ),
    }
}

/// create + start + output + wait + rm.
pub async fn run(c: &Client, a: &mut Args) -> Result<Out, Failure> {
    let id = a.positional("container id")?;
    let rootfs = a.option("--rootfs")?.ok_or("run needs --rootfs DIR")?;
    let cmd = a.rest();
    if cmd.is_empty() {
        return Err("run needs a command after --".into());
    }
    let mut r = CreateContainerRequest::new();
    r.container_id = id.clone();
    r.exec_id = id.clone();
    r.OCI = Some(spec::container(Some(std::path::Path::new(&rootfs)), &cmd)).into();
    c.agent.create_container(c.ctx(), &r).await.map_err(describe)?;
    let mut s = StartContainerRequest::new();
    s.container_id = id.clone();
    let started = c.agent.start_container(c.ctx(), &s).await.map_err(describe);
    let out = match started {
        Ok(_) => logs_and_wait(c, &id, "").await,
        Err(e) => Err(e),
    };
    let mut rm = RemoveContainerRequest::new();
    rm.container_id = id;
    rm.timeout = 10;
    let removed = c.agent.remove_container(c.ctx(), &rm).await.map_err(describe);
    let out = out?;
    removed?;
    Ok(out)
}
