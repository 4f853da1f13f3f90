//! Agent configuration: flags > environment > kernel command line (or a
//! configuration file) > defaults.
//!
//! One table (`OPTIONS`) names every setting with its flag, environment
//! variables (bosun's own first, then Kata's), kernel command-line key and
//! default; `--help` is printed from the same table so it cannot drift.
//! With a configuration file in the Kata agent's format (`--config`/`-c`,
//! or `agent.config_file=`), the file stands where the kernel command
//! line would, and the command line is not read, as with the Kata agent.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::transport::Address;

mod found;
pub mod initdata;
mod kata_file;
mod options;

pub use found::FoundFiles;
pub use kata_file::KataFile;
pub use options::{usage, OptionSpec, OPTIONS};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable key=value lines.
    Text,
}

/// The resolved configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to serve.
    pub server_addr: Address,
    /// Lowest level logged.
    pub log_level: slog::Level,
    /// Log format.
    pub log_format: LogFormat,
    /// Bound on graceful shutdown.
    pub shutdown_timeout: Duration,
    /// Container run state.
    pub run_dir: PathBuf,
    /// Name of the cgroup holding the containers' cgroups.
    pub cgroup_parent: String,
    /// The cgroup bosun moves itself into (`--agent-cgroup`), if any.
    pub agent_cgroup: Option<String>,
    /// Pipe capacity of each process's stdout and stderr.
    pub output_buffer: usize,
    /// Power the VM off after DestroySandbox (as PID 1 only): of any
    /// sandbox (`Some("")`), of the one with this id, or never (`None`).
    pub poweroff_on_destroy: Option<String>,
    /// Who may connect.
    pub peers: crate::transport::listen::Peers,
    /// The pod VM's pause bundle.
    pub pause_bundle: PathBuf,
    /// The image store's directory.
    pub image_dir: PathBuf,
    /// Threads of the async runtime.
    pub worker_threads: usize,
    /// How registries are reached.
    pub registry: crate::image::registry::RegistryConfig,
    /// Bounds on what connections may make the agent hold.
    pub limits: crate::transport::limits::Limits,
    /// How long a hot-plugged device may take to appear.
    pub hotplug_timeout: Duration,
    /// Bound on one image pull in all.
    pub image_pull_timeout: Duration,
    /// The agent policy file at start, if any.
    pub policy_file: Option<PathBuf>,
    /// Whether the policy file was asked for (flag, environment, command
    /// line or configuration file), not merely found: initdata's policy
    /// stands between the two.
    pub policy_explicit: bool,
    /// The pod's initdata document, if any (`--initdata`, or QEMU's
    /// firmware config entry when bosun is the guest's init).
    pub initdata: Option<PathBuf>,
    /// What the start-up log says about the configuration (keys of a
    /// configuration file accepted and not acted on).
    pub notes: Vec<String>,
    /// Where each value came from, for the start-up log line.
    pub sources: Vec<(&'static str, String)>,
}

/// `any`, or a comma list of numbers.
fn parse_id_list(s: &str) -> Option<Option<Vec<u32>>> {
    if s == "any" {
        return Some(None);
    }
    let v: Option<Vec<u32>> = s.split(',').map(|x| x.trim().parse().ok()).collect();
    v.filter(|v| !v.is_empty()).map(Some)
}

/// A bad flag or value: printed with the usage, exit code 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// Not a known flag.
    #[error("unknown flag {0:?}; see --help")]
    UnknownFlag(String),
    /// A flag given without its value.
    #[error("flag --{0} needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("invalid {option} {value:?} (from {source_name}): {reason}")]
    InvalidValue {
        /// The setting.
        option: &'static str,
        /// The value given.
        value: String,
        /// Where it came from.
        source_name: String,
        /// What is accepted.
        reason: String,
    },
    /// The configuration file could not be read or parsed.
    #[error("configuration file {path:?}{}: {reason}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// Where in it.
        line: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The command-line file could not be read.
    #[error("cannot read kernel command line {path:?}: {reason}")]
    Cmdline {
        /// The file.
        path: PathBuf,
        /// The cause.
        reason: String,
    },
}

