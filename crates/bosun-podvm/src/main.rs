//! `bosun-podvm`: the remote hypervisor service Kata's runtime-rs calls in
//! remote mode (`hypervisor_name = "remote"`), serving
//! `hypervisor.Hypervisor` on a unix socket and booting one QEMU VM with
//! bosun inside per pod, in the pod's network namespace. See README,
//! "Kata remote mode on one machine".

mod guest;
mod net;
mod options;
mod procs;
mod relay;
mod service;
mod vm;

use std::path::Path;
use std::sync::Arc;

use slog::{error, info};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match options::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(options::Parsed::Run(o)) => *o,
        Ok(options::Parsed::Help(h)) => {
            print!("{h}");
            return;
        }
        Err(e) => {
            eprintln!("bosun-podvm: {e}");
            std::process::exit(2);
        }
    };
    let (log, _guard) = bosun::logging::root(bosun::config::LogFormat::Json, opts.log_level);
    let log = log.new(slog::o!("service" => "bosun-podvm"));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(log, "runtime"; "error" => %e);
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(opts, log.clone())) {
        error!(log, "stopped"; "error" => %e);
        drop(_guard);
        std::process::exit(1);
    }
}

/// Refuses a socket another instance answers on (never steals it);
/// removes a stale one.
fn claim(path: &Path) -> Result<(), String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!("{} is served by another process", path.display()));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Ok(_) => Err(format!("{} exists and is not a socket", path.display())),
        Err(_) => Ok(()),
    }
}

async fn serve(opts: options::Options, log: slog::Logger) -> Result<(), String> {
    for f in [&opts.kernel, &opts.initrd] {
        if !f.is_file() {
            return Err(format!("{}: not a file (make guest-image)", f.display()));
        }
    }
    if let Some(parent) = opts.listen.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    claim(&opts.listen)?;
    let listen = opts.listen.clone();
    let vms = vm::Manager::open(opts, log.clone())?;
    let svc = service::Service { vms, log: log.clone() };
    let mut server = ttrpc::r#async::Server::new()
        .bind(&format!("unix://{}", listen.display()))
        .map_err(|e| format!("listen {}: {e}", listen.display()))?
        .register_service(bosun_protocols::remote_ttrpc::create_hypervisor(Arc::new(svc)));
    std::fs::set_permissions(&listen, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", listen.display()))?;
    server.start().await.map_err(|e| format!("serve: {e}"))?;
    info!(log, "serving"; "listen" => %listen.display());
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // The VMs keep running: a restarted service adopts them from their records.
    info!(log, "shutting down; VMs keep running");
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&listen);
    Ok(())
}
