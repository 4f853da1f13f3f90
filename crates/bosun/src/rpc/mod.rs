//! The ttrpc server: services, request logging, graceful shutdown.
//!
//! Handlers are thin: decode, validate, call the domain, map the error.

mod agent;
mod bounds;
mod convert;
mod convert_answer;
mod convert_container;
mod convert_net;
mod guest;
mod health;
pub mod metrics;
mod server;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use slog::{debug, error, info, o, warn, Logger};
use std::panic::AssertUnwindSafe;

pub use health::{AGENT_VERSION, PROTOCOL_VERSION};

use crate::error::AgentError;
use crate::protocols::{agent_ttrpc, health_ttrpc};
use crate::sandbox::Sandbox;
use crate::transport::listen::Bound;

/// What the services are configured with.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Power the VM off after a successful DestroySandbox (as PID 1): of
    /// any sandbox (""), or of the one with this id.
    pub poweroff_on_destroy: Option<String>,
    /// The pod VM's pause bundle (`config.json` + `rootfs/`), used for the
    /// sandbox container of remote-hypervisor mode when present.
    pub pause_bundle: std::path::PathBuf,
    /// The connections' bounds and counters (GetMetrics shows them).
    pub gate: Option<Arc<crate::transport::limits::Gate>>,
    /// The agent policy.
    pub policy: Arc<crate::policy::Policy>,
}

/// All services bosun registers, by ttrpc service name.
pub fn services(log: &Logger, sandbox: Arc<Sandbox>, opts: Options) -> HashMap<String, ttrpc::r#async::Service> {
    let log = log.new(o!("subsystem" => "rpc"));
    let mut s = agent_ttrpc::create_agent_service(Arc::new(agent::Agent {
        log: log.clone(),
        sandbox,
        net: crate::net::Network::default(),
        poweroff_on_destroy: opts.poweroff_on_destroy,
        pause_bundle: opts.pause_bundle,
        gate: opts.gate,
        policy: opts.policy,
    }));
    s.extend(health_ttrpc::create_health(Arc::new(health::Health { log })));
    s
}

/// Runs `f` as the body of method `method`: logs it at debug with its
/// duration, a failure at warn with its code. A panic (a bug) is caught and
/// answered as INTERNAL: it never takes the server down or leaves the call
/// without an answer.
pub(crate) async fn traced<T, F>(log: &Logger, method: &'static str, f: F) -> ttrpc::Result<T>
where
    F: Future<Output = Result<T, AgentError>>,
{
    let start = Instant::now();
    let r = match AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            error!(log, "handler panicked"; "method" => method, "panic" => &what);
            Err(AgentError::Internal(format!(
                "{method} failed unexpectedly ({what}); see the agent log"
            )))
        }
    };
    let took = start.elapsed();
    let us = took.as_micros() as u64;
    match r {
        Ok(v) => {
            metrics::record(method, "OK", took);
            debug!(log, "rpc done"; "method" => method, "us" => us);
            Ok(v)
        }
        Err(e) => {
            metrics::record(method, metrics::code_name(wire::code(&e)), took);
            warn!(log, "rpc failed"; "method" => method, "us" => us, "code" => ?wire::code(&e), "error" => %e);
            Err(e.into())
        }
    }
}

/// Serves on `bound` until `stop` resolves, then stops accepting and gives
/// in-flight calls up to `grace` to finish.
pub async fn serve(
    bound: Bound,
    sandbox: Arc<Sandbox>,
    opts: Options,
    log: &Logger,
    grace: Duration,
    stop: impl Future<Output = ()>,
) -> Result<(), ttrpc::Error> {
    // `owner` keeps the socket file until the server is shut down.
    let Bound { listener, owner } = bound;
    info!(log, "serving");
    let stopping = async {
        stop.await;
        info!(log, "shutting down"; "grace_ms" => grace.as_millis() as u64);
    };
    if !server::serve(listener, services(log, sandbox, opts), log, grace, stopping).await {
        warn!(log, "in-flight calls did not finish in time; closing them"; "grace_ms" => grace.as_millis() as u64);
    }
    drop(owner);
    Ok(())
}
