//! The Kata agent's configuration file (`kata-agent --config FILE`, or
//! `agent.config_file=` on the kernel command line), as a peer-pods pod VM
//! starts its agent: TOML, the Kata agent's keys (`src/agent/src/config.rs`
//! of kata-containers), unknown keys ignored as the Kata agent ignores them.
//!
//! Each Kata key bosun has a meaning for becomes the bosun setting it
//! stands for; bosun's own settings may be given too, by their flag name
//! (`run_dir` or `run-dir`). Keys bosun has no use for are accepted and
//! named once in the log, with why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{ConfigError, OPTIONS};

/// Kata keys and the bosun setting each becomes.
const MAPPED: &[(&str, &str)] = &[
    ("server_addr", "server-addr"),
    ("log_level", "log-level"),
    ("https_proxy", "https-proxy"),
    ("no_proxy", "no-proxy"),
    ("hotplug_timeout", "hotplug-timeout"),
    ("image_pull_timeout", "image-pull-timeout"),
    ("policy_file", "policy-file"),
];

/// Kata keys bosun accepts and does not act on, and why.
const IGNORED: &[(&str, &str)] = &[
    ("debug_console", "bosun has no debug console"),
    ("debug_console_vport", "bosun has no debug console"),
    ("dev_mode", "bosun has no developer mode"),
    ("log_vport", "bosun logs to stderr (the unit's journal)"),
    (
        "container_pipe_size",
        "bosun reads container output into its own buffers",
    ),
    ("unified_cgroup_hierarchy", "bosun finds the cgroup layout itself"),
    ("tracing", "bosun has no tracing"),
    ("passfd_listener_port", "bosun has no passfd listener"),
    (
        "cdh_api_timeout",
        "bosun pulls images itself, without a Confidential Data Hub",
    ),
    ("cdi_timeout", "bosun serves no CDI devices"),
    ("visible_cdi_devices", "bosun serves no CDI devices"),
    (
        "launch_process_timeout",
        "bosun bounds a process's set-up itself (30 s)",
    ),
    ("guest_components_rest_api", "bosun starts no guest components"),
    ("guest_components_procs", "bosun starts no guest components"),
    ("secure_storage_integrity", "bosun has no secure storage"),
];

/// The settings a configuration file gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KataFile {
    /// The file.
    pub path: PathBuf,
    /// Values by bosun flag name, as text.
    pub values: HashMap<&'static str, String>,
    /// The line each value is on, for a message about a bad one.
    pub lines: HashMap<&'static str, usize>,
    /// What the log says once at start: keys accepted and not acted on.
    pub notes: Vec<String>,
}

impl KataFile {
    /// Reads and parses `path`; a file that does not parse, or a value of
    /// the wrong type, names its line.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            line: None,
            reason: e.to_string(),
        })?;
        Self::parse(path, &text)
    }

    /// Where a value came from, as a message names it.
    pub fn source_of(&self, flag: &str) -> String {
        match self.lines.get(flag) {
            Some(l) => format!("{} line {l}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// Parses `text` (the file at `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let bad = |span: Option<std::ops::Range<usize>>, reason: String| ConfigError::File {
            path: path.to_path_buf(),
            line: span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            reason,
        };
        let doc: toml::Spanned<toml::Table> =
            toml::from_str(text).map_err(|e| bad(e.span(), e.message().to_string()))?;
        let mut out = KataFile {
            path: path.to_path_buf(),
            ..Default::default()
        };
        let line_of = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map(|i| i + 1)
        };
        for (key, value) in doc.get_ref() {
            let mapped = MAPPED
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, flag)| *flag)
                .or_else(|| own_flag(key));
            if let Some(flag) = mapped {
                let v = text_of(flag, value).map_err(|reason| ConfigError::File {
                    path: path.to_path_buf(),
                    line: line_of(key),
                    reason: format!("{key}: {reason}"),
                })?;
                out.values.insert(flag, v);
                if let Some(l) = line_of(key) {
                    out.lines.insert(flag, l);
                }
            } else if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
                out.notes.push(format!("{key}: accepted, not acted on: {why}"));
            } else {
                // As the Kata agent: a key it does not know is ignored.
                out.notes.push(format!("{key}: unknown key, ignored"));
            }
        }
        Ok(out)
    }
}

