//! CopyFile: the host runtime copies files (configmaps, secrets, resolv.conf
//! ...) into the guest in chunks. Only below the shared directories, never
//! through a symlink out of them, never bigger than a bound.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::Sandbox;
use crate::container::rootfs::secure_join;
use crate::error::AgentError;
use crate::ids::guest_path as check_guest_path;

/// Largest file CopyFile writes: configmaps and secrets are small; 256 MiB
/// leaves room for certificates bundles and the like, not for filling the
/// guest's memory-backed /run.
pub const MAX_COPY_FILE: i64 = 256 << 20;
/// Kata's shared directory: runtimes copy there.
pub const KATA_SHARED_DIR: &str = "/run/kata-containers";
/// Deepest path accepted below a copy root. Runtimes copy configmaps and
/// secrets a few levels down (`shared/containers/<id>/..data/key`); each
/// level costs lookups and a journal entry, so a hostile depth of 1000
/// once stalled the agent for 30 s.
pub const MAX_COPY_DEPTH: usize = 32;
/// Longest path accepted: the kernel's PATH_MAX.
pub const MAX_COPY_PATH: usize = 4096;
/// Longest path component: the kernel's NAME_MAX (less the room the
/// temporary name's suffix takes).
pub const MAX_COPY_NAME: usize = 255 - TEMP_SUFFIX.len();
/// Suffix of the temporary a file or link is written to before it is
/// renamed into place.
const TEMP_SUFFIX: &str = ".bosun-copy";

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// One CopyFile request, validated.
#[derive(Debug)]
pub struct CopyChunk {
    /// Destination.
    pub path: String,
    /// Whole size of the file.
    pub file_size: i64,
    /// st_mode: type and permission bits.
    pub file_mode: u32,
    /// Mode of parent directories created.
    pub dir_mode: u32,
    /// Owner.
    pub uid: i32,
    /// Group.
    pub gid: i32,
    /// Where `data` goes.
    pub offset: i64,
    /// The bytes.
    pub data: Vec<u8>,
}

impl Sandbox {
    /// Directories CopyFile may write below.
    pub fn copy_roots(&self) -> Vec<PathBuf> {
        vec![self.run_dir.join("shared"), PathBuf::from(KATA_SHARED_DIR)]
    }

    /// CopyFile, on the blocking pool: file-system work never holds a
    /// request worker. Runs to its end if the caller goes.
    pub async fn copy_file(self: &Arc<Self>, c: CopyChunk) -> Result<(), AgentError> {
        let sb = self.clone();
        tokio::task::spawn_blocking(move || sb.copy_file_now(c))
            .await
            .map_err(|e| AgentError::Internal(format!("CopyFile task: {e}")))?
    }

