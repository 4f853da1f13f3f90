//! The guest's network, over netlink: interfaces and their addresses,
//! routes, ARP neighbours. The pod's network namespace is the agent's.

mod link;
mod neigh;
mod route;

use std::net::IpAddr;

use tokio::sync::OnceCell;

/// An address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// An interface as Kata describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    /// Name in the guest.
    pub name: String,
    /// MAC address, `aa:bb:cc:dd:ee:ff`.
    pub hwaddr: String,
    /// MTU (0: leave as is).
    pub mtu: u64,
    /// Addresses.
    pub addrs: Vec<IpNet>,
    /// IFF_* flags.
    pub raw_flags: u32,
    /// Link kind ("dummy", "veth", ...).
    pub kind: String,
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A route as Kata describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Destination; `None` for the default route.
    pub dest: Option<IpNet>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface name.
    pub device: String,
    /// Preferred source address.
    pub source: Option<IpAddr>,
    /// RT_SCOPE_*.
    pub scope: u8,
    /// IPv6.
    pub v6: bool,
}

impl std::fmt::Display for Route {
    /// As `ip route` prints it: `10.0.0.0/24 via 10.0.0.1 dev eth0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.dest {
            Some(d) => write!(f, "{d}")?,
            None => f.write_str("default")?,
        }
        if let Some(g) = &self.gateway {
            write!(f, " via {g}")?;
        }
        if !self.device.is_empty() {
            write!(f, " dev {}", self.device)?;
        }
        if let Some(s) = &self.source {
            write!(f, " src {s}")?;
        }
        Ok(())
    }
}

/// An ARP/NDP neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Its IP address.
    pub ip: IpAddr,
    /// Interface name.
    pub device: String,
    /// MAC address bytes.
    pub lladdr: Vec<u8>,
    /// NUD_* state (0: permanent).
    pub state: u16,
}

/// A failed netlink operation, named.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No interface matches.
    #[error("no interface {0}")]
    NoSuchInterface(String),
    /// The kernel refused.
    #[error("{what}: {reason}")]
    Netlink {
        /// What was attempted.
        what: String,
        /// The kernel's errno, when it gave one.
        errno: Option<nix::errno::Errno>,
        /// Its words.
        reason: String,
    },
    /// No netlink socket.
    #[error("netlink: {0}")]
    Socket(String),
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| {
        // The kernel's answer as an errno (rtnetlink's own message dumps
        // the whole request).
        let errno = match &source {
            rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => {
                Some(nix::errno::Errno::from_raw(m.raw_code().abs()))
            }
            _ => None,
        };
        let reason = match errno {
            Some(e) => format!("{} ({e})", e.desc()),
            None => "netlink request failed".to_string(),
        };
        NetError::Netlink { what, errno, reason }
    }
}

/// The netlink connection, opened at first use.
#[derive(Default)]
pub struct Network {
    handle: OnceCell<rtnetlink::Handle>,
}

impl Network {
    async fn handle(&self) -> Result<&rtnetlink::Handle, NetError> {
        self.handle
            .get_or_try_init(|| async {
                let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::Socket(e.to_string()))?;
                tokio::spawn(conn);
                Ok(handle)
            })
            .await
    }
}

/// `aa:bb:cc:dd:ee:ff` for MAC bytes.
pub fn format_mac(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<Vec<u8>> {
    let v: Option<Vec<u8>> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect();
    v.filter(|v| v.len() == 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Some(vec![2, 0, 10, 255, 0, 1]));
        assert_eq!(format_mac(&[2, 0, 10, 255, 0, 1]), "02:00:0a:ff:00:01");
        for bad in [
            "",
            "02:00",
            "02:00:0a:ff:00:1",
            "zz:00:00:00:00:00",
            "02:00:0a:ff:00:01:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