/// A bosun setting given by its flag name (`run_dir` or `run-dir`); the
/// file cannot name another file to read.
fn own_flag(key: &str) -> Option<&'static str> {
    let flag = key.replace('_', "-");
    OPTIONS
        .iter()
        .find(|o| o.flag == flag && !matches!(o.flag, "config" | "cmdline-file"))
        .map(|o| o.flag)
}

/// A TOML value as the text a flag would carry. Durations come as the
/// Kata agent writes them (serde's `{ secs = N, nanos = M }`) or as whole
/// seconds.
fn text_of(flag: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(String::from).ok_or("a list of strings"))
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(","))
            .map_err(String::from),
        toml::Value::Table(t) if flag.ends_with("timeout") => {
            let secs = t.get("secs").and_then(toml::Value::as_integer).unwrap_or(0);
            let nanos = t.get("nanos").and_then(toml::Value::as_integer).unwrap_or(0);
            if secs < 0 || nanos < 0 {
                return Err("a duration is { secs = N, nanos = M } with N, M >= 0".into());
            }
            Ok((secs + (nanos + 999_999_999) / 1_000_000_000).to_string())
        }
        _ => Err(format!("a {} is not a value for {flag}", v.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_pods_file_and_kata_keys() {
        // cloud-api-adaptor's podvm/files/etc/agent-config.toml, and more keys.
        let text = r#"server_addr = "unix:///run/kata-containers/agent.sock"
guest_components_procs = "none"
log_level = "debug"
hotplug_timeout = { secs = 7, nanos = 0 }
image_pull_timeout = 600
https_proxy = "http://10.0.0.1:3128"
no_proxy = "localhost,10.96.0.0/12"
dev_mode = true
run_dir = "/run/bosun-pod"
max-connections = 64
something_new = 1
"#;
        let f = KataFile::parse(Path::new("/etc/agent-config.toml"), text).unwrap();
        let want = [
            ("server-addr", "unix:///run/kata-containers/agent.sock"),
            ("log-level", "debug"),
            ("hotplug-timeout", "7"),
            ("image-pull-timeout", "600"),
            ("https-proxy", "http://10.0.0.1:3128"),
            ("no-proxy", "localhost,10.96.0.0/12"),
            ("run-dir", "/run/bosun-pod"),
            ("max-connections", "64"),
        ];
        for (i, (flag, v)) in want.iter().enumerate() {
            assert_eq!(f.values.get(flag).map(String::as_str), Some(*v), "test[{i}]: {flag}");
        }
        assert_eq!(f.values.len(), want.len());
        assert!(f.notes.iter().any(|n| n.starts_with("guest_components_procs")));
        assert!(f.notes.iter().any(|n| n.starts_with("dev_mode")));
        assert!(f.notes.iter().any(|n| n.starts_with("something_new: unknown")));
    }

    #[test]
    fn a_bad_file_names_its_line() {
        let cases = [
            ("server_addr = \"unix:///a\"\nlog_level = \n", Some(2)),
            ("server_addr = \"unix:///a\"\n\nlog_level = [1, 2]\n", Some(3)),
            ("hotplug_timeout = \"three\"\n", None),
        ];
        for (i, (text, line)) in cases.into_iter().enumerate() {
            match KataFile::parse(Path::new("/f.toml"), text) {
                Err(ConfigError::File { line: got, .. }) if line.is_some() => assert_eq!(got, line, "test[{i}]"),
                Err(ConfigError::File { .. }) => panic!("test[{i}]: {text:?} should parse (checked when resolved)"),
                Ok(_) if line.is_none() => {}
                other => panic!("test[{i}]: {other:?}"),
            }
        }
    }
}
