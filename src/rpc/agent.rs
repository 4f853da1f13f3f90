//! `grpc.AgentService`. Methods not written here answer UNIMPLEMENTED with
//! the method's name (the generated defaults, see build.rs).

use crate::protocols::agent_ttrpc;

/// Serves `grpc.AgentService`.
pub struct Agent {
    #[allow(dead_code)] // used by the handlers the pod lifecycle adds
    pub(super) log: slog::Logger,
}

impl agent_ttrpc::AgentService for Agent {}
