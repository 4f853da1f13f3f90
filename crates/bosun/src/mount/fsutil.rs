//! Deleting directories bosun created, without ever crossing into another
//! filesystem or deleting under a mount point.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Removes `dir` and everything in it that lies on the same filesystem as
/// `dir`. A mount point inside (another filesystem, or a bind mount listed
/// in mountinfo) is never entered: nothing under it is touched and an
/// error naming it is returned (the rest is still removed). A missing
/// `dir` is success.
pub fn remove_dir_same_fs(dir: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    let mut blocked = Vec::new();
    let mut mounts = MountsUnder { dir, read: None };
    remove_inside(dir, meta.dev(), &mut mounts, &mut blocked)?;
    if blocked.is_empty() {
        match fs::remove_dir(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => return Ok(()),
        }
    }
    Err(io::Error::other(format!(
        "left in place: mount point(s) inside: {}",
        blocked.join(", ")
    )))
}

/// The mount points under a directory, read from mountinfo the first time
/// they are asked for. Only a subdirectory needs them (a bind mount of the
/// same filesystem has the same device); a directory of plain files, as a
/// container's run directory is, is removed without reading the table.
struct MountsUnder<'a> {
    dir: &'a Path,
    read: Option<Vec<PathBuf>>,
}

impl MountsUnder<'_> {
    fn contains(&mut self, path: &Path) -> io::Result<bool> {
        if self.read.is_none() {
            let under = super::mountinfo::mount_points()?
                .into_iter()
                .filter(|m| m.starts_with(self.dir) && m != self.dir)
                .collect();
            self.read = Some(under);
        }
        Ok(self.read.as_ref().is_some_and(|m| m.iter().any(|p| p == path)))
    }
}

fn remove_inside(dir: &Path, dev: u64, mounts: &mut MountsUnder, blocked: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let m = fs::symlink_metadata(&path)?;
        if m.dev() != dev {
            blocked.push(path.display().to_string());
            continue;
        }
        if m.is_dir() {
            if mounts.contains(&path)? {
                blocked.push(path.display().to_string());
                continue;
            }
            let before = blocked.len();
            remove_inside(&path, dev, mounts, blocked)?;
            if blocked.len() == before {
                fs::remove_dir(&path)?;
            }
        } else {
            match fs::remove_file(&path) {
                // A file with a bind mount on it: unlink refuses (EBUSY)
                // and nothing is lost; it is named like a directory.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && mounts.contains(&path)? => {
                    blocked.push(path.display().to_string());
                }
                r => r?,
            }
        }
    }
    Ok(())
}
