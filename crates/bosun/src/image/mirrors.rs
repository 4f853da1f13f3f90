//! Where an image is pulled from: containers-registries.conf(5) version 2,
//! the file CoCo's image-rs reads in a confidential pod VM, so one file
//! serves either agent. `[[registry]]` tables (`prefix`, `location`,
//! `insecure`, `blocked`, `mirror-by-digest-only`) with their
//! `[[registry.mirror]]` lists (`location`, `insecure`, `pull-from-mirror`):
//! a reference under a registry's prefix is tried at each mirror in order,
//! then at the location. Not read: version 1 tables, `unqualified-search-
//! registries` and short-name aliases (the CRI sends qualified names),
//! drop-in directories.

use super::reference::{Reference, ReferenceError};

/// Registries' rules, from a registries.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirrors {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// `host[:port][/path]`, or `*.domain` (any host under it).
    prefix: String,
    /// What the prefix stands for (`prefix` itself when not given).
    location: String,
    insecure: bool,
    blocked: bool,
    mirrors: Vec<Mirror>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Mirror {
    location: String,
    insecure: bool,
    when: PullFrom,
}

/// Which references a mirror serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PullFrom {
    All,
    DigestOnly,
    TagOnly,
}

/// One place to pull an image from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The reference as that place names it.
    pub reference: Reference,
    /// A mirror (not the registry's own location).
    pub mirror: bool,
}

