//! `local`: a directory at the mount point (mode from a `mode=` option),
//! no mount. Removed at teardown if bosun made it.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::{io_errno, Record, StorageDriver, StorageSpec};
use crate::mount::MountError;

/// The driver.
pub struct Local;

impl StorageDriver for Local {
    fn names(&self) -> &'static [&'static str] {
        &["local"]
    }
    fn describe(&self) -> &'static str {
        "creates `mount_point` (mode from a `mode=` option); removed at teardown if bosun created it"
    }
    fn mount(&self, s: &StorageSpec, record: &Record<'_>) -> Result<(), MountError> {
        let mode = s
            .options
            .iter()
            .find_map(|o| o.strip_prefix("mode="))
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .unwrap_or(0o777);
        record.dir("", "local", |_| {
            fs::set_permissions(&s.mount_point, fs::Permissions::from_mode(mode))
                .map_err(|e| record.error("chmod", "", io_errno(&e)))
        })
    }
}
