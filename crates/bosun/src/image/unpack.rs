//! Unpacks one layer tar into a fresh directory, as overlayfs reads
//! layers: whiteouts (`.wh.NAME`) become 0:0 character devices, opaque
//! markers (`.wh..wh..opq`) the `trusted.overlay.opaque` xattr; hard
//! links, symlinks, device nodes, owners, modes (setuid included), mtimes
//! and xattrs are kept. Nothing is ever written outside the directory:
//! names with `..` or a leading `/`, entries under a symlink, hard links
//! out of the layer and relative symlinks that climb above it are refused.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::sys::fsnode;

/// Bounds on one layer.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// File data bytes the layer may write (the space left, less a reserve).
    pub max_bytes: u64,
    /// Entries the layer may have.
    pub max_entries: u64,
}

/// What an unpack wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries.
    pub entries: u64,
    /// File data bytes.
    pub bytes: u64,
}

/// Why an unpack stopped.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry that would reach outside the layer, or make no sense.
    #[error("layer entry {entry:?} refused: {reason}")]
    Hostile {
        /// The entry's name.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Over `Limits`.
    #[error("layer is larger than the {limit} {what} left for it")]
    TooLarge {
        /// Bytes or entries.
        what: &'static str,
        /// The bound.
        limit: u64,
    },
    /// The tar (or its compression) is damaged, or the stream broke.
    #[error("layer stream: {0}")]
    Stream(String),
    /// Writing failed.
    #[error("writing layer entry {entry:?}: {source}")]
    Write {
        /// The entry.
        entry: String,
        /// The cause.
        source: io::Error,
    },
}

const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// A layer entry's name made relative and checked: no `..`, not absolute.
pub fn clean_name(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("the name has a '..' component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("the name is absolute".into()),
        }
    }
    Ok(out)
}

/// Whether a relative symlink at `at` (a cleaned name) with target `to`
/// stays inside the layer when read from where it sits.
fn symlink_stays_inside(at: &Path, to: &Path) -> bool {
    if to.is_absolute() {
        // Read inside the container's root, where `/` is the rootfs.
        return true;
    }
    let mut depth = at.components().count() as i64 - 1;
    for c in to.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Unpacks the tar read from `r` into `dest` (an existing empty
/// directory). On error `dest` holds a partial tree for the caller to
/// delete.
pub fn unpack<R: Read>(r: &mut R, dest: &Path, limits: Limits) -> Result<Stats, UnpackError> {
    let mut ar = tar::Archive::new(r);
    let mut stats = Stats::default();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = ar.entries().map_err(|e| UnpackError::Stream(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| UnpackError::Stream(e.to_string()))?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooLarge {
                what: "entries",
                limit: limits.max_entries,
            });
        }
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Stream(e.to_string()))?
            .into_owned();
        let shown = raw.display().to_string();
        let hostile = |reason: String| UnpackError::Hostile {
            entry: shown.clone(),
            reason,
        };
        let name = clean_name(&raw).map_err(hostile)?;
        let Some(base) = name.file_name().map(|b| b.to_string_lossy().into_owned()) else {
            continue; // the layer root itself
        };
        let parent = name.parent().unwrap_or(Path::new(""));
        let write_err = |source: io::Error| UnpackError::Write {
            entry: shown.clone(),
            source,
        };
        make_parents(dest, parent).map_err(|e| match e {
            Parent::Symlink(p) => hostile(format!("{} is a symlink; nothing is written through one", p.display())),
            Parent::NotDir(p) => hostile(format!("{} is not a directory", p.display())),
            Parent::Io(e) => write_err(e),
        })?;
        let dir = dest.join(parent);
        if base == OPAQUE {
            fsnode::lsetxattr(&dir, OPAQUE_XATTR, b"y").map_err(|e| write_err(e.into()))?;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden.starts_with(WHITEOUT) {
                return Err(hostile("a whiteout of nothing".into()));
            }
            let target = dir.join(hidden);
            remove_existing(&target, false).map_err(write_err)?;
            crate::sys::mount::mknod(&target, 'c', 0, 0, 0).map_err(|e| write_err(e.into()))?;
            continue;
        }
        let path = dest.join(&name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (mut uid, mut gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                    xattrs.push((x.to_string(), ext.value_bytes().to_vec()));
                } else if key == "uid" {
                    uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
                } else if key == "gid" {
                    gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
                }
            }
        }
        let mtime = header.mtime().unwrap_or(0) as i64;
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    _ => {
                        remove_existing(&path, false).map_err(write_err)?;
                        fs::DirBuilder::new().mode(0o700).create(&path).map_err(write_err)?;
                    }
                }
                dir_times.push((path.clone(), mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                remove_existing(&path, true).map_err(write_err)?;
                let size = header.size().unwrap_or(0);
                if stats.bytes + size > limits.max_bytes {
                    return Err(UnpackError::TooLarge {
                        what: "bytes",
                        limit: limits.max_bytes,
                    });
                }
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(write_err)?;
                let n = io::copy(&mut (&mut entry).take(limits.max_bytes - stats.bytes + 1), &mut f).map_err(|e| {
                    if e.raw_os_error() == Some(libc::ENOSPC) {
                        UnpackError::TooLarge {
                            what: "bytes",
                            limit: limits.max_bytes,
                        }
                    } else {
                        write_err(e)
                    }
                })?;
                stats.bytes += n;
            }
            T::Symlink => {
                let to = entry
                    .link_name()
                    .map_err(|e| UnpackError::Stream(e.to_string()))?
                    .ok_or_else(|| hostile("a symlink without a target".into()))?
                    .into_owned();
                if !symlink_stays_inside(&name, &to) {
                    return Err(hostile(format!("symlink to {} climbs out of the layer", to.display())));
                }
                remove_existing(&path, true).map_err(write_err)?;
                std::os::unix::fs::symlink(&to, &path).map_err(write_err)?;
            }
            T::Link => {
                let to = entry
                    .link_name()
                    .map_err(|e| UnpackError::Stream(e.to_string()))?
                    .ok_or_else(|| hostile("a hard link without a target".into()))?;
                let to = clean_name(&to).map_err(|r| hostile(format!("hard link target: {r}")))?;
                check_no_symlink_parents(dest, &to)
                    .map_err(|p| hostile(format!("hard link target goes through the symlink {}", p.display())))?;
                let src = dest.join(&to);
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_dir() => return Err(hostile("a hard link to a directory".into())),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(hostile(format!(
                            "hard link to {} which the layer does not hold",
                            to.display()
                        )))
                    }
                }
                if src != path {
                    remove_existing(&path, true).map_err(write_err)?;
                    fs::hard_link(&src, &path).map_err(write_err)?;
                }
                continue; // a hard link shares the target's metadata
            }
            T::Char | T::Block | T::Fifo => {
                remove_existing(&path, true).map_err(write_err)?;
                let (k, maj, min) = match kind {
                    T::Char => ('c', header.device_major(), header.device_minor()),
                    T::Block => ('b', header.device_major(), header.device_minor()),
                    _ => ('p', Ok(Some(0)), Ok(Some(0))),
                };
                let maj = maj.ok().flatten().unwrap_or(0) as u64;
                let min = min.ok().flatten().unwrap_or(0) as u64;
                crate::sys::mount::mknod(&path, k, maj, min, 0o600).map_err(|e| write_err(e.into()))?;
            }
            // PAX and GNU name headers are consumed by the reader; any
            // other type (sockets in some tars) has nothing to unpack.
            _ => continue,
        }
        fsnode::lchown(&path, uid, gid).map_err(|e| write_err(e.into()))?;
        if kind != T::Symlink {
            // After chown, which clears setuid and setgid.
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(write_err)?;
        }
        for (k, v) in &xattrs {
            match fsnode::lsetxattr(&path, k, v) {
                Ok(()) | Err(nix::errno::Errno::ENOTSUP) => {}
                Err(e) => return Err(write_err(e.into())),
            }
        }
        if kind != T::Directory {
            fsnode::set_mtime_nofollow(&path, mtime).map_err(|e| write_err(e.into()))?;
        }
    }
    // Directory times last: writing into a directory changes its mtime.
    for (p, t) in dir_times.iter().rev() {
        let _ = fsnode::set_mtime_nofollow(p, *t);
    }
    Ok(stats)
}

