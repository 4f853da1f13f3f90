//! CreateSandbox: kernel modules, DNS, the sandbox-wide storages.

use std::path::Path;
use std::sync::Arc;

use slog::info;

use super::{run_detached, Sandbox, SandboxSpec};
use crate::error::AgentError;
use crate::mount::ledger::Owner;
use crate::mount::storage;

impl Sandbox {
    /// CreateSandbox, detached from the call (see `detached`). The same
    /// spec again is OK (idempotent).
    pub async fn create_sandbox(self: &Arc<Self>, spec: SandboxSpec) -> Result<(), AgentError> {
        let sb = self.clone();
        run_detached(Box::pin(async move {
            let _op = sb.pod_ops.clone().read_owned().await;
            sb.create_sandbox_now(spec).await
        }))
        .await
    }

    async fn create_sandbox_now(&self, spec: SandboxSpec) -> Result<(), AgentError> {
        {
            let st = self.state();
            if let Some(existing) = &st.sandbox {
                return if *existing == spec {
                    Ok(())
                } else {
                    Err(AgentError::SandboxExists(existing.id.clone()))
                };
            }
        }
        // Modules first: the storages may need them (a filesystem, a
        // transport). A module already there is left alone.
        let release = crate::sys::guest::kernel_release();
        let modules_dir = Path::new("/lib/modules").join(&release);
        for m in &spec.kernel_modules {
            let loaded = crate::kmod::load(m, &modules_dir, Path::new("/sys/module"))
                .map_err(|e| AgentError::invalid("kernel_modules", e.to_string()))?;
            info!(self.log, "kernel module"; "target" => &m.name, "loaded" => ?loaded);
        }
        let dir = self.sandbox_dir();
        std::fs::create_dir_all(&dir).map_err(|e| AgentError::Internal(format!("create {}: {e}", dir.display())))?;
        if !spec.dns.is_empty() {
            // Containers bind this file; the guest's own /etc is not touched.
            let text: String = spec.dns.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(dir.join("resolv.conf"), text)
                .map_err(|e| AgentError::Internal(format!("write resolv.conf: {e}")))?;
        }
        self.check_storages(&spec.storages)?;
        let storages = self.resolve_devices(&spec.storages).await?;
        for (i, s) in storages.iter().enumerate() {
            if let Err(e) = storage::mount_storage(&self.ledger, &Owner::Sandbox, s, &|| {
                let _ = self.persist();
            }) {
                let report = self.unmount_owned_async(Owner::Sandbox).await;
                slog::warn!(self.log, "sandbox storage failed, rolled back"; "index" => i, "error" => %e, "rollback" => ?report);
                return Err(e.into());
            }
        }
        info!(self.log, "sandbox created"; "sid" => &spec.id, "hostname" => &spec.hostname, "storages" => spec.storages.len());
        self.state().sandbox = Some(spec);
        self.persist()?;
        Ok(())
    }
}
