//! `AgentError` and its one mapping to ttrpc status codes.
//!
//! Every error a request can meet ends up here; `code()` is the only place
//! that decides which wire code it gets. The match has no catch-all arm, so a
//! new variant does not compile until it has a code.

use ttrpc::Code;

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
    /// A method bosun does not serve.
    #[error("{0} is not implemented by bosun")]
    Unimplemented(&'static str),
    /// The agent is shutting down or a resource it needs is not there yet.
    #[error("{0}")]
    Unavailable(String),
    /// Something that should not happen; the message says what.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AgentError {
    /// The ttrpc status code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument { .. } => Code::INVALID_ARGUMENT,
            Self::Unimplemented(_) => Code::UNIMPLEMENTED,
            Self::Unavailable(_) => Code::UNAVAILABLE,
            Self::Internal(_) => Code::INTERNAL,
        }
    }

    /// Shorthand for an `InvalidArgument`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<AgentError> for ttrpc::Error {
    fn from(e: AgentError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_status() {
        let cases = [
            (AgentError::invalid("container_id", "empty"), Code::INVALID_ARGUMENT),
            (
                AgentError::Unimplemented("/grpc.AgentService/AddSwap"),
                Code::UNIMPLEMENTED,
            ),
            (AgentError::Unavailable("shutting down".into()), Code::UNAVAILABLE),
            (AgentError::Internal("x".into()), Code::INTERNAL),
        ];
        for (i, (err, code)) in cases.into_iter().enumerate() {
            assert_eq!(err.code(), code, "test[{i}]: {err:?}");
            let msg = err.to_string();
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code, "test[{i}]");
                    assert_eq!(s.message(), msg, "test[{i}]");
                }
                other => panic!("test[{i}]: not a status: {other:?}"),
            }
        }
    }
}
