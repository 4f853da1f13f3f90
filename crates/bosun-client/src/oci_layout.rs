//! Builds images as OCI layouts (index.json, oci-layout, blobs/sha256/…)
//! for the tests and the benchmark to push to a registry: layers of
//! files, directories, links, device nodes, whiteouts and opaque markers,
//! gzip, zstd or plain; and, for the hostile cases, entries no honest
//! tool writes (names with `..`, absolute names, links out of the layer).

use std::io::Write;
use std::path::Path;

use bosun::image::sha256_digest;

/// One tar entry.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory with its mode.
    Dir(String, u32),
    /// A file: name, content, mode (setuid and sticky bits allowed).
    File(String, Vec<u8>, u32),
    /// A file with extended attributes (PAX `SCHILY.xattr.`).
    FileXattr(String, Vec<u8>, u32, Vec<(String, Vec<u8>)>),
    /// A file owned by uid:gid.
    FileOwned(String, Vec<u8>, u32, u64, u64),
    /// A symlink: name, target.
    Symlink(String, String),
    /// A hard link: name, target (a name in the layer).
    Hardlink(String, String),
    /// A character device: name, major, minor.
    CharDev(String, u32, u32),
    /// The whiteout of a name of a lower layer.
    Whiteout(String),
    /// Marks a directory opaque (its lower contents hidden).
    Opaque(String),
    /// A file whose name is written as given, unchecked (`../x`, `/x`).
    RawFile(String, Vec<u8>),
    /// A symlink or hard link (true) whose name and target are unchecked.
    RawLink(String, String, bool),
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comp {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Built {
    /// Digest of the image manifest.
    pub manifest_digest: String,
    /// Digests of the layer blobs, bottom first.
    pub layers: Vec<String>,
    /// diff_ids (digests of the uncompressed tars), bottom first.
    pub diff_ids: Vec<String>,
    /// Bytes of the layer blobs.
    pub blob_bytes: u64,
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// Writes `name` into the header's name field as it is, bypassing the
/// checks `tar` makes (for hostile entries).
fn raw_name(h: &mut tar::Header, name: &str) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn raw_link(h: &mut tar::Header, name: &str) {
    let field = &mut h.as_old_mut().linkname;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

/// `len` bytes that no compressor shrinks (xorshift from `seed`): layers
/// of a known size on the wire.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The tar of one layer.
pub fn layer_tar(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(n, mode) => {
                let mut h = header(T::Directory, *mode, 0);
                b.append_data(&mut h, n, &[][..])?;
            }
            Entry::File(n, data, mode) => {
                let mut h = header(T::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, n, &data[..])?;
            }
            Entry::FileOwned(n, data, mode, uid, gid) => {
                let mut h = header(T::Regular, *mode, data.len() as u64);
                h.set_uid(*uid);
                h.set_gid(*gid);
                b.append_data(&mut h, n, &data[..])?;
            }
            Entry::FileXattr(n, data, mode, xattrs) => {
                let pax: Vec<(String, &[u8])> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), &v[..]))
                    .collect();
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
                let mut h = header(T::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, n, &data[..])?;
            }
            Entry::Symlink(n, to) => {
                let mut h = header(T::Symlink, 0o777, 0);
                b.append_link(&mut h, n, to)?;
            }
            Entry::Hardlink(n, to) => {
                let mut h = header(T::Link, 0o644, 0);
                b.append_link(&mut h, n, to)?;
            }
            Entry::CharDev(n, maj, min) => {
                let mut h = header(T::Char, 0o666, 0);
                h.set_device_major(*maj)?;
                h.set_device_minor(*min)?;
                b.append_data(&mut h, n, &[][..])?;
            }
            Entry::Whiteout(n) => {
                let p = Path::new(n);
                let name = match p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    Some(d) => format!(
                        "{}/.wh.{}",
                        d.display(),
                        p.file_name().unwrap_or_default().to_string_lossy()
                    ),
                    None => format!(".wh.{n}"),
                };
                let mut h = header(T::Regular, 0o644, 0);
                b.append_data(&mut h, name, &[][..])?;
            }
            Entry::Opaque(d) => {
                let mut h = header(T::Regular, 0o644, 0);
                b.append_data(&mut h, format!("{d}/.wh..wh..opq"), &[][..])?;
            }
            Entry::RawFile(n, data) => {
                let mut h = header(T::Regular, 0o644, data.len() as u64);
                raw_name(&mut h, n);
                h.set_cksum();
                b.append(&h, &data[..])?;
            }
            Entry::RawLink(n, to, hard) => {
                let mut h = header(if *hard { T::Link } else { T::Symlink }, 0o777, 0);
                raw_name(&mut h, n);
                raw_link(&mut h, to);
                h.set_cksum();
                b.append(&h, &[][..])?;
            }
        }
    }
    b.into_inner()
}

