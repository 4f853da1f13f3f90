//! `FrameGuard`: every accepted connection's bytes pass through it. It
//! hands ttrpc only whole frames, closes a connection on a frame no honest
//! client sends, and keeps the connection within the bounds of
//! `limits.rs`.
//!
//! - **Whole frames.** ttrpc reads a frame header, allocates the body the
//!   header announces, then waits for it: a header claiming 4 MiB followed
//!   by one byte pinned 4 MiB per connection. The guard buffers a frame as
//!   its bytes arrive (its buffer grows with what was received, not with
//!   what was announced) and lets ttrpc read it only once it is complete.
//!   Buffered bytes of incomplete frames are charged to the agent-wide
//!   budget; a frame that does not fit, or stays incomplete past the frame
//!   timeout, closes its connection.
//! - **Backpressure.** Requests read and not yet answered are counted (a
//!   request frame in, a response frame out). At the per-connection or the
//!   agent-wide bound the guard stops reading the connection until answers
//!   go out: a client that pipelines requests and never reads the answers
//!   fills its own socket buffer and blocks, instead of growing the agent.
//! - **Framing.** Oversized frames and frame types a client never sends
//!   close the connection at once; other connections are unaffected.
//!
//! Small requests still cost one read(2): the guard reads ahead into one
//! buffer, and ttrpc's two exact reads (header, body) are served from it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::Gate;

/// ttrpc's frame header: length u32 BE, stream id u32 BE, type u8, flags u8.
const HEADER_LEN: usize = 10;
/// Largest frame body accepted: ttrpc's own limit (4 MiB), which also bounds
/// CopyFile chunks and stdin writes.
pub const MAX_FRAME_LEN: u32 = 4 << 20;
/// Frame types a client may send: request (1) and stream data (3).
const CLIENT_FRAME_TYPES: [u8; 2] = [1, 3];
/// ttrpc's request and response frame types.
const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
/// Read-ahead: most requests fit whole in one read of this size.
const READ_AHEAD: usize = 8 << 10;
/// A buffer grown past this for a big frame is dropped once it is empty.
const KEEP_CAPACITY: usize = 64 << 10;
/// A connection whose buffer grew past this gives the allocator's free
/// memory back to the kernel when it closes (a big CopyFile, an attack).
const TRIM_AFTER: usize = 1 << 20;

/// An `AsyncRead + AsyncWrite` that validates and bounds inbound framing.
pub struct FrameGuard<S> {
    inner: S,
    gate: Arc<Gate>,
    /// Bytes read from the socket: whole frames not yet handed out at
    /// `buf[start..ready]`, then the incomplete frame at `buf[ready..end]`.
    buf: Vec<u8>,
    start: usize,
    ready: usize,
    end: usize,
    inbound: Frames,
    outbound: Frames,
    /// The complete frames in `buf[start..ready]`: where each ends, and its
    /// type. A request is counted pending when ttrpc starts reading it.
    whole: std::collections::VecDeque<(usize, u8)>,
    /// ttrpc is part-way through the front frame of `whole`.
    handing: bool,
    /// Bytes of the incomplete frame charged to the gate.
    charged: usize,
    /// Requests handed to ttrpc and not yet answered.
    pending: usize,
    /// Since when a frame has been incomplete.
    incomplete: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The largest the buffer grew.
    peak: usize,
}

impl<S> FrameGuard<S> {
    /// Wraps a connection the gate admitted (`Gate::admit`); dropping the
    /// guard gives back everything it counted.
    pub fn new(inner: S, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            buf: Vec::new(),
            start: 0,
            ready: 0,
            end: 0,
            inbound: Frames::default(),
            outbound: Frames::default(),
            whole: std::collections::VecDeque::new(),
            handing: false,
            charged: 0,
            pending: 0,
            incomplete: None,
            peak: 0,
        }
    }
}

impl<S> Drop for FrameGuard<S> {
    fn drop(&mut self) {
        self.gate.refund(self.charged);
        self.gate.sub_pending(self.pending);
        self.gate.leave();
        if self.peak > TRIM_AFTER {
            crate::sys::process::release_free_memory();
        }
    }
}

/// Where a byte stream is: inside a header, or inside a body.
#[derive(Default)]
struct Frames {
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: u64,
    /// The type of the frame whose body is being read.
    kind: u8,
}

