//! A process's stdout or stderr: read from its pipe into a bounded buffer
//! that ReadStdout/ReadStderr drain. When the buffer is full the pipe is
//! not read, so the process blocks on write: output is never dropped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

/// Bytes buffered per stream before the writer is made to wait. 1 MiB
/// covers bursts while keeping 20 chatty containers within a few MiB.
pub const OUTPUT_BUFFER: usize = 1 << 20;
/// Largest single read answered (ttrpc frames are capped at 4 MiB).
pub const MAX_READ: usize = 1 << 20;

/// One output stream of a process.
#[derive(Default)]
pub struct Output {
    state: Mutex<OutState>,
    readable: Notify,
    writable: Notify,
}

#[derive(Default)]
struct OutState {
    buf: VecDeque<u8>,
    eof: bool,
    closed_by_reader: bool,
}

impl Output {
    /// Starts pumping `rx` (a pipe, or a terminal's master) into a new
    /// buffer. A read error (EIO from a terminal whose last user left) is EOF.
    pub fn pump<R: AsyncRead + Unpin + Send + 'static>(rx: R) -> Arc<Self> {
        let out = Arc::new(Self::default());
        let me = out.clone();
        tokio::spawn(async move { me.run(rx).await });
        out
    }

    /// A stream that is already at EOF (no pipe: e.g. re-adopted process).
    pub fn closed() -> Arc<Self> {
        let out = Self::default();
        crate::sync::lock(&out.state).eof = true;
        Arc::new(out)
    }

    async fn run<R: AsyncRead + Unpin>(&self, mut rx: R) {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Wait for room (the reader drains), unless nobody will read.
            loop {
                let w = self.writable.notified();
                tokio::pin!(w);
                w.as_mut().enable();
                {
                    let s = crate::sync::lock(&self.state);
                    if s.closed_by_reader || s.buf.len() < OUTPUT_BUFFER {
                        break;
                    }
                }
                w.await;
            }
            let n = rx.read(&mut chunk).await.unwrap_or(0);
            let mut s = crate::sync::lock(&self.state);
            if n == 0 {
                s.eof = true;
                drop(s);
                self.readable.notify_waiters();
                return;
            }
            if !s.closed_by_reader {
                s.buf.extend(&chunk[..n]);
            }
            drop(s);
            self.readable.notify_waiters();
        }
    }

    /// Long poll: waits for data; returns up to `len` bytes, or empty at EOF.
    pub async fn read(&self, len: usize) -> Vec<u8> {
        let len = len.clamp(1, MAX_READ);
        loop {
            let r = self.readable.notified();
            tokio::pin!(r);
            r.as_mut().enable();
            {
                let mut s = crate::sync::lock(&self.state);
                if !s.buf.is_empty() {
                    let n = len.min(s.buf.len());
                    let out: Vec<u8> = s.buf.drain(..n).collect();
                    drop(s);
                    self.writable.notify_waiters();
                    return out;
                }
                if s.eof || s.closed_by_reader {
                    return Vec::new();
                }
            }
            r.await;
        }
    }

    /// Drops buffered output and lets the pump discard the rest, so a
    /// process nobody reads from does not block forever (used at removal).
    pub fn abandon(&self) {
        let mut s = crate::sync::lock(&self.state);
        s.closed_by_reader = true;
        s.buf = VecDeque::new();
        drop(s);
        self.writable.notify_waiters();
        self.readable.notify_waiters();
    }
}