/// What the caller asked for besides serving.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Serve with the configuration.
    Serve,
    /// Print help and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Parses `--flag value` and `--flag=value`; returns the flags by name.
pub fn parse_flags(args: &[String]) -> Result<(Action, HashMap<&'static str, String>), ConfigError> {
    let mut out = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok((Action::Help, out)),
            "-V" | "--version" => return Ok((Action::Version, out)),
            _ => {}
        }
        // `-c FILE`: the Kata agent's short form of --config.
        let long = if arg == "-c" { "--config" } else { arg.as_str() };
        let body = long
            .strip_prefix("--")
            .ok_or_else(|| ConfigError::UnknownFlag(arg.clone()))?;
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let spec = OPTIONS
            .iter()
            .find(|o| o.flag == name)
            .ok_or_else(|| ConfigError::UnknownFlag(arg.clone()))?;
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| ConfigError::MissingValue(name.to_string()))?,
        };
        out.insert(spec.flag, value);
    }
    Ok((Action::Serve, out))
}

/// What stands below flags and environment: the kernel command line, or a
/// configuration file (which replaces it).
#[derive(Debug, Default)]
pub enum Lower {
    /// Neither.
    #[default]
    None,
    /// The kernel command line's text.
    Cmdline(String),
    /// A configuration file.
    File(KataFile),
}