enum Parent {
    Symlink(PathBuf),
    NotDir(PathBuf),
    Io(io::Error),
}

/// Creates the missing directories of `rel` under `dest` (mode 0755, as
/// tar does for implied parents), refusing to pass through a symlink.
fn make_parents(dest: &Path, rel: &Path) -> Result<(), Parent> {
    let mut cur = dest.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Err(Parent::Symlink(cur)),
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Parent::NotDir(cur)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(&cur).map_err(Parent::Io)?;
            }
            Err(e) => return Err(Parent::Io(e)),
        }
    }
    Ok(())
}

fn check_no_symlink_parents(dest: &Path, rel: &Path) -> Result<(), PathBuf> {
    let mut cur = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            if fs::symlink_metadata(&cur).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(cur);
            }
        }
    }
    Ok(())
}

/// Removes what an entry replaces (a later entry wins, as in tar); a
/// directory only when `dirs_too` (a file replacing a directory).
fn remove_existing(p: &Path, dirs_too: bool) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => {
            if dirs_too {
                fs::remove_dir_all(p)
            } else {
                Ok(())
            }
        }
        Ok(_) => fs::remove_file(p),
    }
}

/// Whether a layer directory marks `rel` opaque (for tests and diagnostics).
pub fn is_opaque(dir: &Path) -> bool {
    matches!(fsnode::lgetxattr(dir, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_links() {
        assert_eq!(clean_name(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
        assert!(clean_name(Path::new("a/../../etc")).is_err());
        assert!(clean_name(Path::new("/etc/passwd")).is_err());
        assert!(symlink_stays_inside(Path::new("a/b/l"), Path::new("../../x")));
        assert!(!symlink_stays_inside(Path::new("a/b/l"), Path::new("../../../x")));
        assert!(!symlink_stays_inside(Path::new("l"), Path::new("..")));
        assert!(symlink_stays_inside(Path::new("bin/sh"), Path::new("/bin/busybox")));
        assert!(symlink_stays_inside(Path::new("a/l"), Path::new("b/../../c")));
        assert!(!symlink_stays_inside(Path::new("a/l"), Path::new("../../c/d/e")));
    }
}
