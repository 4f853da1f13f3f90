//! Validated identifiers: container ids and exec ids.

use std::fmt;

use crate::error::AgentError;

/// Longest id accepted (and the shape): `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
/// Ids become directory and cgroup names, so nothing else is allowed.
pub const MAX_ID_LEN: usize = 128;

fn valid(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A container id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ContainerId(String);

/// Quoted, as a string: messages that format an id with `{:?}` say
/// `"web"`, not `ContainerId("web")`.
impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl ContainerId {
    /// Validates a container id from a request.
    pub fn parse(s: &str) -> Result<Self, AgentError> {
        if valid(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(AgentError::invalid(
                "container_id",
                format!("{:?} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}", truncate(s)),
            ))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates an exec id; empty means the container's init process.
pub fn parse_exec_id(s: &str) -> Result<Option<String>, AgentError> {
    if s.is_empty() {
        Ok(None)
    } else if valid(s) {
        Ok(Some(s.to_string()))
    } else {
        Err(AgentError::invalid(
            "exec_id",
            format!("{:?} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}", truncate(s)),
        ))
    }
}

/// At most 64 characters of a hostile id, for messages.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let long = "a".repeat(129);
        let max = "a".repeat(128);
        let cases = [
            ("web", true),
            ("a.b_c-1", true),
            (max.as_str(), true),
            ("", false),
            (long.as_str(), false),
            ("../x", false),
            ("-x", false),
            (".x", false),
            ("a/b", false),
            ("a b", false),
            ("é", false),
            ("a\0", false),
        ];
        for (i, (s, ok)) in cases.into_iter().enumerate() {
            assert_eq!(ContainerId::parse(s).is_ok(), ok, "test[{i}]: {s:?}");
        }
        assert_eq!(parse_exec_id("").unwrap(), None);
        assert_eq!(format!("{:?}", ContainerId::parse("web").unwrap()), "\"web\"");
        assert!(parse_exec_id("../e").is_err());
    }
}
