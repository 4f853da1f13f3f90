//! Network requests ↔ `net` types.

use std::net::IpAddr;

use crate::error::AgentError;
use crate::net::{parse_mac, Iface, IpNet, Neighbour, Route};
use crate::protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route as PbRoute};

/// Longest interface name (IFNAMSIZ - 1).
const MAX_IFNAME: usize = 15;
/// Most addresses, routes or neighbours in one request.
const MAX_NET_ITEMS: usize = 4096;

fn ifname(field: &'static str, n: &str) -> Result<(), AgentError> {
    if n.len() > MAX_IFNAME || n.contains('/') || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AgentError::invalid(
            field,
            format!("{n:?} is not an interface name (at most {MAX_IFNAME} bytes, no '/' or spaces)"),
        ));
    }
    Ok(())
}

fn ip(field: &'static str, s: &str) -> Result<IpAddr, AgentError> {
    s.parse()
        .map_err(|_| AgentError::invalid(field, format!("{s:?} is not an IP address")))
}

fn ipnet(field: &'static str, a: &IPAddress) -> Result<IpNet, AgentError> {
    let addr = ip(field, &a.address)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = if a.mask.is_empty() {
        max
    } else {
        a.mask
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| AgentError::invalid(field, format!("mask {:?}: a prefix length 0..={max}", a.mask)))?
    };
    Ok(IpNet { addr, prefix })
}

fn pb_ipaddr(n: &IpNet) -> IPAddress {
    let mut a = IPAddress::new();
    a.family = if n.addr.is_ipv4() { IPFamily::v4 } else { IPFamily::v6 }.into();
    a.address = n.addr.to_string();
    a.mask = n.prefix.to_string();
    a
}

/// UpdateInterface's interface.
pub fn iface(i: &Interface) -> Result<Iface, AgentError> {
    ifname("interface.name", &i.name)?;
    if i.name.is_empty() && i.hwAddr.is_empty() {
        return Err(AgentError::invalid(
            "interface",
            "needs a hwAddr or a name to find the link",
        ));
    }
    if !i.hwAddr.is_empty() && parse_mac(&i.hwAddr).is_none() {
        return Err(AgentError::invalid(
            "interface.hwAddr",
            format!("{:?} is not a MAC address", i.hwAddr),
        ));
    }
    // The kernel decides what a link takes (lo reports 65536, more than
    // any Ethernet); bosun only keeps the value within netlink's u32.
    if i.mtu > u64::from(u32::MAX) {
        return Err(AgentError::invalid(
            "interface.mtu",
            format!("{}: at most {}", i.mtu, u32::MAX),
        ));
    }
    if i.IPAddresses.len() > MAX_NET_ITEMS {
        return Err(AgentError::invalid(
            "interface.IPAddresses",
            format!("{} entries; at most {MAX_NET_ITEMS}", i.IPAddresses.len()),
        ));
    }
    let addrs = i
        .IPAddresses
        .iter()
        .map(|a| ipnet("interface.IPAddresses", a))
        .collect::<Result<_, _>>()?;
    Ok(Iface {
        name: i.name.clone(),
        hwaddr: i.hwAddr.to_ascii_lowercase(),
        mtu: i.mtu,
        addrs,
        raw_flags: i.raw_flags,
        kind: i.type_.clone(),
    })
}

/// An interface for the reply.
pub fn pb_iface(i: &Iface) -> Interface {
    let mut p = Interface::new();
    p.name = i.name.clone();
    p.device = i.name.clone();
    p.hwAddr = i.hwaddr.clone();
    p.mtu = i.mtu;
    p.raw_flags = i.raw_flags;
    p.type_ = i.kind.clone();
    p.IPAddresses = i.addrs.iter().map(pb_ipaddr).collect();
    p
}

/// UpdateRoutes' routes. `dest` is `a.b.c.d/len`, or empty / "default".
pub fn routes(v: &[PbRoute]) -> Result<Vec<Route>, AgentError> {
    if v.len() > MAX_NET_ITEMS {
        return Err(AgentError::invalid(
            "routes",
            format!("{} entries; at most {MAX_NET_ITEMS}", v.len()),
        ));
    }
    v.iter()
        .map(|r| {
            ifname("route.device", &r.device)?;
            let dest = match r.dest.as_str() {
                "" | "default" => None,
                d => {
                    let (a, m) = d.split_once('/').unwrap_or((d, ""));
                    let mut pa = IPAddress::new();
                    (pa.address, pa.mask) = (a.to_string(), m.to_string());
                    Some(ipnet("route.dest", &pa)?)
                }
            };
            let opt_ip = |f, s: &str| if s.is_empty() { Ok(None) } else { ip(f, s).map(Some) };
            let gateway = opt_ip("route.gateway", &r.gateway)?;
            let source = opt_ip("route.source", &r.source)?;
            let scope = u8::try_from(r.scope)
                .map_err(|_| AgentError::invalid("route.scope", format!("{}: 0..=255", r.scope)))?;
            let v6 = dest
                .map(|d| d.addr.is_ipv6())
                .or(gateway.map(|g| g.is_ipv6()))
                .unwrap_or(r.family.enum_value_or_default() == IPFamily::v6);
            Ok(Route {
                dest,
                gateway,
                device: r.device.clone(),
                source,
                scope,
                v6,
            })
        })
        .collect()
}

/// A route for the reply.
pub fn pb_route(r: &Route) -> PbRoute {
    let mut p = PbRoute::new();
    p.dest = r.dest.map(|d| format!("{}/{}", d.addr, d.prefix)).unwrap_or_default();
    p.gateway = r.gateway.map(|g| g.to_string()).unwrap_or_default();
    p.device = r.device.clone();
    p.source = r.source.map(|s| s.to_string()).unwrap_or_default();
    p.scope = u32::from(r.scope);
    p.family = if r.v6 { IPFamily::v6 } else { IPFamily::v4 }.into();
    p
}

/// AddARPNeighbors' entries.
pub fn neighbours(v: &[ARPNeighbor]) -> Result<Vec<Neighbour>, AgentError> {
    if v.len() > MAX_NET_ITEMS {
        return Err(AgentError::invalid(
            "neighbors",
            format!("{} entries; at most {MAX_NET_ITEMS}", v.len()),
        ));
    }
    v.iter()
        .map(|n| {
            ifname("neighbor.device", &n.device)?;
            let to = n
                .toIPAddress
                .as_ref()
                .ok_or_else(|| AgentError::invalid("neighbor.toIPAddress", "missing"))?;
            let lladdr = parse_mac(&n.lladdr).ok_or_else(|| {
                AgentError::invalid("neighbor.lladdr", format!("{:?} is not a MAC address", n.lladdr))
            })?;
            let state = u16::try_from(n.state)
                .map_err(|_| AgentError::invalid("neighbor.state", format!("{}: a NUD_* value", n.state)))?;
            Ok(Neighbour {
                ip: ip("neighbor.toIPAddress", &to.address)?,
                device: n.device.clone(),
                lladdr,
                state,
            })
        })
        .collect()
}