    fn copy_file_now(&self, c: CopyChunk) -> Result<(), AgentError> {
        let path = check_guest_path("path", &c.path)?;
        let roots = self.copy_roots();
        let root = roots
            .iter()
            .find(|r| path.starts_with(r) && path != **r)
            .ok_or_else(|| {
                AgentError::invalid(
                    "path",
                    format!(
                        "{:?} is not below {}",
                        c.path,
                        roots
                            .iter()
                            .map(|r| r.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                )
            })?;
        check_shape(&path, root)?;
        if c.file_size < 0
            || c.file_size > MAX_COPY_FILE
            || c.offset < 0
            || c.offset.saturating_add(c.data.len() as i64) > c.file_size
        {
            return Err(AgentError::invalid(
                "file_size",
                format!(
                    "size {} offset {} + {} bytes: at most {MAX_COPY_FILE} bytes, chunks within the size",
                    c.file_size,
                    c.offset,
                    c.data.len()
                ),
            ));
        }
        // dir_mode arrives with type bits as each runtime sets them: the
        // Go runtime and runtime-rs add S_IFDIR, kata-agent-ctl Go's
        // os.ModeDir (1 << 31). Only its permission bits are used, as the
        // Kata agent does.
        if c.file_mode & !(S_IFMT | 0o7777) != 0 {
            return Err(AgentError::invalid(
                "file_mode",
                format!(
                    "{:o} / dir {:o}: permission bits and a file type only",
                    c.file_mode, c.dir_mode
                ),
            ));
        }
        // Resolve inside the root: a symlink in the way cannot lead out.
        let rel = path.strip_prefix(root).expect("checked above");
        fs::create_dir_all(root).map_err(|e| io_err(root, e))?;
        let dest = secure_join(root, rel).map_err(|e| AgentError::invalid("path", e))?;
        self.guard.check_write(&dest)?;
        self.record_created(root, &dest);
        let parent = dest.parent().unwrap_or(root);
        // runtime-rs sends dir_mode 0 with every regular file: parents it
        // creates get 0755 then, not 0000.
        let dir_mode = match c.dir_mode & 0o7777 {
            0 => 0o755,
            m => m,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(parent)
            .map_err(|e| io_err(parent, e))?;
        match c.file_mode & S_IFMT {
            S_IFDIR => write_dir(&dest, &c)?,
            S_IFLNK => {
                let target = String::from_utf8(c.data.clone())
                    .map_err(|_| AgentError::invalid("data", "a symlink target must be UTF-8"))?;
                // Made beside and renamed over: a re-sent link is replaced
                // in one step.
                let tmp = temp_name(&dest);
                self.record_temp(&tmp);
                let _ = fs::remove_file(&tmp);
                let made = std::os::unix::fs::symlink(target, &tmp)
                    .and_then(|_| std::os::unix::fs::lchown(&tmp, Some(c.uid as u32), Some(c.gid as u32)))
                    .map_err(|e| io_err(&tmp, e))
                    .and_then(|_| fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, e)));
                if made.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                made?;
            }
            S_IFREG | 0 => {
                let tmp = temp_name(&dest);
                self.record_temp(&tmp);
                if let Err(e) = write_chunk(&dest, &tmp, &c) {
                    let _ = fs::remove_file(&tmp);
                    return Err(e);
                }
            }
            other => {
                return Err(AgentError::invalid(
                    "file_mode",
                    format!("file type {other:o}: regular files, directories and symlinks only"),
                ))
            }
        }
        Ok(())
    }
}

impl Sandbox {
    /// Records `dest` and each of its ancestors below `root` that do not
    /// exist yet (before CopyFile creates them), outermost first.
    fn record_created(&self, root: &Path, dest: &Path) {
        let mut missing: Vec<PathBuf> = dest
            .ancestors()
            .take_while(|p| p.starts_with(root) && *p != root)
            .filter(|p| fs::symlink_metadata(p).is_err())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        if missing.is_empty() {
            return;
        }
        {
            let mut st = self.state();
            for p in missing {
                if !st.copied.contains(&p) {
                    st.copied.push(p);
                }
            }
        }
        // On disk before the file exists: a restart still removes it.
        let _ = self.persist();
    }

    /// Records a temporary before it is made: one a failed or abandoned
    /// copy leaves goes at DestroySandbox with the rest.
    fn record_temp(&self, tmp: &Path) {
        let new = {
            let mut st = self.state();
            let new = !st.copied.iter().any(|p| p == tmp);
            if new {
                st.copied.push(tmp.to_path_buf());
            }
            new
        };
        if new {
            let _ = self.persist();
        }
    }

    /// Removes what CopyFile created, newest first: files and links, and
    /// directories once empty (one still holding something bosun did not
    /// write stays). Never follows a link, never crosses into a mount.
    pub(super) fn remove_copied(&self) -> Result<String, String> {
        let paths = std::mem::take(&mut self.state().copied);
        let _ = self.persist();
        let mounts = crate::mount::mountinfo::mount_points().unwrap_or_default();
        let (mut removed, mut kept) = (0, Vec::new());
        for p in paths.iter().rev() {
            let r = match fs::symlink_metadata(p) {
                Err(_) => continue,
                Ok(_) if mounts.iter().any(|m| m.starts_with(p)) => {
                    kept.push(format!("{} (a mount is there)", p.display()));
                    continue;
                }
                Ok(m) if m.is_dir() => fs::remove_dir(p),
                Ok(_) => fs::remove_file(p),
            };
            match r {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                    kept.push(format!("{} (not empty)", p.display()))
                }
                Err(e) => kept.push(format!("{}: {e}", p.display())),
            }
        }
        if kept.iter().any(|k| !k.ends_with("(not empty)")) {
            return Err(format!("{removed} removed; left: {}", kept.join(", ")));
        }
        Ok(format!("{removed} removed"))
    }
}

