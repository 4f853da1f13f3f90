//! The agent socket the shim dials (`STATE_DIR/ID/agent.sock`, a plain
//! unix socket, no handshake): every connection relayed to the guest's
//! vsock port 1024 through the hybrid-vsock socket of the VM's backend.

use std::path::{Path, PathBuf};

use slog::{debug, warn, Logger};
use tokio::net::UnixListener;

/// The guest port bosun listens on (agent.server_addr=vsock://-1:1024).
pub const AGENT_PORT: u32 = 1024;

/// Binds `sock` (replacing a stale file of ours: the VM's directory is
/// ours) and relays each connection to `vsock`'s guest port 1024.
pub fn serve(sock: &Path, vsock: PathBuf, log: Logger) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock)?;
    std::fs::set_permissions(sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let (mut conn, _) = match l.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(log, "agent socket: accept"; "error" => %e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (vsock, log) = (vsock.clone(), log.clone());
            tokio::spawn(async move {
                match bosun::transport::connect::hybrid_vsock(&vsock, AGENT_PORT).await {
                    Ok(mut guest) => {
                        let r = tokio::io::copy_bidirectional(&mut conn, &mut guest).await;
                        debug!(log, "agent connection closed"; "result" => ?r);
                    }
                    // The shim sees the connection close and redials.
                    Err(e) => warn!(log, "agent socket: the guest's agent"; "error" => %e),
                }
            });
        }
    }))
}
