//! One layer: download, verify (size and digest of the blob, digest of
//! the uncompressed tar against the config's diff_id) while streaming,
//! and unpack into a temporary directory that becomes the layer only
//! when everything checked out.

use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use slog::{info, warn, Logger};

use super::manifest::{Compression, Descriptor};
use super::reference::Reference;
use super::registry::{Registry, RegistryError};
use super::unpack::{self, Limits, Stats};
use super::PullError;

/// Chunks in flight between the network and the unpacker.
const CHANNEL_CHUNKS: usize = 32;
/// Entries a layer may hold.
const MAX_ENTRIES: u64 = 1 << 20;
/// Kept free on the image store's filesystem.
const RESERVE: u64 = 1 << 20;

/// Reads the chunks the network side sends; an `Err` ends the stream.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Hashes and counts what passes through; refuses more than `cap` bytes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    n: u64,
    cap: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R, cap: u64) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            n: 0,
            cap,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        if self.n > self.cap {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than the {} bytes announced", self.cap),
            ));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Drains `r` to its end (the tar's trailing blocks and padding count
/// towards both digests).
fn drain(r: &mut dyn Read) -> io::Result<()> {
    io::copy(r, &mut io::sink()).map(|_| ())
}

/// What the blocking side found (the blob's digest was checked there).
struct Unpacked {
    stats: Stats,
    blob_size: u64,
    diff_digest: String,
}

/// The blocking side: hash the blob, decompress, hash the tar, unpack.
fn unpack_counted(
    rx: ChannelReader,
    expected: &str,
    size: u64,
    comp: Compression,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, PullError> {
    let blob = Hashing::new(rx, size);
    match comp {
        Compression::None => run(blob, Ok, expected, dest, limits),
        Compression::Gzip => run(
            flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(64 << 10, blob)),
            |d| Ok(d.into_inner().into_inner()),
            expected,
            dest,
            limits,
        ),
        Compression::Zstd => run(
            super::zstd_frames::ZstdFrames::new(io::BufReader::with_capacity(64 << 10, blob)),
            |d| Ok(d.into_inner().into_inner()),
            expected,
            dest,
            limits,
        ),
    }
}

fn run<D: Read>(
    decoder: D,
    into_blob: impl FnOnce(D) -> io::Result<Hashing<ChannelReader>>,
    expected: &str,
    dest: &Path,
    limits: Limits,
) -> Result<Unpacked, PullError> {
    let stream = |e: io::Error| PullError::Stream(e.to_string());
    let mut tar = Hashing::new(decoder, u64::MAX);
    let unpacked = unpack::unpack(&mut tar, dest, limits);
    // The tar's trailing blocks, and anything after the compressed
    // stream, count towards the digests too. After a failure the rest of
    // the blob is still read (it is bounded by its announced size): a blob
    // that does not hash to its digest is reported as that, whatever it
    // did to the tar reader.
    let tar_drained = if unpacked.is_ok() { drain(&mut tar) } else { Ok(()) };
    let diff_digest = super::digest_string(&tar.hash.finalize());
    let mut blob = into_blob(tar.inner).map_err(stream)?;
    let blob_drained = drain(&mut blob);
    let blob_digest = super::digest_string(&blob.hash.finalize());
    if blob_drained.is_ok() && blob_digest != expected {
        return Err(PullError::Digest(format!(
            "layer blob hashes to {blob_digest}, the manifest says {expected}"
        )));
    }
    let stats = unpacked.map_err(|e| match e {
        unpack::UnpackError::Stream(s) => PullError::Stream(s),
        unpack::UnpackError::TooLarge { what, limit } => {
            PullError::TooLarge(format!("layer has more {what} than the {limit} left for it"))
        }
        other => PullError::Hostile(other.to_string()),
    })?;
    tar_drained.map_err(stream)?;
    blob_drained.map_err(stream)?;
    Ok(Unpacked {
        stats,
        blob_size: blob.n,
        diff_digest,
    })
}

/// Resumptions of one blob's transfer after it broke mid-way.
const MAX_RESUMES: u32 = 3;

/// The first byte a 206 answer carries (`Content-Range: bytes N-M/T`).
fn content_range_from(resp: &hyper::Response<hyper::body::Incoming>) -> Option<u64> {
    let v = resp.headers().get(hyper::header::CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Downloads and unpacks `desc` (whose tar must hash to `diff_id`) into
/// `tmp`; the caller renames it into place.
pub async fn fetch(
    registry: &Registry,
    log: &Logger,
    r: &Reference,
    desc: &Descriptor,
    diff_id: &str,
    tmp: &Path,
) -> Result<(), PullError> {
    let comp = super::manifest::layer_compression(&desc.media_type).map_err(PullError::BadContent)?;
    let available = crate::sys::fsnode::bytes_available(tmp)
        .map_err(|e| PullError::Internal(format!("statvfs {}: {e}", tmp.display())))?
        .saturating_sub(RESERVE);
    if desc.size > available {
        return Err(PullError::TooLarge(format!(
            "layer {} is {} bytes compressed; the image store has {available} left",
            desc.digest, desc.size
        )));
    }
    let limits = Limits {
        max_bytes: available,
        max_entries: MAX_ENTRIES,
    };
    let resp = registry.blob(r, &desc.digest).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
    let reader = ChannelReader { rx, cur: Bytes::new() };
    let (dest, size, expected) = (tmp.to_path_buf(), desc.size, desc.digest.clone());
    let worker = tokio::task::spawn_blocking(move || unpack_counted(reader, &expected, size, comp, &dest, limits));
    let mut body = resp.into_body();
    let (start, mut last_log, mut sent) = (Instant::now(), Instant::now(), 0u64);
    let (mut resumes, mut skip) = (0u32, 0u64);
    let short = &desc.digest[7..19];
    let net = loop {
        let broke = match registry.next_chunk(r, &mut body).await {
            Ok(Some(mut chunk)) => {
                // A registry that answered a Range request whole: drop what
                // was already passed on.
                if skip > 0 {
                    let n = skip.min(chunk.len() as u64);
                    skip -= n;
                    chunk = chunk.slice(n as usize..);
                    if chunk.is_empty() {
                        continue;
                    }
                }
                sent += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    break Ok(()); // the unpacker stopped; its error says why
                }
                if last_log.elapsed() >= Duration::from_secs(1) {
                    last_log = Instant::now();
                    info!(log, "pulling layer"; "image" => %r, "layer" => short, "bytes" => sent, "total" => desc.size,
                        "mb_per_s" => format!("{:.1}", sent as f64 / 1e6 / start.elapsed().as_secs_f64()));
                }
                continue;
            }
            // The whole blob came; a short one is left to the size check.
            Ok(None) if sent >= desc.size => break Ok(()),
            Ok(None) => RegistryError::Unavailable {
                registry: r.registry.clone(),
                reason: format!("blob {} ended at byte {sent} of {}", desc.digest, desc.size),
            },
            Err(e) => e,
        };
        // A transfer that broke after some bytes is resumed where it
        // stopped (the bytes go on into the same verifying unpacker), not
        // fetched again.
        if sent == 0 || resumes >= MAX_RESUMES || !matches!(broke, RegistryError::Unavailable { .. }) {
            let _ = tx.send(Err(broke.to_string())).await;
            break Err(broke);
        }
        resumes += 1;
        warn!(log, "layer transfer broke; resuming"; "image" => %r, "layer" => short, "at" => sent, "error" => %broke);
        match registry.blob_from(r, &desc.digest, sent).await {
            Ok(resp) => {
                skip = if resp.status() == hyper::StatusCode::PARTIAL_CONTENT && content_range_from(&resp) == Some(sent)
                {
                    0
                } else {
                    sent
                };
                body = resp.into_body();
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                break Err(e);
            }
        }
    };
    drop(tx);
    let unpacked = worker
        .await
        .map_err(|e| PullError::Internal(format!("unpack task: {e}")))?;
    net?;
    let u = unpacked?;
    if u.blob_size != desc.size {
        return Err(PullError::Digest(format!(
            "layer {} is {} bytes, the manifest says {}",
            desc.digest, u.blob_size, desc.size
        )));
    }
    if u.diff_digest != diff_id {
        return Err(PullError::Digest(format!(
            "layer {} unpacks to {}, the image config says {diff_id}",
            desc.digest, u.diff_digest
        )));
    }
    let secs = start.elapsed().as_secs_f64();
    info!(log, "layer pulled"; "image" => %r, "layer" => short, "bytes" => u.blob_size, "files" => u.stats.entries,
        "unpacked_bytes" => u.stats.bytes, "ms" => (secs * 1000.0) as u64, "mb_per_s" => format!("{:.1}", u.blob_size as f64 / 1e6 / secs));
    Ok(())
}
