//! `hypervisor.Hypervisor` over ttrpc: the calls runtime-rs makes in
//! remote mode, answered by the VM manager.

use std::sync::Arc;

use bosun_protocols::{remote, remote_ttrpc};
use slog::{debug, Logger};
use ttrpc::r#async::TtrpcContext;

use crate::vm::{Manager, VmError};

pub struct Service {
    pub vms: Arc<Manager>,
    pub log: Logger,
}

fn status(e: VmError) -> ttrpc::Error {
    let code = match &e {
        VmError::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
        VmError::NotFound(_) => ttrpc::Code::NOT_FOUND,
        VmError::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
        VmError::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
        VmError::DeadlineExceeded(_) => ttrpc::Code::DEADLINE_EXCEEDED,
        VmError::Internal(_) => ttrpc::Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

#[async_trait::async_trait]
impl remote_ttrpc::Hypervisor for Service {
    async fn create_vm(
        &self,
        _ctx: &TtrpcContext,
        req: remote::CreateVMRequest,
    ) -> ttrpc::Result<remote::CreateVMResponse> {
        debug!(self.log, "CreateVM"; "id" => &req.id, "netns" => &req.networkNamespacePath);
        let ann = req.annotations.into_iter().collect();
        let sock = self
            .vms
            .create(&req.id, ann, &req.networkNamespacePath)
            .map_err(status)?;
        let mut r = remote::CreateVMResponse::new();
        r.agentSocketPath = sock.display().to_string();
        Ok(r)
    }

    async fn start_vm(
        &self,
        _ctx: &TtrpcContext,
        req: remote::StartVMRequest,
    ) -> ttrpc::Result<remote::StartVMResponse> {
        debug!(self.log, "StartVM"; "id" => &req.id);
        self.vms.start(&req.id).await.map_err(status)?;
        Ok(remote::StartVMResponse::new())
    }

    async fn stop_vm(&self, _ctx: &TtrpcContext, req: remote::StopVMRequest) -> ttrpc::Result<remote::StopVMResponse> {
        debug!(self.log, "StopVM"; "id" => &req.id);
        self.vms.stop(&req.id).await.map_err(status)?;
        Ok(remote::StopVMResponse::new())
    }

    async fn version(
        &self,
        _ctx: &TtrpcContext,
        req: remote::VersionRequest,
    ) -> ttrpc::Result<remote::VersionResponse> {
        debug!(self.log, "Version"; "shim" => &req.version);
        let mut r = remote::VersionResponse::new();
        r.version = format!("bosun-podvm {}", env!("CARGO_PKG_VERSION"));
        Ok(r)
    }
}
