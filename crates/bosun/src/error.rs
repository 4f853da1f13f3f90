//! `AgentError`: every error a request can meet, as the domain sees it.
//! Lower modules have their own typed errors (mount, image, network, ids),
//! carried here; which wire code each gets is decided in one place,
//! `rpc::wire`.

use crate::ids::ContainerId;
use crate::mount::MountError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A request field failed validation.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field at fault.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// No container with this id.
    #[error("container \"{0}\" not found in this sandbox")]
    ContainerNotFound(ContainerId),
    /// The container exists, the process does not.
    #[error("process {exec_id:?} not found in container \"{cid}\" (the container exists)")]
    ProcessNotFound {
        /// The container.
        cid: ContainerId,
        /// The exec id asked for.
        exec_id: String,
    },
    /// A container with this id exists.
    #[error("container \"{0}\" already exists; remove it first or use another id")]
    ContainerExists(ContainerId),
    /// An exec id already used in this container.
    #[error("exec id {exec_id:?} is already used in container \"{cid}\"; use another id")]
    ExecIdInUse {
        /// The container.
        cid: ContainerId,
        /// The exec id.
        exec_id: String,
    },
    /// Writing to a stdin that was closed.
    #[error("stdin of process {exec_id:?} in container \"{cid}\" is closed")]
    StdinClosed {
        /// The container.
        cid: ContainerId,
        /// The process.
        exec_id: String,
    },
    /// An action on the whole guest that bosun takes only as its init.
    #[error("{0}: bosun does this only as the guest's PID 1")]
    GuestOnly(&'static str),
    /// No sandbox yet.
    #[error("no sandbox: call CreateSandbox first")]
    NoSandbox,
    /// A sandbox exists already.
    #[error("sandbox \"{0}\" already exists; destroy it first (one sandbox per agent)")]
    SandboxExists(String),
    /// The container is not in a state that allows the action.
    #[error("container \"{cid}\" is {state}; cannot {action}")]
    WrongState {
        /// The container.
        cid: ContainerId,
        /// Its state.
        state: &'static str,
        /// What was asked.
        action: &'static str,
    },
    /// The container could not be set up as its spec asks.
    #[error("container \"{cid}\" could not be set up: {reason}")]
    SetupFailed {
        /// The container.
        cid: ContainerId,
        /// What failed, as the kernel said it.
        reason: String,
    },
    /// A teardown step failed; calling again finishes what is left.
    #[error("teardown of {what} incomplete: {failures}; call again to finish")]
    TeardownIncomplete {
        /// The container or sandbox.
        what: String,
        /// Each failed step.
        failures: String,
    },
    /// The state journal could not be written.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A storage mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Refused to protect the agent's own control plane.
    #[error("refused: bosun will not {rule}: {target}")]
    Protected {
        /// The rule.
        rule: &'static str,
        /// What was aimed at.
        target: String,
    },
    /// A method bosun does not serve.
    #[error("{0}")]
    Unimplemented(String),
    /// The agent is shutting down or a resource it needs is not there yet.
    #[error("{0}")]
    Unavailable(String),
    /// An image pull (`image_guest_pull`) failed.
    #[error("image pull: {0}")]
    Pull(#[from] crate::image::PullError),
    /// A network call the kernel refused.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The agent policy refused the request, or a policy could not be taken.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// A bound was reached (a full file system, a limit of the agent).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request's deadline came first; nothing half-done was kept.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Something that should not happen; the message says what.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    /// Shorthand for an `InvalidArgument`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<crate::device::DeviceError> for AgentError {
    /// A malformed address is the request's fault; a device that never
    /// came is not there yet.
    fn from(e: crate::device::DeviceError) -> Self {
        match e {
            crate::device::DeviceError::BadAddress { .. } => AgentError::invalid("device", e.to_string()),
            crate::device::DeviceError::NotFound { .. } => AgentError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::ids::IdError> for AgentError {
    fn from(e: crate::ids::IdError) -> Self {
        AgentError::InvalidArgument {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<crate::mount::storage::DriverError> for AgentError {
    /// An unknown driver is the request's fault; one of another
    /// architecture is not served.
    fn from(e: crate::mount::storage::DriverError) -> Self {
        match e {
            crate::mount::storage::DriverError::Unknown { .. } => AgentError::invalid("storage.driver", e.to_string()),
            crate::mount::storage::DriverError::Unsupported { .. } => AgentError::Unimplemented(e.to_string()),
        }
    }
}
