//! A zstd stream of any number of frames (skippable ones skipped), read
//! with the pure-Rust `ruzstd` decoder: layers written as several frames
//! (zstd:chunked) decode whole, and the agent links no C library for it.

use std::io::{self, BufRead, Read};

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// Decodes the frames of `src` one after another.
pub struct ZstdFrames<R: BufRead> {
    src: R,
    dec: FrameDecoder,
    in_frame: bool,
}

impl<R: BufRead> ZstdFrames<R> {
    /// A reader of the decoded bytes of `src`.
    pub fn new(src: R) -> Self {
        Self {
            src,
            dec: FrameDecoder::new(),
            in_frame: false,
        }
    }

    /// The compressed stream (what is left of it).
    pub fn into_inner(self) -> R {
        self.src
    }
}

fn bad(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.src.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.dec.reset(&mut self.src) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame {
                        length, ..
                    })) => {
                        let skipped = io::copy(&mut (&mut self.src).take(u64::from(length)), &mut io::sink())?;
                        if skipped < u64::from(length) {
                            return Err(bad("a skippable frame cut short"));
                        }
                        continue;
                    }
                    Err(e) => return Err(bad(e)),
                }
            }
            while self.dec.can_collect() < buf.len() && !self.dec.is_finished() {
                let want = buf.len() - self.dec.can_collect();
                self.dec
                    .decode_blocks(&mut self.src, BlockDecodingStrategy::UptoBytes(want))
                    .map_err(bad)?;
            }
            let n = self.dec.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.dec.is_finished() && self.dec.can_collect() == 0 {
                self.in_frame = false; // the next frame, if any
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_frames_and_a_skippable_one() {
        let a: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let b = b"second frame".repeat(1000);
        let mut stream = ruzstd::encoding::compress_to_vec(&a[..], ruzstd::encoding::CompressionLevel::Fastest);
        // A skippable frame: magic 0x184D2A50, length 4, payload.
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&4u32.to_le_bytes());
        stream.extend_from_slice(b"skip");
        stream.extend(ruzstd::encoding::compress_to_vec(
            &b[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        ));
        let mut out = Vec::new();
        ZstdFrames::new(&stream[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert_eq!(&out[..a.len()], &a[..]);
        assert_eq!(&out[a.len()..], &b[..]);
        assert!(ZstdFrames::new(&b"not zstd at all"[..])
            .read_to_end(&mut Vec::new())
            .is_err());
    }
}
