//! `grpc.Health`: liveness and version.

use ttrpc::r#async::TtrpcContext;

use crate::protocols::health::{
    health_check_response::ServingStatus, CheckRequest, HealthCheckResponse, VersionCheckResponse,
};
use crate::protocols::health_ttrpc;

/// The Kata agent protocol version bosun implements (Kata's API_VERSION).
pub const PROTOCOL_VERSION: &str = "0.0.1";
/// bosun's own version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Serves `grpc.Health`.
pub struct Health {
    pub(super) log: slog::Logger,
}

#[async_trait::async_trait]
impl health_ttrpc::Health for Health {
    async fn check(&self, _: &TtrpcContext, _: CheckRequest) -> ttrpc::Result<HealthCheckResponse> {
        super::traced(&self.log, "Check", async {
            let mut r = HealthCheckResponse::new();
            r.status = ServingStatus::SERVING.into();
            Ok(r)
        })
        .await
    }

    async fn version(&self, _: &TtrpcContext, _: CheckRequest) -> ttrpc::Result<VersionCheckResponse> {
        super::traced(&self.log, "Version", async {
            let mut r = VersionCheckResponse::new();
            r.grpc_version = PROTOCOL_VERSION.to_string();
            r.agent_version = AGENT_VERSION.to_string();
            Ok(r)
        })
        .await
    }
}
