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
    let mounts: Vec<PathBuf> = super::mountinfo::mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect();
    remove_inside(dir, meta.dev(), &mounts, &mut blocked)?;
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

fn remove_inside(dir: &Path, dev: u64, mounts: &[PathBuf], blocked: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let m = fs::symlink_metadata(&path)?;
        if m.dev() != dev || mounts.contains(&path) {
            blocked.push(path.display().to_string());
            continue;
        }
        if m.is_dir() {
            let before = blocked.len();
            remove_inside(&path, dev, mounts, blocked)?;
            if blocked.len() == before {
                fs::remove_dir(&path)?;
            }
        } else {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}
