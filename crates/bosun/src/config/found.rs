//! Files the machine provides at well-known paths, found once at start.
//! Each stands in for a setting not given in any other way (a flag, the
//! environment, the command line or the configuration file always wins).
//!
//! A peer-pods pod VM: cloud-api-adaptor's initdata writes the registry
//! credentials to `/run/peerpod/auth.json`, and with its scratch-space
//! marker mounts an encrypted disk at `/run/kata-containers/image` for
//! images. Any machine: `/etc/containers/registries.conf`, the registries'
//! mirrors and blocks, as containers' tools and CoCo's image-rs read it.

use std::path::{Path, PathBuf};

/// The registry credentials CAA's initdata provisions.
pub const AUTH_FILE: &str = "/run/peerpod/auth.json";
/// Where CAA mounts the pod VM's scratch disk for images.
pub const IMAGE_MOUNT: &str = "/run/kata-containers/image";
/// The Kata agent's default policy file (in a CAA pod VM a link to
/// initdata's `/run/peerpod/policy.rego`).
pub const POLICY_FILE: &str = "/etc/kata-opa/default-policy.rego";
/// containers-registries.conf(5)'s place.
pub const REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

/// The files found on this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundFiles {
    /// `AUTH_FILE`, when it exists.
    pub auth_file: Option<PathBuf>,
    /// `IMAGE_MOUNT`, when it is a mount point (a directory that merely
    /// exists is on the root filesystem, likely RAM: not taken).
    pub image_mount: Option<PathBuf>,
    /// `REGISTRIES_CONF`, when it exists.
    pub registries_conf: Option<PathBuf>,
    /// `POLICY_FILE`, when it exists.
    pub policy_file: Option<PathBuf>,
    /// QEMU's firmware config initdata entry, when bosun is the guest's
    /// init and it exists (on any other machine it is not bosun's).
    pub initdata: Option<PathBuf>,
}

impl FoundFiles {
    /// Looks at the well-known paths.
    pub fn probe() -> Self {
        let file = |p: &str| Path::new(p).is_file().then(|| PathBuf::from(p));
        let image = Path::new(IMAGE_MOUNT);
        let mounted = crate::mount::mountinfo::mount_points()
            .map(|m| m.iter().any(|p| p == image))
            .unwrap_or(false);
        FoundFiles {
            auth_file: file(AUTH_FILE),
            image_mount: mounted.then(|| image.to_path_buf()),
            registries_conf: file(REGISTRIES_CONF),
            policy_file: file(POLICY_FILE),
            initdata: (std::process::id() == 1)
                .then(|| file(super::initdata::FW_CFG))
                .flatten(),
        }
    }
}
