//! The client library behind `bosunctl`, the tests and the benchmark. It
//! speaks only the Kata agent protocol, so it can drive any Kata-compatible
//! agent.

pub mod call;
pub mod golden;
pub mod local_registry;
pub mod oci_layout;
pub mod spec;

use std::time::Duration;

use bosun::transport::connect::{connect, ConnectError};
use bosun::transport::Address;
use bosun_protocols::agent_ttrpc::AgentServiceClient;
use bosun_protocols::health::{CheckRequest, HealthCheckResponse, VersionCheckResponse};
use bosun_protocols::health_ttrpc::HealthClient;

/// A connection to an agent.
#[derive(Clone)]
pub struct Client {
    /// `grpc.AgentService`.
    pub agent: AgentServiceClient,
    /// `grpc.Health`.
    pub health: HealthClient,
    /// The underlying ttrpc client, for calls by method name.
    pub raw: ttrpc::r#async::Client,
    timeout: Duration,
}

impl Client {
    /// Connects; `timeout` bounds the connection and, later, each call that
    /// is not a long poll.
    pub async fn connect(addr: &Address, timeout: Duration) -> Result<Self, ConnectError> {
        let sock = connect(addr, timeout).await?;
        let inner = ttrpc::r#async::Client::new(sock);
        Ok(Self {
            agent: AgentServiceClient::new(inner.clone()),
            health: HealthClient::new(inner.clone()),
            raw: inner,
            timeout,
        })
    }

    /// A context bounded by the client's timeout.
    pub fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos() as i64)
    }

    /// A context without a deadline, for long polls (WaitProcess, ReadStdout).
    pub fn long_poll(&self) -> ttrpc::context::Context {
        ttrpc::context::Context::default()
    }

    /// `grpc.Health/Check`.
    pub async fn check(&self) -> ttrpc::Result<HealthCheckResponse> {
        self.health.check(self.ctx(), &CheckRequest::new()).await
    }

    /// `grpc.Health/Version`.
    pub async fn version(&self) -> ttrpc::Result<VersionCheckResponse> {
        self.health.version(self.ctx(), &CheckRequest::new()).await
    }
}
