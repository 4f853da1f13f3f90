//! Bounds on what connections may make the agent hold, per connection and
//! in total: request bytes buffered before a frame is whole, requests read
//! and not yet answered, connections. A connection past a bound is slowed
//! (not read until answers go out) or closed (a frame that cannot fit, or
//! that stays incomplete too long); the others are served as before.
//!
//! Without these, 150 connections each announcing a 4 MiB frame and sending
//! one byte made ttrpc allocate 600 MB, and a client pipelining a million
//! requests without reading the answers grew the agent by 1.6 GB (measured
//! on the build before them).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::Waker;
use std::time::Duration;

/// The bounds, from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Requests one connection may have read and not yet answered. Long
    /// polls count: a runtime holds three per process (WaitProcess,
    /// ReadStdout, ReadStderr), and a peer-pods forwarder carries a whole
    /// pod on one connection.
    pub max_pending_per_connection: usize,
    /// The same, over every connection.
    pub max_pending_total: usize,
    /// Bytes of incomplete frames buffered over every connection.
    pub max_buffered_bytes: usize,
    /// How long a frame may stay incomplete once its first byte arrived.
    pub frame_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_pending_per_connection: 1024,
            max_pending_total: 4096,
            max_buffered_bytes: 64 << 20,
            frame_timeout: Duration::from_secs(30),
        }
    }
}

/// The agent-wide counters the bounds are checked against, and the readers
/// waiting for room.
#[derive(Debug)]
pub struct Gate {
    /// The bounds.
    pub limits: Limits,
    connections: AtomicUsize,
    pending: AtomicUsize,
    buffered: AtomicUsize,
    waiting: Mutex<Vec<Waker>>,
}

impl Gate {
    /// A gate with nothing counted.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            connections: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            waiting: Mutex::new(Vec::new()),
        }
    }

    /// Counts a new connection; false (not counted) when the agent serves
    /// as many as it may.
    pub fn admit(&self) -> bool {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limits.max_connections).then_some(n + 1)
            })
            .is_ok()
    }

    /// A connection closed.
    pub fn leave(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Connections served now.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Whether another request may be read over every connection.
    pub fn pending_room(&self) -> bool {
        self.pending.load(Ordering::Acquire) < self.limits.max_pending_total
    }

    /// A request was read.
    pub fn add_pending(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` requests were answered (or their connection closed).
    pub fn sub_pending(&self, n: usize) {
        if n > 0 {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            self.wake_all();
        }
    }

    /// Charges `n` bytes of incomplete frames; false (nothing charged)
    /// when they do not fit.
    pub fn charge(&self, n: usize) -> bool {
        self.buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + n <= self.limits.max_buffered_bytes).then_some(b + n)
            })
            .is_ok()
    }

    /// Gives back `n` charged bytes.
    pub fn refund(&self, n: usize) {
        if n > 0 {
            self.buffered.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Bytes charged now.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// Requests pending now, over every connection.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Wakes `w` when room is made anywhere.
    pub fn wait(&self, w: &Waker) {
        let mut v = crate::sync::lock(&self.waiting);
        if !v.iter().any(|x| x.will_wake(w)) {
            v.push(w.clone());
        }
    }

    fn wake_all(&self) {
        let ws = std::mem::take(&mut *crate::sync::lock(&self.waiting));
        for w in ws {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_at_the_limit_and_one_past() {
        let g = Gate::new(Limits {
            max_connections: 2,
            max_buffered_bytes: 10,
            ..Limits::default()
        });
        assert!(g.admit() && g.admit());
        assert!(!g.admit(), "a third connection past max_connections 2");
        g.leave();
        assert!(g.admit());
        assert!(g.charge(10));
        assert!(!g.charge(1), "one byte past max_buffered_bytes");
        g.refund(4);
        assert!(g.charge(4) && !g.charge(1));
        assert_eq!(g.buffered(), 10);
    }
}
