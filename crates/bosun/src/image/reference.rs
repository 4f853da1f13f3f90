//! Image references as the CRI gives them (`busybox`, `quay.io/x/y:1.2`,
//! `127.0.0.1:5000/app@sha256:…`), normalized as docker and containerd do.

use std::fmt;

/// Docker Hub's name in references, and the host its API is served on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry as named (`docker.io`, `host:port`).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    /// Tag, when no digest was given or with one (`name:tag@sha256:…`).
    pub tag: Option<String>,
    /// A manifest digest (`sha256:…`), pinned by the reference.
    pub digest: Option<String>,
}

/// A reference that does not parse.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub reference: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl Reference {
    /// Parses `[registry/]path[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let bad = |reason| ReferenceError {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() || s.len() > 1024 {
            return Err(bad("empty or longer than 1024 bytes"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|_| bad("digest must be sha256: and 64 lower-case hex digits"))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(bad("tag must be [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
            }
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, p)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), p.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let path_ok = !path.is_empty()
            && path.split('/').all(|c| {
                !c.is_empty()
                    && c.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
                    && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            });
        if !path_ok {
            return Err(bad(
                "repository must be lower-case components of [a-z0-9._-] separated by /",
            ));
        }
        let host_ok = registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !host_ok {
            return Err(bad("registry must be a host name or address, with an optional :port"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Self {
            registry,
            repository: path,
            tag,
            digest,
        })
    }

    /// The host (and port) the registry API is served on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when pinned.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .expect("a tag or a digest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Checks a `sha256:<64 hex>` digest; returns the hex part.
pub fn check_digest(d: &str) -> Result<&str, String> {
    match d.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Ok(h),
        _ => Err(format!(
            "{d:?} is not a sha256 digest (sha256: and 64 lower-case hex digits)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (reference, registry, repository, tag, digest)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn normalizes_like_docker() {
        let cases: &[Case] = &[
            ("busybox", "docker.io", "library/busybox", Some("latest"), None),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), None),
            ("user/app", "docker.io", "user/app", Some("latest"), None),
            ("quay.io/a/b:v1", "quay.io", "a/b", Some("v1"), None),
            ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", Some("latest"), None),
            ("localhost/app:x", "localhost", "app", Some("x"), None),
            (
                "r.io/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "r.io",
                "app",
                None,
                Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
            ),
        ];
        for (s, reg, repo, tag, dig) in cases {
            let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((r.registry.as_str(), r.repository.as_str()), (*reg, *repo), "{s}");
            assert_eq!(r.tag.as_deref(), *tag, "{s}");
            assert_eq!(r.digest.as_deref(), *dig, "{s}");
        }
        assert_eq!(Reference::parse("busybox").unwrap().api_host(), "registry-1.docker.io");
        assert_eq!(
            Reference::parse("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for s in [
            "",
            "Busybox",
            "a//b",
            "app:",
            "app:-x",
            "app@sha256:12",
            "app@md5:00",
            "r.io/../x",
            "r.io/a b",
            "ho$t.io/app",
        ] {
            assert!(Reference::parse(s).is_err(), "{s:?} accepted");
        }
    }
}