/// Parses `agent.key=value` words of a kernel command line.
pub fn parse_cmdline(text: &str) -> HashMap<String, String> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("agent."))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Config {
    /// Resolves every option from flags, then `env`, then `lower` (the
    /// already-read kernel command line or configuration file), then what
    /// the machine provides (`found`), then the default.
    pub fn resolve(
        flags: &HashMap<&'static str, String>,
        env: &dyn Fn(&str) -> Option<String>,
        lower: &Lower,
        found: &FoundFiles,
    ) -> Result<Self, ConfigError> {
        let kv = match lower {
            Lower::Cmdline(text) => parse_cmdline(text),
            _ => HashMap::new(),
        };
        let file = match lower {
            Lower::File(f) => Some(f),
            _ => None,
        };
        let mut sources = Vec::new();
        let mut pick = |flag: &'static str| -> Option<(String, String)> {
            let spec = OPTIONS.iter().find(|o| o.flag == flag).expect("option in table");
            let found = flags
                .get(flag)
                .map(|v| (v.clone(), format!("--{flag}")))
                .or_else(|| spec.env.iter().find_map(|e| env(e).map(|v| (v, format!("${e}")))))
                .or_else(|| spec.cmdline.and_then(|k| kv.get(k).map(|v| (v.clone(), k.to_string()))))
                .or_else(|| file.and_then(|f| f.values.get(flag).map(|v| (v.clone(), f.source_of(flag)))))
                .or_else(|| spec.default.map(|d| (d.to_string(), "default".to_string())));
            if let Some((_, src)) = &found {
                sources.push((flag, src.clone()));
            }
            found
        };
        let mut from_found = Vec::new();
        let bad = |option, (value, source_name): (String, String), reason: String| ConfigError::InvalidValue {
            option,
            value,
            source_name,
            reason,
        };

        let v = pick("server-addr").expect("has default");
        let server_addr = Address::parse(&v.0)
            .and_then(|a| a.check_listenable().map(|_| a))
            .map_err(|e| bad("server-addr", v.clone(), e.to_string()))?;
        let v = pick("log-level").expect("has default");
        let log_level = parse_level(&v.0).ok_or_else(|| {
            bad(
                "log-level",
                v.clone(),
                "expected critical, error, warn, info, debug or trace".into(),
            )
        })?;
        let v = pick("log-format").expect("has default");
        let log_format = match v.0.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => return Err(bad("log-format", v, "expected json or text".into())),
        };
        let v = pick("shutdown-timeout").expect("has default");
        let secs: u64 = v.0.parse().ok().filter(|s| *s <= 3600).ok_or_else(|| {
            bad(
                "shutdown-timeout",
                v.clone(),
                "expected whole seconds, 0 to 3600".into(),
            )
        })?;
        let v = pick("output-buffer").expect("has default");
        let output_buffer: usize =
            v.0.parse()
                .ok()
                .filter(|b| (4096..=64 << 20).contains(b))
                .ok_or_else(|| bad("output-buffer", v.clone(), "expected bytes, 4096 to 67108864".into()))?;
        let v = pick("run-dir").expect("has default");
        let run_dir = PathBuf::from(&v.0);
        if !run_dir.is_absolute() || v.0.contains("..") {
            return Err(bad("run-dir", v, "expected an absolute path without '..'".into()));
        }
        let v = pick("cgroup-parent").expect("has default");
        if crate::ids::ContainerId::parse(&v.0).is_err() {
            return Err(bad(
                "cgroup-parent",
                v,
                "expected one name of [A-Za-z0-9][A-Za-z0-9_.-]{0,127}".into(),
            ));
        }
        let cgroup_parent = v.0;
        let agent_cgroup = match pick("agent-cgroup") {
            Some(v) if v.0 == "none" => None,
            Some(v) if crate::ids::ContainerId::parse(&v.0).is_ok() && v.0 != cgroup_parent => Some(v.0),
            Some(v) => {
                return Err(bad(
                    "agent-cgroup",
                    v,
                    "expected one cgroup name ([A-Za-z0-9][A-Za-z0-9_.-]*) other than --cgroup-parent, or none".into(),
                ))
            }
            // Not by default: measured on a cgroup v1 host with CPU hogs in
            // a sibling cgroup it did not help (README, "Benchmark").
            None => None,
        };
        let v = pick("poweroff-on-destroy").expect("has default");
        let poweroff_on_destroy = match v.0.as_str() {
            "true" | "1" | "yes" => Some(String::new()),
            "false" | "0" | "no" => None,
            id if crate::ids::ContainerId::parse(id).is_ok() => Some(id.to_string()),
            _ => {
                return Err(bad(
                    "poweroff-on-destroy",
                    v,
                    "expected true, false or a sandbox id".into(),
                ))
            }
        };
        let v = pick("allow-uids").expect("has default");
        let uids = parse_id_list(&v.0)
            .ok_or_else(|| bad("allow-uids", v.clone(), "expected any or uids like 0,1000".into()))?;
        let v = pick("allow-cids").expect("has default");
        let cids =
            parse_id_list(&v.0).ok_or_else(|| bad("allow-cids", v.clone(), "expected any or CIDs like 2".into()))?;
        let v = pick("pause-bundle").expect("has default");
        let pause_bundle = PathBuf::from(&v.0);
        if !pause_bundle.is_absolute() || v.0.contains("..") {
            return Err(bad("pause-bundle", v, "expected an absolute path without '..'".into()));
        }
        let image_dir = match pick("image-dir") {
            None => match &found.image_mount {
                Some(m) => {
                    from_found.push(("image-dir", format!("the pod VM's scratch disk {}", m.display())));
                    m.clone()
                }
                None => run_dir.join("images"),
            },
            Some(v) if PathBuf::from(&v.0).is_absolute() && !v.0.contains("..") => PathBuf::from(&v.0),
            Some(v) => return Err(bad("image-dir", v, "expected an absolute path without '..'".into())),
        };
        let v = pick("insecure-registries").expect("has default");
        let insecure: Vec<String> =
            v.0.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from)
                .collect();
        if insecure
            .iter()
            .any(|h| !h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        {
            return Err(bad(
                "insecure-registries",
                v,
                "expected host[:port] names, comma separated".into(),
            ));
        }
        let auth_file = pick("registry-auth-file").or_else(|| {
            found.auth_file.as_ref().map(|p| {
                let shown = p.display().to_string();
                from_found.push(("registry-auth-file", format!("the pod VM's {shown}")));
                (shown.clone(), format!("the pod VM's {shown}"))
            })
        });
        let auths = match auth_file {
            None => Default::default(),
            Some(v) => {
                let text =
                    std::fs::read_to_string(&v.0).map_err(|e| bad("registry-auth-file", v.clone(), e.to_string()))?;
                crate::image::registry::parse_auth_file(&text).map_err(|e| bad("registry-auth-file", v.clone(), e))?
            }
        };
        let conf = match pick("registries-conf") {
            Some(v) if v.0 == "none" => None,
            Some(v) => Some(v),
            None => found.registries_conf.as_ref().map(|p| {
                let shown = p.display().to_string();
                from_found.push(("registries-conf", shown.clone()));
                (shown, "found".to_string())
            }),
        };
        let mirrors = match conf {
            None => Default::default(),
            Some(v) => {
                let text =
                    std::fs::read_to_string(&v.0).map_err(|e| bad("registries-conf", v.clone(), e.to_string()))?;
                crate::image::mirrors::Mirrors::parse(&text).map_err(|e| bad("registries-conf", v.clone(), e))?
            }
        };
        let mut insecure = insecure;
        insecure.extend(mirrors.insecure_hosts());
        // Asked for, not merely found: initdata's policy stands between.
        let policy_pick = pick("policy-file");
        let policy_explicit = policy_pick.is_some();
        let initdata = match pick("initdata") {
            Some(v) if PathBuf::from(&v.0).is_absolute() => Some(PathBuf::from(&v.0)),
            Some(v) => return Err(bad("initdata", v, "expected an absolute path".into())),
            None => found.initdata.clone().inspect(|p| {
                from_found.push(("initdata", p.display().to_string()));
            }),
        };
        let policy_file = match policy_pick {
            Some(v) if v.0 == "none" => None,
            Some(v) if PathBuf::from(&v.0).is_absolute() => Some(PathBuf::from(&v.0)),
            Some(v) => return Err(bad("policy-file", v, "expected an absolute path, or none".into())),
            None => found.policy_file.clone().inspect(|p| {
                from_found.push(("policy-file", p.display().to_string()));
            }),
        };
        let v = pick("registry-timeout").expect("has default");
        let stall: u64 = v.0.parse().ok().filter(|s| (1..=3600).contains(s)).ok_or_else(|| {
            bad(
                "registry-timeout",
                v.clone(),
                "expected whole seconds, 1 to 3600".into(),
            )
        })?;
        let v = pick("worker-threads").expect("has default");
        let worker_threads = match v.0.as_str() {
            "auto" => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4),
            n => n.parse().ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| {
                bad(
                    "worker-threads",
                    v.clone(),
                    "expected auto or a number from 1 to 64".into(),
                )
            })?,
        };
        let proxy = match pick("https-proxy") {
            None => None,
            Some(v) => Some(crate::image::proxy::Proxy::parse(&v.0).map_err(|e| bad("https-proxy", v.clone(), e))?),
        };
        let v = pick("no-proxy").expect("has default");
        let no_proxy = crate::image::proxy::NoProxy::parse(&v.0).map_err(|e| bad("no-proxy", v.clone(), e))?;
        let mut number = |flag: &'static str, range: std::ops::RangeInclusive<u64>| -> Result<u64, ConfigError> {
            let v = pick(flag).expect("has default");
            parse_size(&v.0).filter(|n| range.contains(n)).ok_or_else(|| {
                bad(
                    flag,
                    v.clone(),
                    format!("expected a number from {} to {}", range.start(), range.end()),
                )
            })
        };
        let hotplug_timeout = Duration::from_secs(number("hotplug-timeout", 1..=3600)?);
        let image_pull_timeout = Duration::from_secs(number("image-pull-timeout", 1..=86400)?);
        let limits = crate::transport::limits::Limits {
            max_connections: number("max-connections", 1..=65536)? as usize,
            max_pending_per_connection: number("max-pending-requests", 1..=65536)? as usize,
            max_pending_total: number("max-pending-total", 1..=1 << 20)? as usize,
            max_buffered_bytes: number("max-buffered-bytes", 4 << 20..=1 << 40)? as usize,
            frame_timeout: Duration::from_secs(number("frame-timeout", 1..=3600)?),
        };
        Ok(Config {
            notes: file.map(|f| f.notes.clone()).unwrap_or_default(),
            hotplug_timeout,
            image_pull_timeout,
            policy_file,
            policy_explicit,
            initdata,
            limits,
            worker_threads,
            image_dir,
            registry: crate::image::registry::RegistryConfig {
                insecure,
                auths,
                stall_timeout: Duration::from_secs(stall),
                retries: 3,
                pull_timeout: image_pull_timeout,
                proxy,
                no_proxy,
                mirrors,
            },
            pause_bundle,
            peers: crate::transport::listen::Peers { uids, cids },
            server_addr,
            log_level,
            log_format,
            shutdown_timeout: Duration::from_secs(secs),
            run_dir,
            cgroup_parent,
            agent_cgroup,
            output_buffer,
            poweroff_on_destroy,
            sources: sources.into_iter().chain(from_found).collect(),
        })
    }
}

