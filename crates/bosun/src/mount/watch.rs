//! `watchable-bind` storages, as the Kata agent serves them: a source the
//! agent cannot watch with inotify (a configmap or secret on the share) is
//! copied into a tmpfs at the mount point and kept in step by polling, as
//! long as it stays small (the Kata agent's caps: 16 entries, 1 MiB);
//! past that it is bind-mounted instead and no longer copied.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The tmpfs every watchable copy lives in (Kata's path).
pub const WATCH_ROOT: &str = "/run/kata-containers/shared/containers/watchable";
/// Most entries (files, directories, links) one watched source may have.
pub const MAX_ENTRIES: usize = 16;
/// Most bytes one watched source may hold.
pub const MAX_BYTES: u64 = 1 << 20;
/// How often sources are compared with their copies (Kata's interval).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a source is not copied.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Past the caps: bind-mount it instead.
    #[error("{} is too large to copy ({what}); bound instead", src.display())]
    TooLarge {
        /// The source.
        src: PathBuf,
        /// Which cap.
        what: String,
    },
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WatchError + '_ {
    move |source| WatchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An entry of the source: path below it, and what it is.
struct Entry {
    rel: PathBuf,
    meta: fs::Metadata,
}

/// Every entry below `src` (not following links), within the caps.
fn list(src: &Path) -> Result<Vec<Entry>, WatchError> {
    let (mut out, mut bytes, mut stack) = (Vec::new(), 0u64, vec![PathBuf::new()]);
    while let Some(rel) = stack.pop() {
        let dir = src.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir).map_err(io(&dir))?.filter_map(Result::ok).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let rel = rel.join(e.file_name());
            let meta = e.path().symlink_metadata().map_err(io(&e.path()))?;
            if meta.is_file() {
                bytes += meta.len();
            }
            if meta.is_dir() {
                stack.push(rel.clone());
            }
            out.push(Entry { rel, meta });
            let too = |what: String| WatchError::TooLarge {
                src: src.to_path_buf(),
                what,
            };
            if out.len() > MAX_ENTRIES {
                return Err(too(format!("more than {MAX_ENTRIES} entries")));
            }
            if bytes > MAX_BYTES {
                return Err(too(format!("more than {MAX_BYTES} bytes")));
            }
        }
    }
    Ok(out)
}

fn mtime(m: &fs::Metadata) -> Option<SystemTime> {
    m.modified().ok()
}

/// Whether `src` is within the caps (copied) or past them (bound).
pub fn fits(src: &Path) -> Result<bool, WatchError> {
    match list(src) {
        Ok(_) => Ok(true),
        Err(WatchError::TooLarge { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes `dst` a copy of `src`: new and changed entries copied (files by a
/// temp file and rename), removed ones removed. Returns how many changed.
pub fn sync(src: &Path, dst: &Path) -> Result<usize, WatchError> {
    let entries = list(src)?;
    fs::create_dir_all(dst).map_err(io(dst))?;
    let mut changed = 0;
    for e in &entries {
        let (from, to) = (src.join(&e.rel), dst.join(&e.rel));
        let now = to.symlink_metadata().ok();
        // A link's copy is made now, with a new mtime (which a coarse clock
        // hides only when both fall in one tick): links compare by target.
        let same = now.as_ref().is_some_and(|n| {
            n.file_type() == e.meta.file_type()
                && if e.meta.is_dir() {
                    true
                } else if e.meta.file_type().is_symlink() {
                    fs::read_link(&to).ok() == fs::read_link(&from).ok()
                } else {
                    n.len() == e.meta.len() && mtime(n) == mtime(&e.meta)
                }
        });
        if same {
            continue;
        }
        if now.as_ref().is_some_and(|n| n.is_dir() && !e.meta.is_dir()) {
            fs::remove_dir_all(&to).map_err(io(&to))?;
        }
        if e.meta.is_dir() {
            fs::create_dir_all(&to).map_err(io(&to))?;
        } else {
            let tmp = to.with_file_name(format!(
                ".{}.bosun-watch",
                e.rel.file_name().unwrap_or_default().to_string_lossy()
            ));
            let _ = fs::remove_file(&tmp);
            if e.meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&from).map_err(io(&from))?, &tmp).map_err(io(&tmp))?;
            } else {
                fs::copy(&from, &tmp).map_err(io(&from))?;
                // Same mtime as the source: the next pass sees it unchanged.
                let f = fs::File::options().write(true).open(&tmp).map_err(io(&tmp))?;
                if let Some(t) = mtime(&e.meta) {
                    f.set_modified(t).map_err(io(&tmp))?;
                }
            }
            fs::rename(&tmp, &to).map_err(io(&to))?;
        }
        changed += 1;
    }
    // What the source no longer has.
    let keep: std::collections::HashSet<&Path> = entries.iter().map(|e| e.rel.as_path()).collect();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = dst.join(&rel);
        for d in fs::read_dir(&dir).map_err(io(&dir))?.filter_map(Result::ok) {
            let r = rel.join(d.file_name());
            let p = d.path();
            if keep.contains(r.as_path()) {
                if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    stack.push(r);
                }
            } else {
                let gone = if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                gone.map_err(io(&p))?;
                changed += 1;
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_follow_the_source_within_the_caps() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        fs::create_dir_all(src.join("..data")).unwrap();
        fs::write(src.join("..data/key"), "v1").unwrap();
        std::os::unix::fs::symlink("..data/key", src.join("key")).unwrap();
        // Past the filesystem's timestamp tick: the copy's link gets a
        // newer mtime than its source's (what a busy machine did).
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(sync(&src, &dst).unwrap(), 3);
        assert_eq!(fs::read_to_string(dst.join("key")).unwrap(), "v1");
        assert_eq!(sync(&src, &dst).unwrap(), 0, "nothing changed");
        fs::write(src.join("..data/key"), "v2-longer").unwrap();
        fs::write(src.join("new"), "n").unwrap();
        assert_eq!(sync(&src, &dst).unwrap(), 2);
        assert_eq!(fs::read_to_string(dst.join("key")).unwrap(), "v2-longer");
        fs::remove_file(src.join("new")).unwrap();
        assert_eq!(sync(&src, &dst).unwrap(), 1);
        assert!(!dst.join("new").exists());
        fs::remove_file(src.join("key")).unwrap();
        std::os::unix::fs::symlink("new-target", src.join("key")).unwrap();
        assert_eq!(sync(&src, &dst).unwrap(), 1, "a link retargeted");
        assert_eq!(fs::read_link(dst.join("key")).unwrap(), Path::new("new-target"));
        for i in 0..MAX_ENTRIES {
            fs::write(src.join(format!("f{i}")), "x").unwrap();
        }
        assert!(matches!(sync(&src, &dst), Err(WatchError::TooLarge { .. })));
        let big = d.path().join("big");
        fs::create_dir_all(&big).unwrap();
        fs::write(big.join("blob"), vec![0u8; (MAX_BYTES + 1) as usize]).unwrap();
        assert!(matches!(
            sync(&big, &d.path().join("b2")),
            Err(WatchError::TooLarge { .. })
        ));
    }
}
