//! What a namespace file is (`/proc/PID/ns/KIND`, or a bind mount of one
//! such as `/run/netns/NAME`): its kind, asked of the kernel
//! (NS_GET_NSTYPE), and its inode, which names it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// ioctl(2) NS_GET_NSTYPE: `_IO(0xb7, 0x3)` (linux/nsfs.h, Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// A namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// `net`, `mnt`, `user`, `cgroup`, `ipc`, `uts`, `pid`, `time`.
    pub kind: &'static str,
    /// Its inode: two files with the same one are the same namespace.
    pub inode: u64,
}

/// The namespace `path` is; an error for any other file.
pub fn namespace_of(path: &Path) -> std::io::Result<Namespace> {
    let f = std::fs::File::open(path)?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the open
    // file's inode; on a file that is not a namespace it fails (ENOTTY).
    let t = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
    let not_ns = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a namespace", path.display()),
        )
    };
    if t < 0 {
        return Err(not_ns());
    }
    let kind = match t {
        libc::CLONE_NEWNET => "net",
        libc::CLONE_NEWNS => "mnt",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWPID => "pid",
        0x80 => "time", // CLONE_NEWTIME
        _ => return Err(not_ns()),
    };
    Ok(Namespace {
        kind,
        inode: f.metadata()?.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_and_files() {
        let own = namespace_of(Path::new("/proc/self/ns/net")).unwrap();
        assert_eq!(own.kind, "net");
        assert_eq!(namespace_of(Path::new("/proc/self/ns/mnt")).unwrap().kind, "mnt");
        assert_eq!(
            namespace_of(Path::new("/proc/self/ns/net")).unwrap().inode,
            own.inode,
            "the same namespace twice"
        );
        assert!(namespace_of(Path::new("/proc/self/status")).is_err());
    }
}