/// A directory: created (or kept, when re-sent) with the mode and owner
/// asked; a file or link in its place is replaced, as the Kata agent does.
fn write_dir(dest: &Path, c: &CopyChunk) -> Result<(), AgentError> {
    if fs::symlink_metadata(dest).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(dest).map_err(|e| io_err(dest, e))?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(c.file_mode & 0o777)
        .create(dest)
        .map_err(|e| io_err(dest, e))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(c.file_mode & 0o7777)).map_err(|e| io_err(dest, e))?;
    std::os::unix::fs::chown(dest, Some(c.uid as u32), Some(c.gid as u32)).map_err(|e| io_err(dest, e))
}

fn temp_name(dest: &Path) -> PathBuf {
    let mut tmp_name = dest.as_os_str().to_owned();
    tmp_name.push(TEMP_SUFFIX);
    PathBuf::from(tmp_name)
}

/// Depth, length and name bounds (see the constants), checked before any
/// file-system work.
fn check_shape(path: &Path, root: &Path) -> Result<(), AgentError> {
    let rel_depth = |p: &Path| {
        p.strip_prefix(root)
            .map(|r| r.components().count())
            .unwrap_or(usize::MAX)
    };
    let len = path.as_os_str().len();
    let depth = rel_depth(path);
    let longest = path.iter().map(|c| c.len()).max().unwrap_or(0);
    if len > MAX_COPY_PATH || depth > MAX_COPY_DEPTH || longest > MAX_COPY_NAME {
        return Err(AgentError::invalid(
            "path",
            format!(
                "{len} bytes, {depth} components, a name of {longest} bytes: at most {MAX_COPY_PATH} bytes, {MAX_COPY_DEPTH} levels below the copy root, {MAX_COPY_NAME}-byte names"
            ),
        ));
    }
    Ok(())
}

/// Writes a chunk into `<dest>.bosun-copy`; the last chunk fsyncs it, sets
/// its mode and owner, and renames it over `dest`, so a reader never sees
/// a half-written file.
fn write_chunk(dest: &Path, tmp: &Path, c: &CopyChunk) -> Result<(), AgentError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(c.offset == 0)
        .open(tmp)
        .map_err(|e| io_err(tmp, e))?;
    f.seek(SeekFrom::Start(c.offset as u64))
        .and_then(|_| f.write_all(&c.data))
        .map_err(|e| io_err(tmp, e))?;
    if c.offset + c.data.len() as i64 == c.file_size {
        f.sync_all().map_err(|e| io_err(tmp, e))?;
        fs::set_permissions(tmp, fs::Permissions::from_mode(c.file_mode & 0o7777)).map_err(|e| io_err(tmp, e))?;
        std::os::unix::fs::chown(tmp, Some(c.uid as u32), Some(c.gid as u32)).map_err(|e| io_err(tmp, e))?;
        fs::rename(tmp, dest).map_err(|e| io_err(dest, e))?;
    }
    Ok(())
}

/// The caller's mistakes (a name too long, a directory where a file goes,
/// a file where a directory goes, a link loop) are INVALID_ARGUMENT; a
/// full file system RESOURCE_EXHAUSTED; the rest INTERNAL.
fn io_err(p: &Path, e: std::io::Error) -> AgentError {
    use nix::errno::Errno;
    let msg = format!("{}: {e}", p.display());
    match e.raw_os_error().map(Errno::from_raw) {
        Some(
            Errno::ENAMETOOLONG | Errno::EISDIR | Errno::EEXIST | Errno::ENOTDIR | Errno::ELOOP | Errno::ENOTEMPTY,
        ) => AgentError::invalid("path", msg),
        Some(Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG) => AgentError::ResourceExhausted(msg),
        _ => AgentError::Internal(msg),
    }
}
