//! Which ttrpc code every error gets: decided here and only here. Each
//! match is exhaustive, with no catch-all arm, so a new variant of any
//! error does not compile until it has a code.
//!
//! The rule of thumb, as the Kata runtimes read codes: the request's fault
//! is INVALID_ARGUMENT (NOT_FOUND when what it names is not there), the
//! pod's state FAILED_PRECONDITION, the agent's refusal to hurt itself
//! PERMISSION_DENIED, a resource not there yet UNAVAILABLE, a bound
//! RESOURCE_EXHAUSTED, and INTERNAL only for the truly unexpected.

use nix::errno::Errno;
use ttrpc::Code;

use crate::error::AgentError;
use crate::image::registry::RegistryError;
use crate::image::PullError;
use crate::mount::MountError;
use crate::net::NetError;

/// The code of `e`.
pub fn code(e: &AgentError) -> Code {
    match e {
        AgentError::InvalidArgument { .. } | AgentError::SetupFailed { .. } => Code::INVALID_ARGUMENT,
        AgentError::ContainerNotFound(_) | AgentError::ProcessNotFound { .. } => Code::NOT_FOUND,
        AgentError::ContainerExists(_) | AgentError::ExecIdInUse { .. } | AgentError::SandboxExists(_) => {
            Code::ALREADY_EXISTS
        }
        AgentError::NoSandbox
        | AgentError::WrongState { .. }
        | AgentError::StdinClosed { .. }
        | AgentError::GuestOnly(_)
        | AgentError::TeardownIncomplete { .. } => Code::FAILED_PRECONDITION,
        AgentError::Mount(m) => mount(m),
        AgentError::Net(n) => net(n),
        AgentError::Pull(p) => pull(p),
        AgentError::Protected { .. } => Code::PERMISSION_DENIED,
        AgentError::Policy(p) => match p {
            crate::policy::PolicyError::Denied { .. } => Code::PERMISSION_DENIED,
            crate::policy::PolicyError::Invalid(_) => Code::INVALID_ARGUMENT,
            crate::policy::PolicyError::Store(_) => Code::INTERNAL,
        },
        AgentError::Unimplemented(_) => Code::UNIMPLEMENTED,
        AgentError::Unavailable(_) => Code::UNAVAILABLE,
        AgentError::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
        AgentError::ResourceExhausted(_) => Code::RESOURCE_EXHAUSTED,
        AgentError::Internal(_) | AgentError::Journal(_) => Code::INTERNAL,
    }
}

/// A storage mount: the request is at fault when the source is missing,
/// the filesystem type unknown, the node not a block device, the options
/// bad, or a path component not a directory.
fn mount(m: &MountError) -> Code {
    match m.errno {
        Errno::ENOENT | Errno::ENODEV | Errno::ENOTBLK | Errno::EINVAL | Errno::ENOTDIR => Code::INVALID_ARGUMENT,
        _ => Code::INTERNAL,
    }
}

/// A network call: the request is at fault when the kernel says so (a
/// gateway not reachable, a route that exists, a bad value, no such link).
fn net(n: &NetError) -> Code {
    match n {
        NetError::NoSuchInterface(_) => Code::INVALID_ARGUMENT,
        NetError::Netlink { errno, .. } => match errno {
            Some(
                Errno::EINVAL
                | Errno::ENETUNREACH
                | Errno::EHOSTUNREACH
                | Errno::EEXIST
                | Errno::ENODEV
                | Errno::EADDRNOTAVAIL
                | Errno::ERANGE
                | Errno::ESRCH
                | Errno::ENOENT,
            ) => Code::INVALID_ARGUMENT,
            _ => Code::INTERNAL,
        },
        NetError::Socket(_) => Code::INTERNAL,
    }
}

/// An image pull (`image_guest_pull`).
fn pull(p: &PullError) -> Code {
    match p {
        PullError::Reference(_) => Code::INVALID_ARGUMENT,
        PullError::Registry(RegistryError::Unavailable { .. }) => Code::UNAVAILABLE,
        PullError::Registry(RegistryError::NotFound { .. }) => Code::NOT_FOUND,
        PullError::Registry(RegistryError::Denied { .. }) | PullError::Blocked(_) => Code::PERMISSION_DENIED,
        PullError::Registry(RegistryError::BadContent { .. } | RegistryError::Untrusted { .. })
        | PullError::BadContent(_)
        | PullError::Hostile(_)
        | PullError::Stream(_) => Code::FAILED_PRECONDITION,
        PullError::Digest(_) => Code::DATA_LOSS,
        PullError::TooLarge(_) => Code::RESOURCE_EXHAUSTED,
        PullError::Internal(_) => Code::INTERNAL,
    }
}

impl From<AgentError> for ttrpc::Error {
    fn from(e: AgentError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(code(&e), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ContainerId;

    #[test]
    fn codes_and_status() {
        let cid = ContainerId::parse("web").unwrap();
        let mount_err = |errno| {
            AgentError::Mount(MountError {
                op: "mount",
                target: "/m".into(),
                from: None,
                errno,
            })
        };
        let netlink = |errno| {
            AgentError::Net(NetError::Netlink {
                what: "add route".into(),
                errno,
                reason: String::new(),
            })
        };
        let cases = [
            (AgentError::invalid("container_id", "empty"), Code::INVALID_ARGUMENT),
            (
                AgentError::from(ContainerId::parse("../x").unwrap_err()),
                Code::INVALID_ARGUMENT,
            ),
            (AgentError::ContainerNotFound(cid.clone()), Code::NOT_FOUND),
            (
                AgentError::ProcessNotFound {
                    cid: cid.clone(),
                    exec_id: "e".into(),
                },
                Code::NOT_FOUND,
            ),
            (AgentError::ContainerExists(cid.clone()), Code::ALREADY_EXISTS),
            (
                AgentError::WrongState {
                    cid,
                    state: "running",
                    action: "start",
                },
                Code::FAILED_PRECONDITION,
            ),
            (AgentError::NoSandbox, Code::FAILED_PRECONDITION),
            (
                AgentError::Unimplemented("/grpc.AgentService/MemAgentMemcgSet".into()),
                Code::UNIMPLEMENTED,
            ),
            (AgentError::Unavailable("shutting down".into()), Code::UNAVAILABLE),
            (AgentError::ResourceExhausted("full".into()), Code::RESOURCE_EXHAUSTED),
            (mount_err(Errno::ENODEV), Code::INVALID_ARGUMENT),
            (mount_err(Errno::EIO), Code::INTERNAL),
            (netlink(Some(Errno::ENETUNREACH)), Code::INVALID_ARGUMENT),
            (netlink(Some(Errno::ENOMEM)), Code::INTERNAL),
            (AgentError::Pull(PullError::Digest("x".into())), Code::DATA_LOSS),
            (AgentError::Internal("x".into()), Code::INTERNAL),
        ];
        for (i, (err, want)) in cases.into_iter().enumerate() {
            assert_eq!(code(&err), want, "test[{i}]: {err:?}");
            let msg = err.to_string();
            match ttrpc::Error::from(err) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), want, "test[{i}]");
                    assert_eq!(s.message(), msg, "test[{i}]");
                }
                other => panic!("test[{i}]: not a status: {other:?}"),
            }
        }
    }
}