impl Frames {
    /// Advances over `bytes`, calling `done(offset just past the frame,
    /// frame type)` for each frame that completes; with `check`, a header
    /// no client sends is an error (meaning "close").
    fn scan(&mut self, mut bytes: &[u8], check: bool, mut done: impl FnMut(usize, u8)) -> io::Result<()> {
        let mut at = 0;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len() as u64) as usize;
                self.body_left -= n as u64;
                (bytes, at) = (&bytes[n..], at + n);
                if self.body_left == 0 {
                    done(at, self.kind);
                }
                continue;
            }
            let take = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            (bytes, at) = (&bytes[take..], at + take);
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                let len = if check {
                    check_header(&self.header)?
                } else {
                    u32::from_be_bytes([self.header[0], self.header[1], self.header[2], self.header[3]])
                };
                self.kind = self.header[8];
                self.body_left = u64::from(len);
                if len == 0 {
                    done(at, self.kind);
                }
            }
        }
        Ok(())
    }

    /// Bytes of the current frame still to come (0 between frames).
    fn left(&self) -> usize {
        if self.header_len > 0 {
            HEADER_LEN - self.header_len
        } else {
            self.body_left as usize
        }
    }
}

fn check_header(h: &[u8; HEADER_LEN]) -> io::Result<u32> {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit; closing connection"),
        ));
    }
    if !CLIENT_FRAME_TYPES.contains(&h[8]) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "frame type {} is not a ttrpc request or data frame; closing connection",
                h[8]
            ),
        ));
    }
    Ok(len)
}

impl<S: AsyncRead + Unpin> FrameGuard<S> {
    /// Whether another request may be read now; if not, the task is woken
    /// when an answer goes out anywhere.
    fn room(&self, cx: &Context<'_>) -> bool {
        let fits = |g: &Gate| self.pending < g.limits.max_pending_per_connection && g.pending_room();
        if fits(&self.gate) {
            return true;
        }
        self.gate.wait(cx.waker());
        fits(&self.gate) // an answer may have gone out meanwhile
    }

    /// Makes room at `buf[end..]` for the next read: at least the read-ahead,
    /// for a big body as much again as already arrived (the buffer grows
    /// with what was received, never with what a header announced).
    fn make_room(&mut self) {
        if self.start == self.ready && self.ready > 0 {
            self.buf.copy_within(self.ready..self.end, 0);
            (self.end, self.ready, self.start) = (self.end - self.ready, 0, 0);
        }
        if self.end == 0 && self.buf.len() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        let received = self.end - self.ready;
        let want = self.inbound.left().clamp(READ_AHEAD, READ_AHEAD.max(received));
        if self.buf.len() < self.end + want {
            self.buf.resize(self.end + want, 0);
            self.peak = self.peak.max(self.buf.len());
        }
    }

