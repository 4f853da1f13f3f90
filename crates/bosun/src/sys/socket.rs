//! Socket calls std and tokio do not offer: peer credentials and abstract
//! unix addresses.

use std::io;
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The pid of the process at the other end of a connected unix socket.
pub fn peer_pid<F: AsFd>(sock: &F) -> io::Result<i32> {
    let cred = getsockopt(sock, PeerCredentials).map_err(io::Error::from)?;
    Ok(cred.pid())
}

/// Binds a listening socket in the abstract namespace (`@name`).
pub fn bind_abstract(name: &str) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}

/// Connects to a socket in the abstract namespace (`@name`).
pub fn connect_abstract(name: &str) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}
