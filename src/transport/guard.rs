//! `FrameGuard`: reads ttrpc frame headers as bytes arrive and closes the
//! connection on a frame that no honest client sends.
//!
//! ttrpc itself answers an oversized frame with an error and then reads and
//! discards the whole body: a header claiming 1 GiB would pin the connection
//! until a gigabyte arrives. The guard fails the read instead, so ttrpc drops
//! that connection at once; other connections are unaffected.

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

/// An `AsyncRead + AsyncWrite` that validates inbound ttrpc framing.
pub struct FrameGuard<S> {
    inner: S,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: u64,
}

impl<S> FrameGuard<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
        }
    }

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
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        Poll::Ready(this.scan(&buf.filled()[before..]))
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
            let mut g = FrameGuard::new(());
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
            let mut g = FrameGuard::new(());
            let err = g.scan(&h).expect_err(name);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "test[{i}]: {name}");
        }
    }
}
