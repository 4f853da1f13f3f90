//! Binding the agent's listener without taking over anyone else's.
//!
//! A unix socket file that answers is someone's live endpoint: bosun refuses
//! to start and names the pid when the kernel tells it. A socket file that
//! refuses connections is stale and is replaced. Anything that is not a
//! socket is never removed.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use ttrpc::r#async::transport::Listener;

pub use super::accept::Peers;
use super::address::Address;
use super::limits::Gate;
use crate::sys::socket;

/// Why the listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process serves this address.
    #[error("address {addr} in use{}; stop that agent first or choose another address", by_pid(*.pid))]
    InUse {
        /// The address.
        addr: String,
        /// The serving process, when the kernel tells.
        pid: Option<i32>,
    },
    /// The path exists and is not a socket: bosun does not delete it.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The address cannot be served.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Listening on a client-only address.
    #[error(transparent)]
    Address(#[from] super::AddressError),
}

fn by_pid(pid: Option<i32>) -> String {
    pid.map(|p| format!(" by pid {p}")).unwrap_or_default()
}

/// A bound listener and the socket file it owns.
pub struct Bound {
    /// The ttrpc listener, with every connection wrapped in a `FrameGuard`.
    pub listener: Listener,
    /// Keep alive while serving; dropping it removes the socket file.
    pub owner: SocketFile,
}

/// The socket file bosun created, if any. Dropping it removes the file,
/// and only if it is still the same file (same device and inode).
pub struct SocketFile(Option<(PathBuf, u64, u64)>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.0 {
            if let Ok(m) = fs::symlink_metadata(path) {
                if m.dev() == *dev && m.ino() == *ino {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

/// Binds `addr` for serving `peers`, within the bounds of `gate`; a refused
/// connection is closed at accept and logged.
pub fn bind(addr: &Address, peers: &Peers, gate: Arc<Gate>, log: &slog::Logger) -> Result<Bound, ListenError> {
    addr.check_listenable()?;
    let io_err = |source| ListenError::Io {
        addr: addr.to_string(),
        source,
    };
    match addr {
        Address::Unix(path) => bind_unix_path(addr, path, peers, gate, log),
        Address::UnixAbstract(name) => {
            let std = socket::bind_abstract(name).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    let pid = socket::connect_abstract(name)
                        .ok()
                        .and_then(|s| socket::peer_pid(&s).ok());
                    ListenError::InUse {
                        addr: addr.to_string(),
                        pid,
                    }
                } else {
                    io_err(e)
                }
            })?;
            Ok(Bound {
                listener: unix_listener(std, peers, gate, log).map_err(io_err)?,
                owner: SocketFile(None),
            })
        }
        Address::Vsock { cid, port } => {
            let l = tokio_vsock::VsockListener::bind(tokio_vsock::VsockAddr::new(*cid, *port)).map_err(|e| {
                if e.kind() == io::ErrorKind::AddrInUse {
                    ListenError::InUse {
                        addr: addr.to_string(),
                        pid: None,
                    }
                } else {
                    io_err(e)
                }
            })?;
            Ok(Bound {
                listener: super::accept::vsock(l, peers.clone(), gate, log.clone()),
                owner: SocketFile(None),
            })
        }
        Address::HybridVsock { .. } => unreachable!("refused by check_listenable"),
    }
}

fn bind_unix_path(
    addr: &Address,
    path: &Path,
    peers: &Peers,
    gate: Arc<Gate>,
    log: &slog::Logger,
) -> Result<Bound, ListenError> {
    let io_err = |source| ListenError::Io {
        addr: addr.to_string(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => return Err(ListenError::NotASocket(path.to_path_buf())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(live) => {
                return Err(ListenError::InUse {
                    addr: addr.to_string(),
                    pid: socket::peer_pid(&live).ok(),
                })
            }
            // Nobody listens: a stale file from an agent that died.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => fs::remove_file(path).map_err(io_err)?,
            Err(e) => return Err(io_err(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    let std = std::os::unix::net::UnixListener::bind(path).map_err(io_err)?;
    // Root only by default (the host runtime's side of the agent); when
    // other uids are allowed the file lets them connect and SO_PEERCRED
    // decides.
    let owner_only = peers
        .uids
        .as_ref()
        .is_some_and(|v| v.iter().all(|u| *u == 0 || *u == crate::sys::process::effective_uid()));
    let mode = if owner_only { 0o600 } else { 0o666 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    let m = fs::symlink_metadata(path).map_err(io_err)?;
    Ok(Bound {
        listener: unix_listener(std, peers, gate, log).map_err(io_err)?,
        owner: SocketFile(Some((path.to_path_buf(), m.dev(), m.ino()))),
    })
}

fn unix_listener(
    std: std::os::unix::net::UnixListener,
    peers: &Peers,
    gate: Arc<Gate>,
    log: &slog::Logger,
) -> io::Result<Listener> {
    std.set_nonblocking(true)?;
    let l = tokio::net::UnixListener::from_std(std)?;
    Ok(super::accept::unix(l, peers.clone(), gate, log.clone()))
}
