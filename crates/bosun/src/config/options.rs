//! Every setting the agent reads, with its flag, environment variables,
//! kernel command-line key and default: one table, from which `--help` is
//! printed so that it cannot drift.

/// One setting and every place it can come from.
pub struct OptionSpec {
    /// Long flag without dashes.
    pub flag: &'static str,
    /// Environment variables, highest priority first.
    pub env: &'static [&'static str],
    /// Kernel command-line key.
    pub cmdline: Option<&'static str>,
    /// Default value, if any.
    pub default: Option<&'static str>,
    /// One-line help.
    pub help: &'static str,
}

/// Every setting the agent reads.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        flag: "server-addr",
        env: &["BOSUN_SERVER_ADDR", "KATA_AGENT_SERVER_ADDR"],
        cmdline: Some("agent.server_addr"),
        default: Some("vsock://-1:1024"),
        help: "listen address: vsock://-1:PORT, unix:///path or unix://@name",
    },
    OptionSpec {
        flag: "log-level",
        env: &["BOSUN_LOG_LEVEL", "KATA_AGENT_LOG_LEVEL"],
        cmdline: Some("agent.log"),
        default: Some("info"),
        help: "critical, error, warn, info, debug or trace",
    },
    OptionSpec {
        flag: "log-format",
        env: &["BOSUN_LOG_FORMAT"],
        cmdline: Some("agent.log_format"),
        default: Some("json"),
        help: "json (one object a line) or text (key=value)",
    },
    OptionSpec {
        flag: "shutdown-timeout",
        env: &["BOSUN_SHUTDOWN_TIMEOUT"],
        cmdline: Some("agent.shutdown_timeout"),
        default: Some("5"),
        help: "seconds in-flight calls get to finish after SIGTERM",
    },
    OptionSpec {
        flag: "run-dir",
        env: &["BOSUN_RUN_DIR"],
        cmdline: Some("agent.run_dir"),
        default: Some("/run/bosun"),
        help: "directory for container run state; bosun only ever deletes what it created there",
    },
    OptionSpec {
        flag: "cgroup-parent",
        env: &["BOSUN_CGROUP_PARENT"],
        cmdline: Some("agent.cgroup_parent"),
        default: Some("bosun"),
        help: "cgroup (under bosun's own) that holds the containers' cgroups",
    },
    OptionSpec {
        flag: "output-buffer",
        env: &["BOSUN_OUTPUT_BUFFER"],
        cmdline: Some("agent.output_buffer"),
        default: Some("1048576"),
        help: "bytes of a process's stdout (and of its stderr) kept for the runtime while nobody reads, bosun is down or restarting: the capacity of its pipe, 4096 to 67108864 (over /proc/sys/fs/pipe-max-size needs CAP_SYS_RESOURCE, else that size); past it the process waits for a reader, nothing is dropped",
    },
    OptionSpec {
        flag: "agent-cgroup",
        env: &["BOSUN_AGENT_CGROUP"],
        cmdline: Some("agent.agent_cgroup"),
        default: None,
        help: "cgroup (under bosun's own, beside --cgroup-parent) bosun moves itself into, with ten times the default CPU weight, so a saturated guest still answers the runtime; none: stay [default: none]",
    },
    OptionSpec {
        flag: "poweroff-on-destroy",
        env: &["BOSUN_POWEROFF_ON_DESTROY"],
        cmdline: Some("agent.poweroff_on_destroy"),
        default: Some("false"),
        help: "as a guest's PID 1, power the VM off after a successful DestroySandbox: true, false, or a sandbox id (only that sandbox's)",
    },
    OptionSpec {
        flag: "pause-bundle",
        env: &["BOSUN_PAUSE_BUNDLE"],
        cmdline: Some("agent.pause_bundle"),
        default: Some("/pause_bundle"),
        help: "the pod VM's pause bundle (config.json + rootfs/) for a sandbox container pulled as \"pause\"; without it, bosun's built-in pause",
    },
    OptionSpec {
        flag: "image-dir",
        env: &["BOSUN_IMAGE_DIR"],
        cmdline: Some("agent.image_dir"),
        default: None,
        help: "the image store for image_guest_pull (layers, containers' writable parts); put it on a disk rather than RAM for big images [default: RUN_DIR/images]",
    },
    OptionSpec {
        flag: "insecure-registries",
        env: &["BOSUN_INSECURE_REGISTRIES"],
        cmdline: Some("agent.insecure_registries"),
        default: Some(""),
        help: "registries (host[:port], comma list) pulled from in plain HTTP; every other one over HTTPS with the system's CA roots",
    },
    OptionSpec {
        flag: "registry-auth-file",
        env: &["BOSUN_REGISTRY_AUTH_FILE"],
        cmdline: Some("agent.registry_auth_file"),
        default: None,
        help: "registry credentials, a docker config.json ({\"auths\": {HOST: {\"auth\": base64(user:password)}}}); read at start, never logged",
    },
    OptionSpec {
        flag: "policy-file",
        env: &["BOSUN_POLICY_FILE", "KATA_AGENT_POLICY_FILE"],
        cmdline: Some("agent.policy_file"),
        default: None,
        help: "the agent policy (Rego, package agent_policy) every request is checked against at start; SetPolicy replaces it, and after a restart the policy in force before holds; none: no policy [default: /etc/kata-opa/default-policy.rego when it exists, else every request allowed]",
    },
    OptionSpec {
        flag: "initdata",
        env: &["BOSUN_INITDATA"],
        cmdline: Some("agent.initdata"),
        default: None,
        help: "the pod's initdata (Kata's cc_init_data: TOML with [data] files, gzip'd and/or base64'd); its policy.rego is the agent policy at start unless a policy file is asked for [default: QEMU's fw_cfg opt/io.katacontainers.initdata when bosun is the guest's init]",
    },
    OptionSpec {
        flag: "registries-conf",
        env: &["BOSUN_REGISTRIES_CONF"],
        cmdline: Some("agent.registries_conf"),
        default: None,
        help: "registries' mirrors and blocks, a containers-registries.conf(5) version 2 file ([[registry]] prefix, location, insecure, blocked, [[registry.mirror]]); none for no file [default: /etc/containers/registries.conf when it exists]",
    },
    OptionSpec {
        flag: "registry-timeout",
        env: &["BOSUN_REGISTRY_TIMEOUT"],
        cmdline: Some("agent.registry_timeout"),
        default: Some("30"),
        help: "seconds a registry may stay silent (connect, answer, mid-transfer) before the pull fails UNAVAILABLE",
    },
    OptionSpec {
        flag: "allow-uids",
        env: &["BOSUN_ALLOW_UIDS"],
        cmdline: Some("agent.allow_uids"),
        default: Some("0"),
        help: "on a unix socket, the peer uids (SO_PEERCRED) served: a comma list, or any; others are closed at accept",
    },
    OptionSpec {
        flag: "allow-cids",
        env: &["BOSUN_ALLOW_CIDS"],
        cmdline: Some("agent.allow_cids"),
        default: Some("2"),
        help: "on vsock, the peer CIDs served (2: the host): a comma list, or any; a container reaching the agent over vsock loopback is closed at accept",
    },
    OptionSpec {
        flag: "worker-threads",
        env: &["BOSUN_WORKER_THREADS"],
        cmdline: Some("agent.worker_threads"),
        default: Some("auto"),
        help: "threads serving requests: a number (1 to 64), or auto (the guest's CPUs, at most 4)",
    },
    OptionSpec {
        flag: "max-connections",
        env: &["BOSUN_MAX_CONNECTIONS"],
        cmdline: Some("agent.max_connections"),
        default: Some("256"),
        help: "connections served at once (1 to 65536); more are closed at accept and logged",
    },
    OptionSpec {
        flag: "max-pending-requests",
        env: &["BOSUN_MAX_PENDING_REQUESTS"],
        cmdline: Some("agent.max_pending_requests"),
        default: Some("1024"),
        help: "requests one connection may have unanswered, long polls included (1 to 65536); past it the connection is not read until answers go out",
    },
    OptionSpec {
        flag: "max-pending-total",
        env: &["BOSUN_MAX_PENDING_TOTAL"],
        cmdline: Some("agent.max_pending_total"),
        default: Some("4096"),
        help: "the same over every connection (1 to 1048576)",
    },
    OptionSpec {
        flag: "max-buffered-bytes",
        env: &["BOSUN_MAX_BUFFERED_BYTES"],
        cmdline: Some("agent.max_buffered_bytes"),
        default: Some("64M"),
        help: "bytes of incomplete requests held over every connection (a number, or with K, M or G); a frame past it closes its connection",
    },
    OptionSpec {
        flag: "frame-timeout",
        env: &["BOSUN_FRAME_TIMEOUT"],
        cmdline: Some("agent.frame_timeout"),
        default: Some("30"),
        help: "seconds a request frame may stay incomplete once begun (1 to 3600); then its connection is closed",
    },
    OptionSpec {
        flag: "hotplug-timeout",
        env: &["BOSUN_HOTPLUG_TIMEOUT"],
        cmdline: Some("agent.hotplug_timeout"),
        default: Some("10"),
        help: "seconds a hot-plugged device (a disk by PCI path or SCSI address) may take to appear",
    },
    OptionSpec {
        flag: "image-pull-timeout",
        env: &["BOSUN_IMAGE_PULL_TIMEOUT"],
        cmdline: Some("agent.image_pull_timeout"),
        default: Some("1200"),
        help: "seconds one image pull may take in all (the Kata agent's default); the request's own deadline, when shorter, comes first",
    },
    OptionSpec {
        flag: "https-proxy",
        env: &["BOSUN_HTTPS_PROXY", "HTTPS_PROXY", "https_proxy"],
        cmdline: Some("agent.https_proxy"),
        default: None,
        help: "proxy for registries, http://[user:password@]host:port: HTTPS through CONNECT, plain HTTP by absolute URL",
    },
    OptionSpec {
        flag: "no-proxy",
        env: &["BOSUN_NO_PROXY", "NO_PROXY", "no_proxy"],
        cmdline: Some("agent.no_proxy"),
        default: Some(""),
        help: "registries reached directly: a comma list of hosts, .domain suffixes, IPs or CIDRs, or *",
    },
    OptionSpec {
        flag: "config",
        env: &[],
        cmdline: Some("agent.config_file"),
        default: None,
        help: "a configuration file in the Kata agent's format (TOML: server_addr, log_level, https_proxy, ...; bosun's own settings by flag name); with it, the kernel command line is not read. Also -c FILE",
    },
    OptionSpec {
        flag: "cmdline-file",
        env: &["BOSUN_CMDLINE_FILE"],
        cmdline: None,
        default: None,
        help: "read agent.* keys from this file (/proc/cmdline is read by default only when bosun is PID 1)",
    },
];

/// The `--help` text.
pub fn usage() -> String {
    let mut s = String::from("bosun: in-guest agent for VM-isolated pods (Kata agent protocol over ttrpc)\n\nUSAGE:\n    bosun [FLAGS]\n    bosun --help | --version\n\nFLAGS (flag > environment > kernel command line > default):\n");
    for o in OPTIONS {
        s += &format!("    --{} <value>\n        {}\n", o.flag, o.help);
        if !o.env.is_empty() {
            s += &format!("        env: {}\n", o.env.join(", "));
        }
        if let Some(k) = o.cmdline {
            s += &format!("        kernel command line: {k}=\n");
        }
        if let Some(d) = o.default {
            s += &format!("        default: {d}\n");
        }
    }
    s + "\nExit codes: 0 clean shutdown, 1 runtime failure (address in use, ...), 2 bad configuration.\n"
}