/// A reference under a `blocked = true` registry.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("image {reference} is under the blocked registry prefix {prefix:?} (registries.conf)")]
pub struct Blocked {
    /// The reference refused.
    pub reference: String,
    /// The rule that refused it.
    pub prefix: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileV2 {
    #[serde(default)]
    registry: Vec<RegistryTable>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RegistryTable {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<MirrorTable>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorTable {
    location: String,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    pull_from_mirror: Option<PullFrom>,
}

/// Most rules a file may hold (a bound on work per pull).
const MAX_RULES: usize = 256;
const MAX_MIRRORS: usize = 16;

impl Mirrors {
    /// Parses a registries.conf; an error names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let f: FileV2 = toml::from_str(text).map_err(|e| e.to_string())?;
        if f.registry.len() > MAX_RULES {
            return Err(format!("more than {MAX_RULES} [[registry]] tables"));
        }
        let mut rules = Vec::new();
        for (i, t) in f.registry.into_iter().enumerate() {
            let at = |what: &str| format!("[[registry]] #{}: {what}", i + 1);
            let prefix = match (t.prefix, &t.location) {
                (Some(p), _) => p,
                (None, Some(l)) => l.clone(),
                (None, None) => return Err(at("neither prefix nor location")),
            };
            let wildcard = prefix.starts_with("*.");
            if wildcard && t.location.is_some() {
                return Err(at("a wildcard prefix takes no location"));
            }
            if !wildcard {
                check_location(&prefix).map_err(|e| at(&format!("prefix {prefix:?}: {e}")))?;
            } else if prefix.contains('/') || prefix.len() < 3 {
                return Err(at(&format!("prefix {prefix:?}: a wildcard names hosts only")));
            }
            let location = t.location.unwrap_or_else(|| prefix.clone());
            if !wildcard {
                check_location(&location).map_err(|e| at(&format!("location {location:?}: {e}")))?;
            }
            if t.mirror.len() > MAX_MIRRORS {
                return Err(at(&format!("more than {MAX_MIRRORS} mirrors")));
            }
            let mut mirrors = Vec::new();
            for m in t.mirror {
                check_location(&m.location).map_err(|e| at(&format!("mirror {:?}: {e}", m.location)))?;
                let when = match (m.pull_from_mirror, t.mirror_by_digest_only) {
                    (Some(w), _) => w,
                    (None, true) => PullFrom::DigestOnly,
                    (None, false) => PullFrom::All,
                };
                mirrors.push(Mirror {
                    location: m.location.trim_end_matches('/').to_string(),
                    insecure: m.insecure,
                    when,
                });
            }
            rules.push(Rule {
                prefix: prefix.trim_end_matches('/').to_string(),
                location: location.trim_end_matches('/').to_string(),
                insecure: t.insecure,
                blocked: t.blocked,
                mirrors,
            });
        }
        Ok(Mirrors { rules })
    }

    /// Hosts (`host[:port]`) the file says to speak plain HTTP to.
    pub fn insecure_hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rules {
            if r.insecure && !r.prefix.starts_with("*.") {
                out.push(host_of(&r.location).to_string());
            }
            out.extend(
                r.mirrors
                    .iter()
                    .filter(|m| m.insecure)
                    .map(|m| host_of(&m.location).to_string()),
            );
        }
        out
    }

    /// Where to pull `r` from, in order: its rule's mirrors that serve
    /// it, then its location (`r` itself without a rule).
    pub fn sources(&self, r: &Reference) -> Result<Vec<Source>, Blocked> {
        let name = format!("{}/{}", r.registry, r.repository);
        let Some((rule, rest)) = self.rule_for(&r.registry, &name) else {
            return Ok(vec![Source {
                reference: r.clone(),
                mirror: false,
            }]);
        };
        if rule.blocked {
            return Err(Blocked {
                reference: r.to_string(),
                prefix: rule.prefix.clone(),
            });
        }
        let served = |w: PullFrom| match w {
            PullFrom::All => true,
            PullFrom::DigestOnly => r.digest.is_some(),
            PullFrom::TagOnly => r.digest.is_none(),
        };
        let mut out: Vec<Source> = rule
            .mirrors
            .iter()
            .filter(|m| served(m.when))
            .filter_map(|m| rewrite(r, &m.location, rest).ok())
            .map(|reference| Source {
                reference,
                mirror: true,
            })
            .collect();
        let at = if rule.prefix.starts_with("*.") {
            r.clone()
        } else {
            rewrite(r, &rule.location, rest).unwrap_or_else(|_| r.clone())
        };
        out.push(Source {
            reference: at,
            mirror: false,
        });
        Ok(out)
    }

    /// The rule with the longest prefix matching `name` (`host/path`), and
    /// the part of `name` after it. A wildcard's "rest" is the path after
    /// the host.
    fn rule_for<'a, 'n>(&'a self, host: &str, name: &'n str) -> Option<(&'a Rule, &'n str)> {
        let mut best: Option<(&Rule, &str, usize)> = None;
        for rule in &self.rules {
            let hit = if let Some(domain) = rule.prefix.strip_prefix('*') {
                // "*.example.com" matches "a.example.com", not "example.com".
                host.ends_with(domain).then(|| (&name[host.len()..], rule.prefix.len()))
            } else {
                name.strip_prefix(rule.prefix.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .map(|rest| (rest, rule.prefix.len()))
            };
            if let Some((rest, len)) = hit {
                if best.is_none_or(|(_, _, l)| len > l) {
                    best = Some((rule, rest, len));
                }
            }
        }
        best.map(|(r, rest, _)| (r, rest))
    }
}

/// `r` with its name's prefix replaced by `location`.
fn rewrite(r: &Reference, location: &str, rest: &str) -> Result<Reference, ReferenceError> {
    let mut s = format!("{location}{rest}");
    if let Some(t) = &r.tag {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = &r.digest {
        s.push('@');
        s.push_str(d);
    }
    Reference::parse(&s)
}

fn host_of(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

/// A location is `host[:port][/path]` whose host reads as one (a dot, a
/// port or `localhost`), so that it is never taken for a Docker Hub path.
fn check_location(l: &str) -> Result<(), &'static str> {
    let host = host_of(l);
    if l.is_empty() || l.len() > 255 || l.contains("://") {
        return Err("expected host[:port][/path] without a scheme");
    }
    if !(host.contains(['.', ':']) || host == "localhost") {
        return Err("the first part must be a host (with a dot, a port, or localhost)");
    }
    if !l.chars().all(|c| c.is_ascii_alphanumeric() || "._-:/[]".contains(c)) {
        return Err("unexpected characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io/library"
location = "docker.io/library"
mirror-by-digest-only = false

[[registry.mirror]]
location = "mirror.local:5000/hub"
insecure = true

[[registry.mirror]]
location = "pinned.local/hub"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "quay.io/secret"
blocked = true

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.local/corp"

[[registry]]
location = "old.example/team"
prefix = "new.example/team"
"#;

    fn names(m: &Mirrors, r: &str) -> Vec<String> {
        m.sources(&Reference::parse(r).unwrap())
            .unwrap()
            .iter()
            .map(|s| s.reference.to_string())
            .collect()
    }

    #[test]
    fn mirrors_then_location_by_longest_prefix() {
        let m = Mirrors::parse(CONF).unwrap();
        assert_eq!(
            names(&m, "busybox:1.36"),
            ["mirror.local:5000/hub/busybox:1.36", "docker.io/library/busybox:1.36"]
        );
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            names(&m, &format!("busybox@{d}")),
            [
                format!("mirror.local:5000/hub/busybox@{d}"),
                format!("pinned.local/hub/busybox@{d}"),
                format!("docker.io/library/busybox@{d}")
            ]
        );
        // No rule: itself; a name that only shares characters is no match.
        assert_eq!(names(&m, "docker.io/libraryx/a:1"), ["docker.io/libraryx/a:1"]);
        assert_eq!(names(&m, "new.example/team/app:2"), ["old.example/team/app:2"]);
        assert_eq!(
            names(&m, "git.corp.example/x/y:1"),
            ["cache.local/corp/x/y:1", "git.corp.example/x/y:1"]
        );
        assert_eq!(names(&m, "corp.example/x/y:1"), ["corp.example/x/y:1"]);
        let e = m
            .sources(&Reference::parse("quay.io/secret/app:1").unwrap())
            .unwrap_err();
        assert!(e.to_string().contains("blocked"), "{e}");
        assert_eq!(m.insecure_hosts(), ["mirror.local:5000"]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        for (text, says) in [
            ("[[registry]]\ninsecure = true\n", "neither prefix nor location"),
            ("[[registry]]\nprefix = \"busybox\"\n", "must be a host"),
            ("[[registry]]\nprefix = \"*.x.y\"\nlocation = \"a.b\"\n", "wildcard"),
            ("[[registry]]\nprefix = \"a.b\"\n[[registry.mirror]]\nlocation = \"https://m.b\"\n", "scheme"),
            ("[[registry]]\nprefix = \"a.b\"\n[[registry.mirror]]\nlocation = \"m.b\"\npull-from-mirror = \"sometimes\"\n", "sometimes"),
            ("[[registry]\n", "expected"),
        ] {
            let e = Mirrors::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        assert_eq!(Mirrors::parse("").unwrap(), Mirrors::default());
    }
}
