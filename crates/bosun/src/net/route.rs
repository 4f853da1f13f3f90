//! ListRoutes and UpdateRoutes (main table).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::RouteMessageBuilder;

use super::{nl, IpNet, NetError, Network, Route};

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Network {
    async fn route_messages(&self) -> Result<Vec<RouteMessage>, NetError> {
        let h = self.handle().await?;
        let mut all: Vec<RouteMessage> = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("list IPv4 routes"))?;
        let v6: Vec<RouteMessage> = h
            .route()
            .get(RouteMessageBuilder::<Ipv6Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(nl("list IPv6 routes"))?;
        all.extend(v6);
        Ok(all
            .into_iter()
            .filter(|m| m.header.table == RouteHeader::RT_TABLE_MAIN)
            .collect())
    }

    /// ListRoutes: the main table.
    pub async fn list_routes(&self) -> Result<Vec<Route>, NetError> {
        let names = self.names().await?;
        let msgs = self.route_messages().await?;
        Ok(msgs
            .iter()
            .map(|m| {
                let mut r = Route {
                    scope: u8::from(m.header.scope),
                    v6: m.header.address_family == rtnetlink::packet_route::AddressFamily::Inet6,
                    ..Default::default()
                };
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(d) => {
                            r.dest = ip_of(d).map(|addr| IpNet {
                                addr,
                                prefix: m.header.destination_prefix_length,
                            })
                        }
                        RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
                        RouteAttribute::PrefSource(s) => r.source = ip_of(s),
                        RouteAttribute::Oif(i) => r.device = names.get(i).cloned().unwrap_or_default(),
                        _ => {}
                    }
                }
                r
            })
            .collect())
    }

    /// UpdateRoutes: the main table becomes `want`, apart from the routes
    /// the kernel derives from addresses (protocol kernel), which stay.
    pub async fn update_routes(&self, want: &[Route]) -> Result<Vec<Route>, NetError> {
        let h = self.handle().await?;
        for m in self.route_messages().await? {
            if m.header.protocol != RouteProtocol::Kernel {
                h.route().del(m).execute().await.map_err(nl("delete a route"))?;
            }
        }
        // Device routes (no gateway) first: a gateway must be reachable.
        let mut ordered: Vec<&Route> = want.iter().filter(|r| r.gateway.is_none()).collect();
        ordered.extend(want.iter().filter(|r| r.gateway.is_some()));
        for r in ordered {
            let msg = self.route_message(r).await?;
            match h.route().add(msg).execute().await {
                Ok(()) => {}
                // The kernel already made it (a prefix route of an address).
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -(nix::errno::Errno::EEXIST as i32) => {}
                Err(e) => return Err(nl(format!("add route {r}"))(e)),
            }
        }
        self.list_routes().await
    }

    async fn route_message(&self, r: &Route) -> Result<RouteMessage, NetError> {
        let oif = if r.device.is_empty() {
            None
        } else {
            Some(self.index_of(&r.device).await?)
        };
        let mut m = match (r.dest.map(|d| d.addr), r.gateway, r.source) {
            (Some(IpAddr::V6(_)), _, _) | (None, Some(IpAddr::V6(_)), _) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new();
                if let Some(IpNet {
                    addr: IpAddr::V6(a),
                    prefix,
                }) = r.dest
                {
                    b = b.destination_prefix(a, prefix);
                }
                if let Some(IpAddr::V6(g)) = r.gateway {
                    b = b.gateway(g);
                }
                if let Some(IpAddr::V6(s)) = r.source {
                    b = b.pref_source(s);
                }
                b.build()
            }
            _ => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new();
                if let Some(IpNet {
                    addr: IpAddr::V4(a),
                    prefix,
                }) = r.dest
                {
                    b = b.destination_prefix(a, prefix);
                }
                if let Some(IpAddr::V4(g)) = r.gateway {
                    b = b.gateway(g);
                }
                if let Some(IpAddr::V4(s)) = r.source {
                    b = b.pref_source(s);
                }
                b.build()
            }
        };
        if let Some(i) = oif {
            m.attributes.push(RouteAttribute::Oif(i));
        }
        m.header.scope = RouteScope::from(r.scope);
        Ok(m)
    }
}