    /// Scans `n` new bytes at `buf[end..]`: frames that completed become
    /// ready to hand out; the incomplete rest is charged.
    fn take_in(&mut self, n: usize) -> io::Result<()> {
        let base = self.end;
        let whole = &mut self.whole;
        self.inbound.scan(&self.buf[base..base + n], true, |at, kind| {
            whole.push_back((base + at, kind))
        })?;
        self.end += n;
        if let Some((r, _)) = self.whole.back() {
            self.ready = *r;
        }
        let incomplete = self.end - self.ready;
        if incomplete > self.charged {
            if !self.gate.charge(incomplete - self.charged) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "incomplete requests over every connection past {} bytes (--max-buffered-bytes); closing connection",
                        self.gate.limits.max_buffered_bytes
                    ),
                ));
            }
        } else {
            self.gate.refund(self.charged - incomplete);
        }
        self.charged = incomplete;
        if incomplete == 0 {
            self.incomplete = None;
        } else if self.incomplete.is_none() {
            self.incomplete = Some(Box::pin(tokio::time::sleep(self.gate.limits.frame_timeout)));
        }
        Ok(())
    }

    /// Hands ttrpc the next bytes of the front whole frame; a request is
    /// started only with room for it (else Pending, woken by an answer).
    fn hand_out(&mut self, cx: &Context<'_>, out: &mut ReadBuf<'_>) -> Poll<()> {
        let (frame_end, kind) = *self.whole.front().expect("a whole frame is ready");
        if !self.handing {
            if kind == REQUEST {
                if !self.room(cx) {
                    return Poll::Pending;
                }
                self.pending += 1;
                self.gate.add_pending();
            }
            self.handing = true;
        }
        let n = (frame_end - self.start).min(out.remaining());
        out.put_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == frame_end {
            self.whole.pop_front();
            self.handing = false;
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.start < this.ready {
                ready!(this.hand_out(cx, out));
                return Poll::Ready(Ok(()));
            }
            // Without room for another request, only the rest of a frame
            // already begun is read (it would otherwise time out).
            let limit = match this.room(cx) {
                true => usize::MAX,
                false if this.ready == this.end => return Poll::Pending,
                false => this.inbound.left(),
            };
            this.make_room();
            let room = (this.buf.len() - this.end).min(limit);
            let mut rb = ReadBuf::new(&mut this.buf[this.end..this.end + room]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => {
                    if let Some(t) = this.incomplete.as_mut() {
                        ready!(t.as_mut().poll(cx));
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "a frame stayed incomplete for {:?} (--frame-timeout); closing connection",
                                this.gate.limits.frame_timeout
                            ),
                        )));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        return Poll::Ready(Ok(())); // EOF (mid-frame: ttrpc sees it cut)
                    }
                    this.take_in(n)?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        let mut answered = 0;
        this.outbound
            .scan(&buf[..n], false, |_, kind| answered += usize::from(kind == RESPONSE))?;
        let answered = answered.min(this.pending);
        this.pending -= answered;
        this.gate.sub_pending(answered);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::limits::Limits;

    fn header(len: u32, ty: u8) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(&[ty, 0]);
        h
    }

    fn gate(limits: Limits) -> Arc<Gate> {
        let g = Arc::new(Gate::new(limits));
        assert!(g.admit());
        g
    }

    #[test]
    fn accepts_frames_split_anywhere() {
        let mut stream = header(3, 1);
        stream.extend_from_slice(b"abc");
        stream.extend(header(0, 3));
        stream.extend(header(MAX_FRAME_LEN, 1));
        for split in 1..stream.len() {
            let mut g = Frames::default();
            let mut done = Vec::new();
            let mut seen = 0;
            for chunk in stream.chunks(split) {
                g.scan(chunk, true, |at, kind| done.push((seen + at, kind)))
                    .unwrap_or_else(|e| panic!("split {split}: {e}"));
                seen += chunk.len();
            }
            assert_eq!(g.body_left, u64::from(MAX_FRAME_LEN), "split {split}");
            assert_eq!(done, vec![(13, 1), (23, 3)], "split {split}: frames completed");
        }
    }

    #[test]
    fn refuses_bad_frames() {
        let cases = [
            ("1 GiB", header(1 << 30, 1)),
            ("limit + 1", header(MAX_FRAME_LEN + 1, 1)),
            ("response type", header(1, 2)),
            ("type 0", header(1, 0)),
        ];
        for (i, (name, h)) in cases.into_iter().enumerate() {
            let mut g = Frames::default();
            let err = g.scan(&h, true, |_, _| {}).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "test[{i}]: {name}");
        }
    }

    /// A socket that hands out `data` in reads of at most `chunk` bytes,
    /// counts them, then stays silent (Pending) or ends (EOF).
    struct Chunks {
        data: Vec<u8>,
        chunk: usize,
        reads: usize,
        silent_at_end: bool,
    }

    impl AsyncRead for Chunks {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if self.data.is_empty() && self.silent_at_end {
                return Poll::Pending;
            }
            let n = self.chunk.min(self.data.len()).min(buf.remaining());
            let rest = self.data.split_off(n);
            buf.put_slice(&std::mem::replace(&mut self.data, rest));
            self.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn chunks(data: Vec<u8>, chunk: usize) -> Chunks {
        Chunks {
            data,
            chunk,
            reads: 0,
            silent_at_end: false,
        }
    }

    fn frame(len: u32, ty: u8) -> Vec<u8> {
        let mut f = header(len, ty);
        f.extend((0..len).map(|i| i as u8));
        f
    }

    #[tokio::test]
    async fn hands_out_whole_frames_every_byte_once() {
        use tokio::io::AsyncReadExt;
        let small = [frame(3, 1), frame(200, 1), frame(0, 3)].concat();
        let big = frame(64 << 10, 1);
        let cases = [
            ("small frames, one read", small.clone(), usize::MAX, Some(1)),
            ("small frames, cut every 7 bytes", small.clone(), 7, None),
            ("a big body", big.clone(), usize::MAX, None),
            ("a big body, cut every 1000 bytes", big.clone(), 1000, None),
        ];
        for (i, (name, data, chunk, reads)) in cases.into_iter().enumerate() {
            let mut g = FrameGuard::new(chunks(data.clone(), chunk), gate(Limits::default()));
            let mut got = Vec::new();
            while got.len() < data.len() {
                let mut h = [0u8; HEADER_LEN];
                g.read_exact(&mut h).await.unwrap();
                let mut body = vec![0; u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize];
                g.read_exact(&mut body).await.unwrap();
                got.extend(h);
                got.extend(body);
            }
            assert_eq!(got, data, "test[{i}]: {name}");
            if let Some(r) = reads {
                assert_eq!(g.inner.reads, r, "test[{i}]: {name}: reads of the socket");
            }
            assert_eq!(g.read(&mut [0u8; 16]).await.unwrap(), 0, "test[{i}]: {name}: EOF");
            assert_eq!(g.gate.buffered(), 0, "test[{i}]: {name}: nothing left charged");
        }
    }

    #[tokio::test]
    async fn an_announced_body_is_not_allocated_before_it_arrives() {
        use tokio::io::AsyncReadExt;
        let mut data = header(MAX_FRAME_LEN, 1);
        data.push(7);
        let mut g = FrameGuard::new(
            Chunks {
                data,
                chunk: usize::MAX,
                reads: 0,
                silent_at_end: true,
            },
            gate(Limits::default()),
        );
        let mut h = [0u8; HEADER_LEN];
        let r = tokio::time::timeout(std::time::Duration::from_millis(50), g.read_exact(&mut h)).await;
        assert!(r.is_err(), "the header was handed out before its body arrived");
        assert!(
            g.buf.len() <= 2 * READ_AHEAD,
            "{} bytes allocated for 11 received",
            g.buf.len()
        );
        assert_eq!(g.gate.buffered(), 11, "the received bytes are charged");
        drop(g);
    }

    #[tokio::test]
    async fn a_frame_past_the_budget_closes_its_connection() {
        use tokio::io::AsyncReadExt;
        let g = gate(Limits {
            max_buffered_bytes: 1000,
            ..Limits::default()
        });
        let mut guard = FrameGuard::new(chunks(frame(2000, 1), 100), g.clone());
        let err = guard
            .read_exact(&mut [0u8; HEADER_LEN])
            .await
            .expect_err("over the budget");
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        drop(guard);
        assert_eq!(g.buffered(), 0, "the closed connection's bytes are given back");
        assert_eq!(g.connections(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_incomplete_frame_times_out() {
        use tokio::io::AsyncReadExt;
        let mut data = header(100, 1);
        data.extend([1, 2, 3]);
        let mut g = FrameGuard::new(
            Chunks {
                data,
                chunk: usize::MAX,
                reads: 0,
                silent_at_end: true,
            },
            gate(Limits::default()),
        );
        let err = g.read_exact(&mut [0u8; HEADER_LEN]).await.expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn unanswered_requests_stop_the_reading_until_answers_go_out() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = Limits {
            max_pending_per_connection: 2,
            ..Limits::default()
        };
        let data = [frame(1, 1), frame(1, 1), frame(1, 1)].concat();
        let mut g = FrameGuard::new(chunks(data, 11), gate(limits));
        let mut f = [0u8; 11];
        g.read_exact(&mut f).await.unwrap();
        g.read_exact(&mut f).await.unwrap();
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), g.read_exact(&mut f)).await;
        assert!(third.is_err(), "a third request was read with two unanswered");
        g.write_all(&[header(4, RESPONSE), vec![0; 4]].concat()).await.unwrap();
        g.read_exact(&mut f).await.expect("read once an answer went out");
        assert_eq!(g.gate.pending(), 2);
        drop(g);
    }

    #[tokio::test]
    async fn a_bad_header_read_ahead_fails_the_read() {
        use tokio::io::AsyncReadExt;
        let data = [frame(3, 1), header(1 << 30, 1)].concat();
        let mut g = FrameGuard::new(chunks(data, usize::MAX), gate(Limits::default()));
        let err = g.read_exact(&mut [0u8; HEADER_LEN]).await.expect_err("1 GiB header");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
