//! `bosun`: the agent binary.

use std::process::ExitCode;

use anyhow::Context as _;
use slog::{crit, info};

use bosun::config::{self, Action, Config};
use bosun::process::reaper::Reaper;
use bosun::sandbox::Sandbox;
use bosun::sys::guest as sys_guest;
use bosun::sys::process as sysproc;
use bosun::{container, logging, rpc, transport};

/// Kernel modules a guest image lists for bosun to load at boot, in order.
const GUEST_MODULES: &str = "/etc/bosun/modules";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Internal entry points of the same binary, before any set-up.
    match args.first().map(String::as_str) {
        Some("init") if args.len() == 2 => return exit(container::init::main(std::path::Path::new(&args[1]))),
        Some("pause") if args.len() == 1 => return exit(container::pause::run()),
        Some("share-mount") if args.len() == 5 => return exit(container::shared_mount::helper(&args[1..])),
        Some("zygote") if args.len() <= 2 => {
            let crash_after_fork =
                args.get(1).map(String::as_bytes) == Some(bosun::sys::zygote::CRASH_AFTER_FORK.to_bytes());
            return match bosun::sys::zygote::serve(crash_after_fork) {
                Ok(None) => ExitCode::SUCCESS,
                Ok(Some(config)) => exit(container::init::main(&config)),
                Err(e) => {
                    eprintln!("bosun: zygote: {e}");
                    ExitCode::from(1)
                }
            };
        }
        _ => {}
    }
    if std::process::id() == 1 {
        // The guest's init: set the machine up, and never exit (an init
        // that exits panics the kernel): power off instead, after saying why.
        let code = std::panic::catch_unwind(|| agent_main(&args)).unwrap_or_else(|_| {
            eprintln!("bosun: panic in the agent (see above); powering off");
            ExitCode::from(1)
        });
        eprintln!("bosun: agent stopped ({code:?}); powering off");
        sys_guest::power_off();
    }
    agent_main(&args)
}

fn agent_main(args: &[String]) -> ExitCode {
    // Every agent thread takes a short time slice, so that it preempts the
    // pod's CPU hogs when it wakes (sys/sched.rs). Set here, first: every
    // thread, helper and monitor started later inherits it through clone
    // and exec (container processes get the default back before they exec).
    let _ = bosun::sys::sched::set_slice(bosun::sys::sched::AGENT_SLICE_NS);
    if std::process::id() == 1 {
        for e in sys_guest::mount_base()
            .into_iter()
            .chain(sys_guest::load_modules(std::path::Path::new(GUEST_MODULES)))
        {
            eprintln!("bosun: init: {e}");
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let cfg = match configure(args, &env) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bosun: {e}\nRun `bosun --help` for the flags.");
            return ExitCode::from(2);
        }
    };
    let (log, flush) = logging::root(cfg.log_format, cfg.log_level);
    let code = match run(&cfg, &log) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Never a silent exit: say why, then exit non-zero.
            crit!(log, "bosun exits"; "error" => format!("{e:#}"));
            ExitCode::from(1)
        }
    };
    drop(log);
    drop(flush); // waits until every queued record is written
    code
}

/// Parses flags and resolves the configuration; `None` when only help or
/// the version was asked for (already printed).
fn configure(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Config>, config::ConfigError> {
    let (action, flags) = config::parse_flags(args)?;
    match action {
        Action::Help => {
            print!("{}", config::usage());
            return Ok(None);
        }
        Action::Version => {
            println!(
                "bosun {} (kata agent protocol {})",
                rpc::AGENT_VERSION,
                rpc::PROTOCOL_VERSION
            );
            return Ok(None);
        }
        Action::Serve => {}
    }
    // A configuration file (--config, -c, or agent.config_file= on the
    // kernel command line) stands where the command line would.
    let cmdline = match config::cmdline_source(&flags, env, std::process::id() == 1) {
        Some(path) if !flags.contains_key("config") => Some(config::read_cmdline(&path)?),
        _ => None,
    };
    let file = flags.get("config").cloned().or_else(|| {
        let kv = config::parse_cmdline(cmdline.as_deref().unwrap_or(""));
        kv.get("agent.config_file").cloned()
    });
    let lower = match (file, cmdline) {
        (Some(f), _) => config::Lower::File(config::KataFile::read(std::path::Path::new(&f))?),
        (None, Some(text)) => config::Lower::Cmdline(text),
        (None, None) => config::Lower::None,
    };
    Config::resolve(&flags, env, &lower, &config::FoundFiles::probe()).map(Some)
}

/// The pod's initdata, when there is one: its `policy.rego` written under
/// the run dir and returned as the policy at start, unless a policy file
/// was asked for. A document that does not read stops bosun: starting
/// without the pod owner's policy would open the agent.
fn apply_initdata(cfg: &Config, log: &slog::Logger) -> anyhow::Result<Option<std::path::PathBuf>> {
    let Some(path) = &cfg.initdata else {
        return Ok(None);
    };
    let doc = config::initdata::read(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let files: Vec<&str> = doc.data.keys().map(String::as_str).collect();
    info!(log, "initdata"; "from" => %path.display(), "version" => &doc.version, "digest" => &doc.digest, "files" => files.join(","));
    for name in doc.data.keys().filter(|k| k.as_str() != "policy.rego") {
        info!(log, "initdata: not acted on (no attestation agent or CDH in bosun)"; "file" => name);
    }
    let Some(rego) = doc.data.get("policy.rego") else {
        return Ok(None);
    };
    if cfg.policy_explicit {
        info!(log, "initdata: policy.rego not taken: a policy file was asked for");
        return Ok(None);
    }
    std::fs::create_dir_all(&cfg.run_dir).with_context(|| format!("create {}", cfg.run_dir.display()))?;
    let out = cfg.run_dir.join("initdata-policy.rego");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&out)
            .with_context(|| format!("write {}", out.display()))?;
        f.write_all(rego.as_bytes())
            .with_context(|| format!("write {}", out.display()))?;
    }
    Ok(Some(out))
}

