//! Transport addresses: `vsock://CID:PORT`, `unix:///path`, `unix://@name`
//! and, on the client side only, `hvsock:///path/to/uds:PORT` (hybrid vsock).

use std::fmt;
use std::path::PathBuf;

/// vsock "any CID", spelled `-1` in agent addresses as in Kata.
pub const VMADDR_CID_ANY: u32 = u32::MAX;
/// The host's CID. A guest-side agent never listens there and bosunctl
/// refuses to dial it: the agent lives in a guest, never on the host.
pub const VMADDR_CID_HOST: u32 = 2;
/// Longest unix socket path the kernel takes (sun_path is 108 bytes with NUL).
const UNIX_PATH_MAX: usize = 107;

/// Where bosun listens or where a client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// AF_VSOCK; `cid` is `VMADDR_CID_ANY` for `-1`.
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A unix socket bound to a file.
    Unix(PathBuf),
    /// A unix socket in the abstract namespace (no file).
    UnixAbstract(String),
    /// A hybrid-vsock unix socket (Firecracker, Cloud Hypervisor,
    /// vhost-device-vsock): connect, send `CONNECT <port>\n`, read `OK ...\n`.
    HybridVsock {
        /// The unix socket the VMM exposes.
        path: PathBuf,
        /// The guest port to reach.
        port: u32,
    },
}

/// A malformed address; the message says which form is expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad address {addr:?}: {reason}; expected vsock://CID:PORT, unix:///path, unix://@name or hvsock:///path:PORT")]
pub struct AddressError {
    addr: String,
    reason: &'static str,
}

impl Address {
    /// Parses any of the four forms.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let err = |reason| AddressError {
            addr: s.to_string(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, port) = rest.split_once(':').ok_or_else(|| err("missing :PORT"))?;
            let cid = match cid {
                "-1" => VMADDR_CID_ANY,
                c => c.parse().map_err(|_| err("CID is not a number"))?,
            };
            let port = port.parse().map_err(|_| err("PORT is not a number"))?;
            Ok(Self::Vsock { cid, port })
        } else if let Some(rest) = s.strip_prefix("unix://") {
            if let Some(name) = rest.strip_prefix('@') {
                if name.is_empty() || name.len() > UNIX_PATH_MAX - 1 {
                    return Err(err("abstract name is empty or too long"));
                }
                return Ok(Self::UnixAbstract(name.to_string()));
            }
            unix_path(rest).map(Self::Unix).map_err(err)
        } else if let Some(rest) = s.strip_prefix("hvsock://") {
            let (path, port) = rest.rsplit_once(':').ok_or_else(|| err("missing :PORT"))?;
            let port = port.parse().map_err(|_| err("PORT is not a number"))?;
            Ok(Self::HybridVsock {
                path: unix_path(path).map_err(err)?,
                port,
            })
        } else {
            Err(err("unknown scheme"))
        }
    }

    /// Checks that a server can listen here.
    pub fn check_listenable(&self) -> Result<(), AddressError> {
        match self {
            Self::HybridVsock { .. } => Err(AddressError {
                addr: self.to_string(),
                reason: "hybrid vsock is a client-side transport; the agent listens on vsock://-1:PORT",
            }),
            _ => Ok(()),
        }
    }

    /// Checks that a client can dial this address.
    pub fn check_dialable(&self) -> Result<(), AddressError> {
        match self {
            Self::Vsock { cid, .. } if *cid == VMADDR_CID_ANY || *cid == 0 || *cid == VMADDR_CID_HOST => {
                Err(AddressError {
                    addr: self.to_string(),
                    reason: "dial the guest's CID (3 or more), or 1 for the local loopback",
                })
            }
            _ => Ok(()),
        }
    }
}

fn unix_path(p: &str) -> Result<PathBuf, &'static str> {
    if !p.starts_with('/') {
        return Err("unix socket path must be absolute");
    }
    if p.len() > UNIX_PATH_MAX {
        return Err("unix socket path is longer than 107 bytes");
    }
    Ok(PathBuf::from(p))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Vsock { cid, port } if *cid == VMADDR_CID_ANY => write!(f, "vsock://-1:{port}"),
            Self::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Self::Unix(p) => write!(f, "unix://{}", p.display()),
            Self::UnixAbstract(n) => write!(f, "unix://@{n}"),
            Self::HybridVsock { path, port } => write!(f, "hvsock://{}:{port}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok = [
            (
                "vsock://-1:1024",
                Address::Vsock {
                    cid: VMADDR_CID_ANY,
                    port: 1024,
                },
            ),
            ("vsock://3:1024", Address::Vsock { cid: 3, port: 1024 }),
            ("unix:///run/a.sock", Address::Unix("/run/a.sock".into())),
            ("unix://@bosun", Address::UnixAbstract("bosun".into())),
            (
                "hvsock:///tmp/vm.vsock:1024",
                Address::HybridVsock {
                    path: "/tmp/vm.vsock".into(),
                    port: 1024,
                },
            ),
        ];
        for (i, (s, want)) in ok.into_iter().enumerate() {
            let got = Address::parse(s).unwrap_or_else(|e| panic!("test[{i}]: {s}: {e}"));
            assert_eq!(got, want, "test[{i}]: {s}");
            assert_eq!(got.to_string(), s, "test[{i}]: display round trip");
        }
        let long = format!("unix:///{}", "a".repeat(200));
        let bad = [
            "",
            "tcp://1.2.3.4:5",
            "vsock://3",
            "vsock://x:1",
            "vsock://3:99999999999",
            "unix://rel/path",
            "unix://@",
            long.as_str(),
            "hvsock:///p",
            "hvsock:///p:x",
        ];
        for (i, s) in bad.into_iter().enumerate() {
            assert!(Address::parse(s).is_err(), "test[{i}]: {s:?} should be refused");
        }
    }

    #[test]
    fn listen_and_dial_rules() {
        let hv = Address::parse("hvsock:///tmp/x:1").unwrap();
        assert!(hv.check_listenable().is_err());
        assert!(hv.check_dialable().is_ok());
        for cid in ["-1", "0", "2"] {
            let a = Address::parse(&format!("vsock://{cid}:1024")).unwrap();
            assert!(a.check_dialable().is_err(), "cid {cid} must not be dialled");
        }
        assert!(Address::parse("vsock://3:1024").unwrap().check_dialable().is_ok());
        assert!(Address::parse("vsock://-1:1024").unwrap().check_listenable().is_ok());
    }
}
