//! `FrameGuard`: reads ttrpc frame headers as bytes arrive and closes the
//! connection on a frame that no honest client sends.
//!
//! ttrpc itself answers an oversized frame with an error and then reads and
//! discards the whole body: a header claiming 1 GiB would pin the connection
//! until a gigabyte arrives. The guard fails the read instead, so ttrpc drops
//! that connection at once; other connections are unaffected.
//!
//! It also reads ahead: ttrpc reads a frame as two exact reads (the 10-byte
//! header, then the body), each its own read(2). Served from one buffer, a
//! small request costs one read(2) instead of two.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// ttrpc's frame header: length u32 BE, stream id u32 BE, type u8, flags u8.
const HEADER_LEN: usize = 10;
/// Largest frame body accepted: ttrpc's own limit (4 MiB), which also bounds
/// CopyFile chunks and stdin writes.
pub const MAX_FRAME_LEN: u32 = 4 << 20;
/// Frame types a client may send: request (1) and stream data (3).
const CLIENT_FRAME_TYPES: [u8; 2] = [1, 3];
/// Read-ahead buffer: most requests fit whole. A read asking for at least
/// this much (a large body) goes to the socket directly, without a copy.
const READ_AHEAD: usize = 8 << 10;

/// An `AsyncRead + AsyncWrite` that validates inbound ttrpc framing.
pub struct FrameGuard<S> {
    inner: S,
    frames: Frames,
    /// Bytes read from the socket (and scanned), not yet handed out:
    /// `ahead[start..end]`. Allocated at the first read.
    ahead: Vec<u8>,
    start: usize,
    end: usize,
}

impl<S> FrameGuard<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            frames: Frames::default(),
            ahead: Vec::new(),
            start: 0,
            end: 0,
        }
    }
}

/// Where the inbound byte stream is: inside a header, or inside a body.
#[derive(Default)]
struct Frames {
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: u64,
}

impl Frames {
    /// Advances the frame state over `bytes`; an error means "close".
    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len() as u64);
                self.body_left -= n;
                bytes = &bytes[n as usize..];
                continue;
            }
            let take = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                self.body_left = u64::from(check_header(&self.header)?);
            }
        }
        Ok(())
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

impl<S: AsyncRead + Unpin> AsyncRead for FrameGuard<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.start == this.end {
            if buf.remaining() >= READ_AHEAD {
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                return Poll::Ready(this.frames.scan(&buf.filled()[before..]));
            }
            if this.ahead.is_empty() {
                this.ahead = vec![0; READ_AHEAD];
            }
            let mut ahead = ReadBuf::new(&mut this.ahead);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut ahead))?;
            let n = ahead.filled().len();
            this.frames.scan(&this.ahead[..n])?;
            (this.start, this.end) = (0, n);
        }
        let n = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.ahead[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameGuard<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    fn header(len: u32, ty: u8) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.extend_from_slice(&1u32.to_be_bytes());
        h.extend_from_slice(&[ty, 0]);
        h
    }

    #[test]
    fn accepts_frames_split_anywhere() {
        let mut stream = header(3, 1);
        stream.extend_from_slice(b"abc");
        stream.extend(header(0, 3));
        stream.extend(header(MAX_FRAME_LEN, 1));
        for split in 1..stream.len() {
            let mut g = Frames::default();
            for chunk in stream.chunks(split) {
                g.scan(chunk).unwrap_or_else(|e| panic!("split {split}: {e}"));
            }
            assert_eq!(g.body_left, u64::from(MAX_FRAME_LEN), "split {split}");
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
            let err = g.scan(&h).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "test[{i}]: {name}");
        }
    }

    /// A socket that hands out `data` in reads of at most `chunk` bytes and
    /// counts them.
    struct Chunks {
        data: Vec<u8>,
        chunk: usize,
        reads: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let n = self.chunk.min(self.data.len()).min(buf.remaining());
            let rest = self.data.split_off(n);
            buf.put_slice(&std::mem::replace(&mut self.data, rest));
            self.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(len: u32) -> Vec<u8> {
        let mut f = header(len, 1);
        f.extend((0..len).map(|i| i as u8));
        f
    }

    #[tokio::test]
    async fn reads_ahead_and_hands_out_every_byte_once() {
        use tokio::io::AsyncReadExt;
        let small = [frame(3), frame(200), frame(0)].concat();
        let big = frame(64 << 10);
        let cases = [
            ("small frames, one read", small.clone(), usize::MAX, 1),
            (
                "small frames, cut every 7 bytes",
                small.clone(),
                7,
                small.len().div_ceil(7),
            ),
            ("a big body read straight through", big.clone(), usize::MAX, 2),
        ];
        for (i, (name, data, chunk, reads)) in cases.into_iter().enumerate() {
            let mut g = FrameGuard::new(Chunks {
                data: data.clone(),
                chunk,
                reads: 0,
            });
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
            assert_eq!(g.inner.reads, reads, "test[{i}]: {name}: reads of the socket");
            assert_eq!(g.read(&mut [0u8; 16]).await.unwrap(), 0, "test[{i}]: {name}: EOF");
        }
    }

    #[tokio::test]
    async fn a_bad_header_read_ahead_fails_the_read() {
        use tokio::io::AsyncReadExt;
        let data = [frame(3), header(1 << 30, 1)].concat();
        let mut g = FrameGuard::new(Chunks {
            data,
            chunk: usize::MAX,
            reads: 0,
        });
        let err = g.read_exact(&mut [0u8; HEADER_LEN]).await.expect_err("1 GiB header");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