/// A count, or bytes with a binary K, M or G suffix.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.trim().char_indices().last()? {
        (i, 'K' | 'k') => (&s[..i], 1 << 10),
        (i, 'M' | 'm') => (&s[..i], 1 << 20),
        (i, 'G' | 'g') => (&s[..i], 1 << 30),
        _ => (s.trim(), 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_level(s: &str) -> Option<slog::Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "critical" | "fatal" | "panic" => slog::Level::Critical,
        "error" => slog::Level::Error,
        "warn" | "warning" => slog::Level::Warning,
        "info" => slog::Level::Info,
        "debug" => slog::Level::Debug,
        "trace" => slog::Level::Trace,
        _ => return None,
    })
}

/// Which kernel command line to read, if any: the one named by
/// `--cmdline-file`/`$BOSUN_CMDLINE_FILE`, else /proc/cmdline when bosun is
/// PID 1 (in a guest), else none: outside a guest, the host's command line
/// is not the agent's configuration.
pub fn cmdline_source(
    flags: &HashMap<&'static str, String>,
    env: &dyn Fn(&str) -> Option<String>,
    is_pid1: bool,
) -> Option<PathBuf> {
    flags
        .get("cmdline-file")
        .cloned()
        .or_else(|| env("BOSUN_CMDLINE_FILE"))
        .map(PathBuf::from)
        .or_else(|| is_pid1.then(|| PathBuf::from("/proc/cmdline")))
}