fn run(cfg: &Config, log: &slog::Logger) -> anyhow::Result<()> {
    // The multi-thread runtime, a worker per CPU (at most 4 by default):
    // measured side by side with the current-thread runtime on a 2-core
    // machine it gives a faster Check and 1.2-1.5x the throughput (see
    // README). Slow work is moved to the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .thread_name("bosun-rt")
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async {
        let sources: Vec<String> = cfg.sources.iter().map(|(k, v)| format!("{k}={v}")).collect();
        info!(log, "starting"; "version" => rpc::AGENT_VERSION, "addr" => %cfg.server_addr, "config_sources" => sources.join(","));
        for note in &cfg.notes {
            info!(log, "configuration file"; "note" => note);
        }
        // Container processes are reparented to bosun when their helper
        // exits; bosun reaps them (as PID 1 it does so anyway).
        // Claim the run directory before touching anything in it.
        let _run_lock = bosun::runlock::claim(&cfg.run_dir)?;
        // The policy before anything is served: the one in force before a
        // restart, else the configured file.
        let initdata_policy = apply_initdata(cfg, log)?;
        let source = match (&initdata_policy, &cfg.policy_file) {
            (Some(p), _) => bosun::policy::Source::File(p),
            (None, Some(p)) => bosun::policy::Source::File(p),
            (None, None) => bosun::policy::Source::None,
        };
        let debug = slog::Level::Debug.is_at_least(cfg.log_level);
        let policy = bosun::policy::Policy::open(&cfg.run_dir, source, debug, log).map_err(|e| anyhow::anyhow!("{e}"))?;
        sysproc::set_child_subreaper().context("become a child subreaper")?;
        let reaper = Reaper::start().context("watch SIGCHLD")?;
        let socket = match &cfg.server_addr {
            transport::Address::Unix(p) => Some(p.as_path()),
            _ => None,
        };
        bosun::device::set_hotplug_timeout(cfg.hotplug_timeout);
        let guard = bosun::protect::Guard::new(socket, &cfg.run_dir, &cfg.image_dir);
        let sandbox = std::sync::Arc::new(Sandbox::new(
            log,
            &cfg.run_dir,
            &cfg.cgroup_parent,
            guard,
            reaper,
            cfg.output_buffer,
        ));
        // The agent's own CPU share, after the containers' parent is known
        // (it is found from the cgroup bosun started in).
        let agent_cg = cfg.agent_cgroup.as_deref().and_then(|name| match bosun::cgroup::agent::enter(name) {
            Ok(cg) => {
                info!(log, "agent cgroup: ten times the default CPU weight"; "dir" => %cg.dir.display());
                Some(cg)
            }
            Err(e) => {
                slog::warn!(log, "agent cgroup not entered; bosun shares the CPU as any process"; "name" => name, "error" => %e);
                None
            }
        });
        // After the agent cgroup: the helpers it forks start where the
        // agent is, as exec'd ones do.
        match container::zygote::start().await {
            Ok(pid) => info!(log, "zygote started"; "pid" => pid),
            Err(e) => slog::warn!(log, "no zygote: every helper is exec'd"; "error" => %e),
        }
        let owns_dir = cfg.image_dir.starts_with(&cfg.run_dir);
        let images = bosun::image::ImageStore::open(&cfg.image_dir, owns_dir, cfg.registry.clone(), log)
            .map_err(|e| anyhow::anyhow!("image store: {e}"))?;
        sandbox.set_image_store(images);
        sandbox.recover().await;
        if let Err(e) = sandbox.collect_layers().await {
            slog::warn!(log, "unused image layers not deleted"; "error" => e);
        }
        sandbox.watch_oom();
        sandbox.watch_binds();
        let gate = std::sync::Arc::new(transport::limits::Gate::new(cfg.limits));
        let peers = cfg.peers.clone().with_agent_uid(sysproc::effective_uid());
        let bound = transport::listen::bind(&cfg.server_addr, &peers, gate.clone(), log).context("listen")?;
        let opts = rpc::Options { poweroff_on_destroy: cfg.poweroff_on_destroy.clone(), pause_bundle: cfg.pause_bundle.clone(), gate: Some(gate), policy: std::sync::Arc::new(policy) };
        rpc::serve(bound, sandbox, opts, log, cfg.shutdown_timeout, shutdown_signal()).await.context("serve")?;
        container::zygote::stop().await;
        if let Some(cg) = agent_cg {
            if let Err(e) = cg.leave() {
                slog::warn!(log, "agent cgroup not removed"; "dir" => %cg.dir.display(), "error" => %e);
            }
        }
        info!(log, "stopped");
        Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        // Without signal handlers bosun could not stop gracefully; serve on.
        _ => std::future::pending().await,
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
