//! Request storages and OCI mounts: checked against the protection rules,
//! their devices waited for; UpdateEphemeralMounts.

use std::path::Path;

use slog::info;

use super::Sandbox;
use crate::error::AgentError;
use crate::mount::storage::{self, StorageSpec};

impl Sandbox {
    /// The storages with each block device's bus address (PCI path, SCSI
    /// address) replaced by its node, once the device is there.
    pub(crate) async fn resolve_devices(&self, v: &[StorageSpec]) -> Result<Vec<StorageSpec>, AgentError> {
        let mut out = v.to_vec();
        for s in &mut out {
            let Some(addr) = s.device() else { continue };
            let addr = addr.map_err(|e| AgentError::invalid("storage.source", e.to_string()))?;
            let node = crate::device::wait_for(&addr).await?;
            info!(self.log, "device resolved"; "target" => %addr, "node" => %node.display());
            s.source = node.display().to_string();
        }
        Ok(out)
    }

    /// Refuses storages that would cover a path the agent needs, or bind
    /// (or layer) the agent's own files (see `crate::protect`); checked
    /// for all before any is mounted.
    pub(crate) fn check_storages(&self, v: &[StorageSpec]) -> Result<(), AgentError> {
        for s in v {
            self.guard.check_mount_target(&s.mount_point)?;
            for exposed in s.exposes() {
                self.guard.check_bind_source(&exposed)?;
            }
        }
        Ok(())
    }

    /// Refuses OCI bind mounts (and overlays) whose source is or holds
    /// the agent's own files: a container would read its journal or
    /// write into its run directory.
    pub(crate) fn check_oci_mounts(&self, v: &[crate::container::init_config::MountSpec]) -> Result<(), AgentError> {
        for m in v {
            let opts = crate::container::mount_options::parse(&m.options);
            if m.fstype == "bind" || opts.bind {
                self.guard.check_bind_source(Path::new(&m.source))?;
            }
            for dir in storage::overlay_dirs(&m.options) {
                self.guard.check_bind_source(&dir)?;
            }
        }
        Ok(())
    }

    /// UpdateEphemeralMounts: new options (typically a tmpfs size) for
    /// ephemeral storages bosun mounted.
    pub fn update_ephemeral(&self, storages: &[StorageSpec]) -> Result<(), AgentError> {
        self.check_storages(storages)?;
        for s in storages.iter().filter(|s| s.driver.is(storage::EPHEMERAL)) {
            let known = crate::sync::lock(&self.ledger)
                .all()
                .iter()
                .any(|e| e.target == s.mount_point && e.fstype == "tmpfs");
            if !known {
                return Err(AgentError::invalid(
                    "storages.mount_point",
                    format!("{} is not an ephemeral storage bosun mounted", s.mount_point.display()),
                ));
            }
            storage::remount(s)?;
        }
        Ok(())
    }

    /// Namespaces a spec names by path: each must be a namespace of its
    /// kind; the agent's own mount namespace is refused (a container set
    /// up in it would pivot the agent's root).
    pub(crate) fn check_namespaces(
        &self,
        joins: &[(crate::container::init_config::NsKind, std::path::PathBuf)],
    ) -> Result<(), AgentError> {
        use crate::sys::ns::namespace_of;
        for (kind, path) in joins {
            let ns = namespace_of(path)
                .map_err(|e| AgentError::invalid("OCI.Linux.Namespaces.path", format!("{}: {e}", path.display())))?;
            if ns.kind != kind.proc_name() {
                return Err(AgentError::invalid(
                    "OCI.Linux.Namespaces.path",
                    format!(
                        "{} is a {} namespace, not a {} one",
                        path.display(),
                        ns.kind,
                        kind.proc_name()
                    ),
                ));
            }
            self.guard.check_joined_namespace(*kind, &ns)?;
        }
        Ok(())
    }
}