/// Compresses a tar as `comp` says.
pub fn compress(tar: &[u8], comp: Comp) -> std::io::Result<Vec<u8>> {
    Ok(match comp {
        Comp::None => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar)?;
            e.finish()?
        }
        Comp::Zstd => ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest),
    })
}

fn media_type(c: Comp) -> &'static str {
    match c {
        Comp::None => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

fn put_blob(dir: &Path, data: &[u8]) -> std::io::Result<String> {
    let d = sha256_digest(data);
    let p = dir.join("blobs/sha256").join(&d[7..]);
    std::fs::create_dir_all(p.parent().expect("parent"))?;
    std::fs::write(p, data)?;
    Ok(d)
}

/// Writes an image of `layers` (bottom first) as the OCI layout `dir`,
/// tagged `tag`. `config_pad` adds that many bytes to the config (for the
/// size cap); `wrong_diff_id` puts a false diff_id in the config.
pub fn write_layout(dir: &Path, tag: &str, layers: &[(Vec<Entry>, Comp)], config_pad: usize) -> std::io::Result<Built> {
    let mut descs = Vec::new();
    let (mut digests, mut diff_ids, mut blob_bytes) = (Vec::new(), Vec::new(), 0u64);
    for (entries, comp) in layers {
        let tar = layer_tar(entries)?;
        diff_ids.push(sha256_digest(&tar));
        let blob = compress(&tar, *comp)?;
        blob_bytes += blob.len() as u64;
        let d = put_blob(dir, &blob)?;
        descs.push(serde_json::json!({"mediaType": media_type(*comp), "digest": d, "size": blob.len()}));
        digests.push(d);
    }
    let (os, arch) = bosun::image::manifest::this_platform();
    let config = serde_json::json!({
        "architecture": arch, "os": os,
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "Labels": {"pad": "x".repeat(config_pad)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = put_blob(dir, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))?;
    let manifest_digest = put_blob(dir, &manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
            "platform": {"os": os, "architecture": arch},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Built {
        manifest_digest,
        layers: digests,
        diff_ids,
        blob_bytes,
    })
}

/// The bottom layer of a runnable image: busybox (static) at /bin/busybox,
/// applets as hard links and symlinks to it, /etc and /tmp.
pub fn busybox_layer(applets: &[&str]) -> std::io::Result<Vec<Entry>> {
    let bin = std::fs::read(super::spec::busybox_binary()?)?;
    let mut v = vec![
        Entry::Dir("bin".into(), 0o755),
        Entry::Dir("etc".into(), 0o755),
        Entry::Dir("tmp".into(), 0o1777),
        Entry::Dir("proc".into(), 0o555),
        Entry::Dir("dev".into(), 0o755),
        Entry::Dir("sys".into(), 0o555),
        Entry::File("bin/busybox".into(), bin, 0o755),
    ];
    for (i, a) in applets.iter().enumerate() {
        // Half as hard links, half as symlinks: both kinds get unpacked.
        if i % 2 == 0 {
            v.push(Entry::Hardlink(format!("bin/{a}"), "bin/busybox".into()));
        } else {
            v.push(Entry::Symlink(format!("bin/{a}"), "busybox".into()));
        }
    }
    v.push(Entry::File(
        "etc/passwd".into(),
        b"root:x:0:0:root:/:/bin/sh\n".to_vec(),
        0o644,
    ));
    Ok(v)
}
