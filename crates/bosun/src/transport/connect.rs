//! Dialling an agent: unix, abstract unix, vsock and hybrid vsock.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use ttrpc::r#async::transport::Socket;

use super::address::Address;
use crate::sys::socket;

/// The longest reply line accepted from a hybrid-vsock multiplexer; real ones
/// answer `OK <port>\n` in a dozen bytes.
const HANDSHAKE_LINE_MAX: usize = 128;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not one a client can dial.
    #[error(transparent)]
    Address(#[from] super::AddressError),
    /// The socket could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Nothing answered within the timeout.
    #[error("no answer from {addr} within {timeout:?}; is the VM up and the agent listening on that port?")]
    Timeout {
        /// The address.
        addr: String,
        /// The bound that passed.
        timeout: Duration,
    },
    /// The hybrid-vsock multiplexer did not accept `CONNECT`.
    #[error("hybrid vsock {addr} refused CONNECT: {reply:?}; is the agent listening on that guest port?")]
    HandshakeRefused {
        /// The address.
        addr: String,
        /// What it answered instead of `OK`.
        reply: String,
    },
}

/// Connects to `addr`, giving up after `timeout` (the hybrid-vsock handshake
/// included).
pub async fn connect(addr: &Address, timeout: Duration) -> Result<Socket, ConnectError> {
    addr.check_dialable()?;
    let a = addr.to_string();
    match tokio::time::timeout(timeout, dial(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Timeout { addr: a, timeout }),
    }
}

async fn dial(addr: &Address) -> Result<Socket, ConnectError> {
    let io_err = |source| ConnectError::Io {
        addr: addr.to_string(),
        source,
    };
    match addr {
        Address::Unix(p) => Ok(Socket::new(UnixStream::connect(p).await.map_err(io_err)?)),
        Address::UnixAbstract(name) => {
            let std = socket::connect_abstract(name).map_err(io_err)?;
            std.set_nonblocking(true).map_err(io_err)?;
            Ok(Socket::new(UnixStream::from_std(std).map_err(io_err)?))
        }
        Address::Vsock { cid, port } => {
            let s = tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port))
                .await
                .map_err(io_err)?;
            Ok(Socket::new(s))
        }
        Address::HybridVsock { path, port } => Ok(Socket::new(hybrid_vsock(path, *port).await?)),
    }
}

/// A stream to guest `port` through the hybrid-vsock multiplexer at `path`
/// (vhost-device-vsock, Firecracker, Cloud Hypervisor), the `CONNECT`
/// handshake done: what follows is the guest port's stream.
pub async fn hybrid_vsock(path: &std::path::Path, port: u32) -> Result<UnixStream, ConnectError> {
    let addr = || format!("hvsock://{}:{port}", path.display());
    let io_err = |source| ConnectError::Io { addr: addr(), source };
    let mut s = UnixStream::connect(path).await.map_err(io_err)?;
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(io_err)?;
    let reply = read_line(&mut s).await.map_err(io_err)?;
    if !reply.starts_with("OK") {
        return Err(ConnectError::HandshakeRefused { addr: addr(), reply });
    }
    Ok(s)
}

/// Reads one `\n`-terminated line byte by byte, so that nothing past it (the
/// first bytes of the agent's stream) is consumed.
async fn read_line(s: &mut UnixStream) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        let b = s.read_u8().await.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed during the CONNECT handshake",
                )
            } else {
                e
            }
        })?;
        if b == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() == HANDSHAKE_LINE_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "handshake reply line too long",
            ));
        }
        line.push(b);
    }
}
