//! Talking to the agent in a VM being started: is it up (Check), and the
//! pod's network given to it (UpdateInterface, UpdateRoutes), through the
//! hybrid-vsock socket.

use std::path::Path;
use std::time::Duration;

use bosun_protocols::{agent, agent_ttrpc, health, health_ttrpc, types};
use ttrpc::context;

use crate::net::PodNet;
use crate::relay::AGENT_PORT;

async fn client(vsock: &Path) -> Result<ttrpc::r#async::Client, String> {
    let s = bosun::transport::connect::hybrid_vsock(vsock, AGENT_PORT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(s)))
}

/// Whether the agent answers Check within `within`.
pub async fn ready(vsock: &Path, within: Duration) -> Result<(), String> {
    let c = tokio::time::timeout(within, client(vsock))
        .await
        .map_err(|_| "no connection".to_string())??;
    let h = health_ttrpc::HealthClient::new(c);
    let r = h
        .check(
            context::with_timeout(within.as_nanos() as i64),
            &health::CheckRequest::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match r.status.enum_value() {
        Ok(health::health_check_response::ServingStatus::SERVING) => Ok(()),
        other => Err(format!("Check: {other:?}")),
    }
}

/// Gives the guest the pod's interface (found by its MAC), addresses and
/// routes, as a runtime would.
pub async fn configure(vsock: &Path, pod: &PodNet) -> Result<(), String> {
    let a = agent_ttrpc::AgentServiceClient::new(client(vsock).await?);
    let ctx = || context::with_timeout(Duration::from_secs(30).as_nanos() as i64);
    let family = |f: u8| match f {
        6 => types::IPFamily::v6,
        _ => types::IPFamily::v4,
    };
    let mut iface = types::Interface::new();
    iface.device = pod.name.clone();
    iface.name = pod.name.clone();
    iface.hwAddr = pod.mac.clone();
    iface.mtu = pod.mtu as u64;
    for (addr, len, f) in &pod.addrs {
        let mut ip = types::IPAddress::new();
        ip.family = family(*f).into();
        ip.address = addr.clone();
        ip.mask = len.to_string();
        iface.IPAddresses.push(ip);
    }
    let mut req = agent::UpdateInterfaceRequest::new();
    req.interface = Some(iface).into();
    a.update_interface(ctx(), &req)
        .await
        .map_err(|e| format!("UpdateInterface: {e}"))?;
    let mut routes = agent::Routes::new();
    for r in &pod.routes {
        let mut t = types::Route::new();
        t.dest = r.dest.clone();
        t.gateway = r.gateway.clone();
        t.device = pod.name.clone();
        t.source = r.source.clone();
        t.scope = r.scope;
        t.family = family(r.family).into();
        routes.Routes.push(t);
    }
    let mut req = agent::UpdateRoutesRequest::new();
    req.routes = Some(routes).into();
    a.update_routes(ctx(), &req)
        .await
        .map_err(|e| format!("UpdateRoutes: {e}"))?;
    Ok(())
}
