//! A process's stdout or stderr, read from its pipe (or its terminal's
//! master) only when ReadStdout/ReadStderr asks. The pipe is the buffer:
//! the agent holds none of the output, so nothing is lost when it dies
//! (the monitor keeps the pipe open, a restarted agent takes it back),
//! and a process nobody reads waits on its full pipe (the backpressure
//! of any pipe) instead of having bytes dropped.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::sync::{watch, Notify};

/// Largest single read answered (ttrpc frames are capped at 4 MiB).
pub const MAX_READ: usize = 1 << 20;

/// One output stream of a process.
pub struct Output {
    src: tokio::sync::Mutex<Option<AsyncFd<OwnedFd>>>,
    abandoned: AtomicBool,
    wake: Notify,
    /// True once EOF was read (or the stream was abandoned or had none).
    ended: watch::Sender<bool>,
}

impl Output {
    /// A stream read from `fd` (a pipe's read end, or a terminal master:
    /// its EIO once the last user has gone is EOF). One that cannot be
    /// polled reads as EOF.
    pub fn new(fd: OwnedFd) -> Arc<Self> {
        Self::with(crate::sys::fd::async_fd(fd).ok())
    }

    /// A stream that is already at EOF (none: a terminal's stderr, or a
    /// process whose streams were lost).
    pub fn closed() -> Arc<Self> {
        Self::with(None)
    }

    fn with(src: Option<AsyncFd<OwnedFd>>) -> Arc<Self> {
        Arc::new(Self {
            ended: watch::Sender::new(src.is_none()),
            src: tokio::sync::Mutex::new(src),
            abandoned: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// Long poll: waits for data; returns up to `len` bytes, or empty at
    /// EOF. Concurrent reads of one stream queue.
    pub async fn read(&self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len.clamp(1, MAX_READ)];
        let mut src = self.src.lock().await;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.abandoned.load(Ordering::Acquire) {
                *src = None;
            }
            let Some(fd) = src.as_ref() else {
                self.ended.send_replace(true);
                return Vec::new();
            };
            let mut ready = tokio::select! {
                r = fd.readable() => match r {
                    Ok(g) => g,
                    Err(_) => { *src = None; continue; }
                },
                _ = woken => continue,
            };
            match ready.try_io(|f| nix::unistd::read(f.as_raw_fd(), &mut buf).map_err(std::io::Error::from)) {
                Ok(Ok(n)) if n > 0 => {
                    buf.truncate(n);
                    return buf;
                }
                // EOF, or EIO from a terminal whose last user left.
                Ok(_) => *src = None,
                Err(_would_block) => {}
            }
        }
    }

    /// Gives up the stream (at removal): readers get EOF, and the pipe is
    /// closed, so a writer gets EPIPE instead of waiting on a full pipe.
    pub fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        self.wake.notify_waiters();
        if let Ok(mut src) = self.src.try_lock() {
            *src = None;
        }
        self.ended.send_replace(true);
    }

    /// True once the stream has been read to its end (or abandoned).
    pub fn has_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Waits until the stream has been read to its end (or abandoned).
    pub async fn ended(&self) {
        let mut rx = self.ended.subscribe();
        let _ = rx.wait_for(|e| *e).await;
    }
}

/// A process's stdin: a pipe's write end or a terminal's master, written
/// through tokio's poller (the master is shared with the output reader,
/// both non-blocking).
pub struct Input(AsyncFd<OwnedFd>);

impl Input {
    /// Wraps `fd`.
    pub fn new(fd: OwnedFd) -> std::io::Result<Self> {
        Ok(Self(crate::sys::fd::async_fd(fd)?))
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut ready = self.0.writable().await?;
            match ready.try_io(|f| nix::unistd::write(f, data).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }
}
