//! ListInterfaces and UpdateInterface.

use std::collections::HashMap;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::LinkUnspec;

use super::{format_mac, nl, Iface, IpNet, NetError, Network};

struct Link {
    index: u32,
    iface: Iface,
}

fn to_link(m: &LinkMessage) -> Link {
    let mut i = Iface {
        raw_flags: m.header.flags.bits(),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => i.name = n.clone(),
            LinkAttribute::Address(b) => i.hwaddr = format_mac(b),
            LinkAttribute::Mtu(m) => i.mtu = u64::from(*m),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(k) = info {
                        i.kind = k.to_string();
                    }
                }
            }
            _ => {}
        }
    }
    Link {
        index: m.header.index,
        iface: i,
    }
}

impl Network {
    async fn links(&self) -> Result<Vec<Link>, NetError> {
        let h = self.handle().await?;
        let msgs: Vec<LinkMessage> = h.link().get().execute().try_collect().await.map_err(nl("list links"))?;
        let mut links: Vec<Link> = msgs.iter().map(to_link).collect();
        let addrs: Vec<_> = h
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl("list addresses"))?;
        let mut by_index: HashMap<u32, Vec<IpNet>> = HashMap::new();
        for a in addrs {
            for attr in &a.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    by_index.entry(a.header.index).or_default().push(IpNet {
                        addr: *ip,
                        prefix: a.header.prefix_len,
                    });
                }
            }
        }
        for l in &mut links {
            l.iface.addrs = by_index.remove(&l.index).unwrap_or_default();
        }
        Ok(links)
    }

    /// Index of the interface named `name`.
    pub(super) async fn index_of(&self, name: &str) -> Result<u32, NetError> {
        self.links()
            .await?
            .into_iter()
            .find(|l| l.iface.name == name)
            .map(|l| l.index)
            .ok_or_else(|| NetError::NoSuchInterface(name.to_string()))
    }

    /// Names by index.
    pub(super) async fn names(&self) -> Result<HashMap<u32, String>, NetError> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.index, l.iface.name))
            .collect())
    }

    /// ListInterfaces.
    pub async fn list_interfaces(&self) -> Result<Vec<Iface>, NetError> {
        Ok(self.links().await?.into_iter().map(|l| l.iface).collect())
    }

    /// UpdateInterface: the link with `want.hwaddr` (or, without one, the
    /// name) gets the name, MTU and addresses asked for, and is brought up.
    pub async fn update_interface(&self, want: &Iface) -> Result<Iface, NetError> {
        let h = self.handle().await?;
        let links = self.links().await?;
        let link = links
            .iter()
            .find(|l| {
                if want.hwaddr.is_empty() {
                    l.iface.name == want.name
                } else {
                    l.iface.hwaddr.eq_ignore_ascii_case(&want.hwaddr)
                }
            })
            .ok_or_else(|| {
                NetError::NoSuchInterface(if want.hwaddr.is_empty() {
                    want.name.clone()
                } else {
                    format!("with address {}", want.hwaddr)
                })
            })?;
        let mut b = LinkUnspec::new_with_index(link.index);
        if !want.name.is_empty() && want.name != link.iface.name {
            // A link is renamed only while down.
            h.link()
                .set(LinkUnspec::new_with_index(link.index).down().build())
                .execute()
                .await
                .map_err(nl(format!("bring {} down", link.iface.name)))?;
            b = b.name(want.name.clone());
        }
        if want.mtu > 0 {
            b = b.mtu(u32::try_from(want.mtu).unwrap_or(u32::MAX));
        }
        h.link()
            .set(b.up().build())
            .execute()
            .await
            .map_err(nl(format!("update link {}", link.iface.name)))?;
        for old in link.iface.addrs.iter().filter(|a| !want.addrs.contains(a)) {
            let mut msgs = h
                .address()
                .get()
                .set_link_index_filter(link.index)
                .set_address_filter(old.addr)
                .execute();
            while let Some(m) = msgs.try_next().await.map_err(nl("list addresses"))? {
                h.address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(nl(format!("delete {}/{}", old.addr, old.prefix)))?;
            }
        }
        for a in want.addrs.iter().filter(|a| !link.iface.addrs.contains(a)) {
            h.address()
                .add(link.index, a.addr, a.prefix)
                .replace()
                .execute()
                .await
                .map_err(nl(format!("add {}/{}", a.addr, a.prefix)))?;
        }
        let now = self.links().await?;
        now.into_iter()
            .find(|l| l.index == link.index)
            .map(|l| l.iface)
            .ok_or_else(|| NetError::NoSuchInterface(want.name.clone()))
    }
}
