//! What a peer-pods pod VM leaves at fixed paths for the agent, found once
//! at start: cloud-api-adaptor's initdata writes the registry credentials
//! to `/run/peerpod/auth.json`, and with its scratch-space marker mounts an
//! encrypted disk at `/run/kata-containers/image` for images. Each stands
//! in for a setting not given in any other way (a flag, the environment,
//! the command line or the configuration file always wins).

use std::path::{Path, PathBuf};

/// The registry credentials CAA's initdata provisions.
pub const AUTH_FILE: &str = "/run/peerpod/auth.json";
/// Where CAA mounts the pod VM's scratch disk for images.
pub const IMAGE_MOUNT: &str = "/run/kata-containers/image";

/// The pod-VM files found on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVmFiles {
    /// `AUTH_FILE`, when it exists.
    pub auth_file: Option<PathBuf>,
    /// `IMAGE_MOUNT`, when it is a mount point (a directory that merely
    /// exists is on the root filesystem, likely RAM: not taken).
    pub image_mount: Option<PathBuf>,
}

impl PodVmFiles {
    /// Looks at the fixed paths.
    pub fn probe() -> Self {
        let auth = Path::new(AUTH_FILE);
        let image = Path::new(IMAGE_MOUNT);
        let mounted = crate::mount::mountinfo::mount_points()
            .map(|m| m.iter().any(|p| p == image))
            .unwrap_or(false);
        PodVmFiles {
            auth_file: auth.is_file().then(|| auth.to_path_buf()),
            image_mount: mounted.then(|| image.to_path_buf()),
        }
    }
}
