//! Validated identifiers from requests: container ids, exec ids and guest
//! paths.

use std::fmt;

/// An id that is not of the accepted shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct IdError {
    /// The request field (`container_id`, `exec_id`).
    pub field: &'static str,
    /// What is wrong and what is accepted.
    pub reason: String,
}

fn bad(field: &'static str, s: &str) -> IdError {
    IdError {
        field,
        reason: format!("{:?} must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}", truncate(s)),
    }
}

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
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if valid(s) {
            Ok(Self(s.to_string()))
        } else {
            Err(bad("container_id", s))
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
pub fn parse_exec_id(s: &str) -> Result<Option<String>, IdError> {
    if s.is_empty() {
        Ok(None)
    } else if valid(s) {
        Ok(Some(s.to_string()))
    } else {
        Err(bad("exec_id", s))
    }
}

/// Checks a guest path from a request: absolute, no `..`, no NUL, not `/`.
pub fn guest_path(field: &'static str, p: &str) -> Result<std::path::PathBuf, IdError> {
    use std::path::{Component, Path, PathBuf};
    let path = PathBuf::from(p);
    if !path.is_absolute()
        || path.components().any(|c| c == Component::ParentDir)
        || path == Path::new("/")
        || p.contains('\0')
    {
        return Err(IdError {
            field,
            reason: format!("{:?} must be an absolute path without '..', other than /", truncate(p)),
        });
    }
    Ok(path)
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
