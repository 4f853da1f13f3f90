//! The accept loops: who is served (peer uid or CID), how many at once
//! (`Gate::admit`), and what a failing accept does. At the open-file limit
//! accept(2) fails at once, every time: a loop that retries at once spins a
//! core and starves the connections already open (62–73% of a core was
//! measured before this). bosun pauses instead, 5 ms doubling up to 1 s as
//! Go's net/http does, and logs the spell once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use ttrpc::r#async::transport::Listener;

use super::guard::FrameGuard;
use super::limits::Gate;

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LAST_PAUSE: Duration = Duration::from_secs(1);

/// The state of a failing accept.
#[derive(Default)]
struct Backoff {
    pause: Option<Duration>,
    failures: u64,
}

impl Backoff {
    /// Waits before the next accept; logs the first failure of a spell.
    async fn failed(&mut self, e: &io::Error, log: &slog::Logger) {
        if e.kind() == io::ErrorKind::ConnectionAborted {
            return; // the peer left before we accepted: nothing is wrong
        }
        self.failures += 1;
        let pause = self.pause.map_or(FIRST_PAUSE, |p| (p * 2).min(LAST_PAUSE));
        if self.pause.is_none() {
            slog::error!(log, "accept failing; pausing between attempts"; "error" => %e, "max_pause_ms" => LAST_PAUSE.as_millis() as u64);
        }
        self.pause = Some(pause);
        tokio::time::sleep(pause).await;
    }

    fn succeeded(&mut self, log: &slog::Logger) {
        if self.pause.take().is_some() {
            slog::warn!(log, "accept works again"; "failed_attempts" => self.failures);
            self.failures = 0;
        }
    }
}

/// Connections closed at once because the agent serves as many as it may;
/// logged at the first of a spell and at each power of ten.
#[derive(Default)]
struct Refusals(u64);

impl Refusals {
    fn refused(&mut self, gate: &Gate, log: &slog::Logger) {
        self.0 += 1;
        let n = self.0;
        if n == 1 || (n >= 10 && n.is_power_of_two()) {
            slog::warn!(log, "connection refused"; "reason" => "--max-connections reached", "max_connections" => gate.limits.max_connections, "refused" => n);
        }
    }
}

/// Wraps an admitted stream, or drops it (closed) when the gate is full.
fn admit<S>(s: S, gate: &Arc<Gate>, refusals: &mut Refusals, log: &slog::Logger) -> Option<FrameGuard<S>> {
    if gate.admit() {
        refusals.0 = 0;
        Some(FrameGuard::new(s, gate.clone()))
    } else {
        refusals.refused(gate, log);
        None
    }
}

/// Who may talk to the agent: checked at accept, before a byte is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peers {
    /// Unix sockets: the peer uids (SO_PEERCRED) served; `None`: any.
    pub uids: Option<Vec<u32>>,
    /// vsock: the peer CIDs served; `None`: any. The default, the host
    /// (CID 2) only, keeps a container that reaches the agent over vsock
    /// loopback from driving it.
    pub cids: Option<Vec<u32>>,
}

impl Peers {
    /// Root over unix sockets, the host over vsock.
    pub fn host_only() -> Self {
        Self {
            uids: Some(vec![0]),
            cids: Some(vec![2]),
        }
    }

    /// Also serves the agent's own uid (an agent run by a user trusts
    /// that user as it trusts root).
    pub fn with_agent_uid(mut self, uid: u32) -> Self {
        if let Some(v) = self.uids.as_mut() {
            if !v.contains(&uid) {
                v.push(uid);
            }
        }
        self
    }

    pub(super) fn uid_ok(&self, uid: u32) -> bool {
        self.uids.as_ref().is_none_or(|v| v.contains(&uid))
    }

    pub(super) fn cid_ok(&self, cid: u32) -> bool {
        self.cids.as_ref().is_none_or(|v| v.contains(&cid))
    }
}

/// The accept loop of a unix listener: peers checked by SO_PEERCRED.
pub fn unix(l: tokio::net::UnixListener, peers: Peers, gate: Arc<Gate>, log: slog::Logger) -> Listener {
    let state = (l, peers, gate, log, Backoff::default(), Refusals::default());
    let incoming = stream::unfold(state, |(l, peers, gate, log, mut backoff, mut refusals)| async move {
        loop {
            let s = match l.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    backoff.failed(&e, &log).await;
                    continue;
                }
            };
            backoff.succeeded(&log);
            match s.peer_cred() {
                Ok(c) if peers.uid_ok(c.uid()) => {
                    if let Some(g) = admit(s, &gate, &mut refusals, &log) {
                        return Some((Ok(g), (l, peers, gate, log, backoff, refusals)));
                    }
                }
                Ok(c) => {
                    slog::warn!(log, "connection refused"; "peer_uid" => c.uid(), "pid" => c.pid(), "reason" => "uid not in --allow-uids");
                }
                Err(e) => {
                    slog::warn!(log, "connection refused"; "reason" => "no peer credentials", "error" => %e);
                }
            }
        }
    });
    Listener::new(incoming.boxed())
}

/// The accept loop of a vsock listener: peers checked by CID.
pub fn vsock(l: tokio_vsock::VsockListener, peers: Peers, gate: Arc<Gate>, log: slog::Logger) -> Listener {
    let state = (l, peers, gate, log, Backoff::default(), Refusals::default());
    let incoming = stream::unfold(state, |(l, peers, gate, log, mut backoff, mut refusals)| async move {
        loop {
            let (s, peer) = match l.accept().await {
                Ok(x) => x,
                Err(e) => {
                    backoff.failed(&e, &log).await;
                    continue;
                }
            };
            backoff.succeeded(&log);
            if !peers.cid_ok(peer.cid()) {
                slog::warn!(log, "connection refused"; "peer_cid" => peer.cid(), "peer_port" => peer.port(), "reason" => "CID not in --allow-cids");
                continue;
            }
            if let Some(g) = admit(s, &gate, &mut refusals, &log) {
                return Some((Ok(g), (l, peers, gate, log, backoff, refusals)));
            }
        }
    });
    Listener::new(incoming.boxed())
}