/// Reads the command line chosen by `cmdline_source`.
pub fn read_cmdline(path: &std::path::Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Cmdline {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (flags, environment, expected)
    type Case<'a, T> = (&'a [&'a str], &'a [(&'a str, &'a str)], T);
    /// (flags, environment, kernel command line, expected address)
    type Precedence<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], Option<&'a str>, &'a str);

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn resolve(flags: &[&str], env: &[(&str, &str)], cmdline: Option<&str>) -> Result<Config, ConfigError> {
        let (_, f) = parse_flags(&args(flags))?;
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lower = cmdline.map(|c| Lower::Cmdline(c.to_string())).unwrap_or_default();
        Config::resolve(&f, &|k| env.get(k).cloned(), &lower, &FoundFiles::default())
    }

    #[test]
    fn a_configuration_file_stands_where_the_command_line_would() {
        let path = std::path::Path::new("/etc/agent-config.toml");
        let text = "server_addr = \"unix:///run/kata-containers/agent.sock\"\nguest_components_procs = \"none\"\nlog_level = \"debug\"\nmax_connections = 64\n";
        let file = KataFile::parse(path, text).unwrap();
        let (_, f) = parse_flags(&args(&["-c", "/etc/agent-config.toml"])).unwrap();
        assert_eq!(f.get("config").map(String::as_str), Some("/etc/agent-config.toml"));
        let lower = Lower::File(file);
        let none: HashMap<String, String> = HashMap::new();
        let c = Config::resolve(&f, &|k| none.get(k).cloned(), &lower, &FoundFiles::default()).unwrap();
        assert_eq!(c.server_addr.to_string(), "unix:///run/kata-containers/agent.sock");
        assert_eq!(c.log_level, slog::Level::Debug);
        assert_eq!(c.limits.max_connections, 64);
        assert!(c.notes.iter().any(|n| n.starts_with("guest_components_procs")));
        // The Kata agent's environment overrides, as with the Kata agent; a flag still wins.
        let env: HashMap<String, String> =
            [("KATA_AGENT_SERVER_ADDR".to_string(), "unix:///e.sock".to_string())].into();
        let c = Config::resolve(&f, &|k| env.get(k).cloned(), &lower, &FoundFiles::default()).unwrap();
        assert_eq!(c.server_addr.to_string(), "unix:///e.sock");
        let (_, f2) = parse_flags(&args(&["--server-addr", "unix:///f.sock"])).unwrap();
        let c = Config::resolve(&f2, &|k| env.get(k).cloned(), &lower, &FoundFiles::default()).unwrap();
        assert_eq!(c.server_addr.to_string(), "unix:///f.sock");
        // A bad value names the file and its line.
        let bad = KataFile::parse(path, "log_level = \"debug\"\nhotplug_timeout = \"soon\"\n").unwrap();
        let e = Config::resolve(&f, &|k| none.get(k).cloned(), &Lower::File(bad), &FoundFiles::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/agent-config.toml line 2"), "{e}");
    }

    #[test]
    fn precedence_flag_env_cmdline_default() {
        let cl = Some("quiet agent.server_addr=unix:///c.sock agent.log=debug");
        let env = [
            ("BOSUN_SERVER_ADDR", "unix:///e.sock"),
            ("KATA_AGENT_SERVER_ADDR", "unix:///k.sock"),
        ];
        let cases: &[Precedence] = &[
            (&["--server-addr", "unix:///f.sock"], &env, cl, "unix:///f.sock"),
            (&["--server-addr=unix:///f.sock"], &env, cl, "unix:///f.sock"),
            (&[], &env, cl, "unix:///e.sock"),
            (&[], &env[1..], cl, "unix:///k.sock"),
            (&[], &[], cl, "unix:///c.sock"),
            (&[], &[], None, "vsock://-1:1024"),
        ];
        for (i, (f, e, c, want)) in cases.iter().enumerate() {
            let cfg = resolve(f, e, *c).unwrap_or_else(|err| panic!("test[{i}]: {err}"));
            assert_eq!(cfg.server_addr.to_string(), *want, "test[{i}]");
        }
        let cfg = resolve(&[], &[], cl).unwrap();
        assert_eq!(cfg.log_level, slog::Level::Debug);
        assert!(cfg.sources.contains(&("log-level", "agent.log".to_string())));
        let cfg = resolve(&["--log-level", "warn"], &[("KATA_AGENT_LOG_LEVEL", "trace")], cl).unwrap();
        assert_eq!(cfg.log_level, slog::Level::Warning);
        let cfg = resolve(&[], &[("KATA_AGENT_LOG_LEVEL", "trace")], cl).unwrap();
        assert_eq!(cfg.log_level, slog::Level::Trace);
    }

    #[test]
    fn peers_from_every_source() {
        let c = resolve(&[], &[], None).unwrap();
        assert_eq!(c.peers, crate::transport::listen::Peers::host_only());
        let c = resolve(&["--allow-uids", "0, 1000"], &[], Some("agent.allow_cids=any")).unwrap();
        assert_eq!(c.peers.uids, Some(vec![0, 1000]));
        assert_eq!(c.peers.cids, None);
        let c = resolve(&[], &[("BOSUN_ALLOW_CIDS", "2,3")], Some("agent.allow_cids=any")).unwrap();
        assert_eq!(c.peers.cids, Some(vec![2, 3]), "env before the kernel command line");
    }

    #[test]
    fn invalid_values_are_named() {
        let cases: &[Case<&str>] = &[
            (&["--server-addr", "tcp://1:2"], &[], "server-addr"),
            (&["--server-addr", "hvsock:///x:1"], &[], "server-addr"),
            (&[], &[("BOSUN_LOG_LEVEL", "loud")], "log-level"),
            (&["--log-format", "xml"], &[], "log-format"),
            (&["--shutdown-timeout", "-1"], &[], "shutdown-timeout"),
            (&["--output-buffer", "100"], &[], "output-buffer"),
            (&["--output-buffer", "1G"], &[], "output-buffer"),
            (&["--shutdown-timeout", "99999"], &[], "shutdown-timeout"),
            (&["--run-dir", "relative/dir"], &[], "run-dir"),
            (&["--cgroup-parent", "../x"], &[], "cgroup-parent"),
            (&[], &[("BOSUN_RUN_DIR", "/run/../etc")], "run-dir"),
            (&["--allow-uids", "root"], &[], "allow-uids"),
            (&["--allow-uids", ""], &[], "allow-uids"),
            (&[], &[("BOSUN_ALLOW_CIDS", "2,x")], "allow-cids"),
            (&["--image-dir", "images"], &[], "image-dir"),
            (&["--insecure-registries", "a/b"], &[], "insecure-registries"),
            (
                &["--registry-auth-file", "/nonexistent/auth.json"],
                &[],
                "registry-auth-file",
            ),
            (&["--registry-timeout", "0"], &[], "registry-timeout"),
            (&["--worker-threads", "0"], &[], "worker-threads"),
            (&[], &[("BOSUN_WORKER_THREADS", "many")], "worker-threads"),
        ];
        for (i, (f, e, opt)) in cases.iter().enumerate() {
            match resolve(f, e, None) {
                Err(ConfigError::InvalidValue { option, .. }) => {
                    assert_eq!(option, *opt, "test[{i}]")
                }
                other => panic!("test[{i}]: expected InvalidValue for {opt}, got {other:?}"),
            }
        }
        assert_eq!(
            resolve(&["--nope"], &[], None).unwrap_err(),
            ConfigError::UnknownFlag("--nope".into())
        );
        assert_eq!(
            resolve(&["--log-level"], &[], None).unwrap_err(),
            ConfigError::MissingValue("log-level".into())
        );
        assert_eq!(
            resolve(&["serve"], &[], None).unwrap_err(),
            ConfigError::UnknownFlag("serve".into())
        );
    }

    #[test]
    fn image_store_and_registries() {
        let c = resolve(&["--run-dir", "/r"], &[], None).unwrap();
        assert_eq!(c.image_dir, PathBuf::from("/r/images"), "under the run dir by default");
        assert!(c.registry.insecure.is_empty() && c.registry.auths.is_empty());
        assert_eq!(c.registry.stall_timeout, Duration::from_secs(30));
        let c = resolve(
            &["--image-dir", "/disk/images"],
            &[],
            Some("agent.insecure_registries=10.0.2.100:5000,r.local agent.registry_timeout=5"),
        )
        .unwrap();
        assert_eq!(c.image_dir, PathBuf::from("/disk/images"));
        assert_eq!(
            c.registry.insecure,
            vec!["10.0.2.100:5000".to_string(), "r.local".into()]
        );
        assert_eq!(c.registry.stall_timeout, Duration::from_secs(5));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth.json");
        std::fs::write(&f, r#"{"auths":{"r.local":{"username":"u","password":"p"}}}"#).unwrap();
        let c = resolve(&[], &[("BOSUN_REGISTRY_AUTH_FILE", f.to_str().unwrap())], None).unwrap();
        assert_eq!(c.registry.auths["r.local"].user, "u");
    }

    /// The pod VM's files stand in only for settings given no other way.
    #[test]
    fn pod_vm_files_are_the_last_word_before_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let found = dir.path().join("peerpod-auth.json");
        std::fs::write(&found, r#"{"auths":{"found.local":{"username":"u","password":"p"}}}"#).unwrap();
        let given = dir.path().join("given.json");
        std::fs::write(&given, r#"{"auths":{"given.local":{"username":"g","password":"p"}}}"#).unwrap();
        let podvm = FoundFiles {
            auth_file: Some(found.clone()),
            image_mount: Some(PathBuf::from("/run/kata-containers/image")),
            registries_conf: Some(dir.path().join("registries.conf")),
            policy_file: Some(PathBuf::from("/etc/kata-opa/default-policy.rego")),
            initdata: Some(PathBuf::from(
                "/sys/firmware/qemu_fw_cfg/by_name/opt/io.katacontainers.initdata/raw",
            )),
        };
        std::fs::write(
            dir.path().join("registries.conf"),
            "[[registry]]\nprefix = \"docker.io\"\n[[registry.mirror]]\nlocation = \"m.local:5000\"\ninsecure = true\n",
        )
        .unwrap();
        let at = |flags: &[&str]| {
            let (_, f) = parse_flags(&args(flags)).unwrap();
            Config::resolve(&f, &|_| None, &Lower::None, &podvm).unwrap()
        };
        let c = at(&[]);
        // Found, not asked for: initdata's policy may stand in for it.
        assert!(!c.policy_explicit && c.initdata.is_some());
        assert!(
            c.registry.auths.contains_key("found.local"),
            "{:?}",
            c.registry.auths.keys()
        );
        assert_eq!(c.image_dir, PathBuf::from("/run/kata-containers/image"));
        assert!(c
            .sources
            .iter()
            .any(|(k, s)| *k == "registry-auth-file" && s.contains("pod VM")));
        assert!(
            c.registry.insecure.contains(&"m.local:5000".to_string()),
            "{:?}",
            c.registry.insecure
        );
        let c = at(&[
            "--registry-auth-file",
            given.to_str().unwrap(),
            "--image-dir",
            "/disk",
            "--registries-conf",
            "none",
            "--policy-file",
            "none",
        ]);
        assert_eq!(c.policy_file, None);
        assert!(c.policy_explicit, "--policy-file none is asked for");
        assert!(c.registry.insecure.is_empty() && c.registry.mirrors == Default::default());
        assert!(c.registry.auths.contains_key("given.local") && !c.registry.auths.contains_key("found.local"));
        assert_eq!(c.image_dir, PathBuf::from("/disk"));
        // A bad pod-VM file is a start-up error naming it, as a bad flag is.
        std::fs::write(&found, "{").unwrap();
        let (_, f) = parse_flags(&args(&[])).unwrap();
        let e = Config::resolve(&f, &|_| None, &Lower::None, &podvm).unwrap_err();
        assert!(e.to_string().contains("peerpod-auth.json"), "{e}");
    }

    #[test]
    fn cmdline_only_when_pid1_or_asked() {
        let none = |_: &str| None;
        let empty = HashMap::new();
        assert_eq!(cmdline_source(&empty, &none, false), None);
        assert_eq!(
            cmdline_source(&empty, &none, true),
            Some(PathBuf::from("/proc/cmdline"))
        );
        let (_, f) = parse_flags(&args(&["--cmdline-file", "/tmp/c"])).unwrap();
        assert_eq!(cmdline_source(&f, &none, false), Some(PathBuf::from("/tmp/c")));
        assert_eq!(
            parse_cmdline("a=b agent.log=debug agent.x"),
            HashMap::from([("agent.log".into(), "debug".into())])
        );
    }

    #[test]
    fn help_lists_every_option() {
        let u = usage();
        for o in OPTIONS {
            assert!(u.contains(&format!("--{}", o.flag)), "--{} missing from help", o.flag);
            for e in o.env {
                assert!(u.contains(e), "{e} missing from help");
            }
        }
        assert_eq!(parse_flags(&args(&["--help"])).unwrap().0, Action::Help);
    }
}
