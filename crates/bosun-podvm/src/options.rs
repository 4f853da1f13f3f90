//! `bosun-podvm`'s flags: one table serves parsing, the environment and
//! `--help` (flag > environment > default).

use std::path::PathBuf;
use std::time::Duration;

/// One flag.
struct Flag {
    name: &'static str,
    env: &'static str,
    default: &'static str,
    help: &'static str,
}

const FLAGS: &[Flag] = &[
    Flag {
        name: "listen",
        env: "BOSUN_PODVM_LISTEN",
        default: "/run/peerpod/hypervisor.sock",
        help: "the unix socket the shim calls (runtime-rs remote_hypervisor_socket)",
    },
    Flag {
        name: "kernel",
        env: "BOSUN_PODVM_KERNEL",
        default: "",
        help: "the guest kernel (make guest-image: guest-image/out/vmlinuz) [required]",
    },
    Flag {
        name: "initrd",
        env: "BOSUN_PODVM_INITRD",
        default: "",
        help: "the guest initramfs with bosun as init (guest-image/out/initrd.gz) [required]",
    },
    Flag {
        name: "state-dir",
        env: "BOSUN_PODVM_STATE_DIR",
        default: "/run/bosun-podvm",
        help: "one directory per VM: its record, agent socket, vsock sockets, console log",
    },
    Flag {
        name: "append",
        env: "BOSUN_PODVM_APPEND",
        default: "",
        help: "more kernel command line (e.g. agent.log=debug), after bosun-podvm's own",
    },
    Flag {
        name: "accel",
        env: "BOSUN_PODVM_ACCEL",
        default: "tcg",
        help: "tcg or kvm (QEMU -accel)",
    },
    Flag {
        name: "memory",
        env: "BOSUN_PODVM_MEMORY",
        default: "512",
        help: "guest memory in MiB when the pod's annotation default_memory does not say",
    },
    Flag {
        name: "vcpus",
        env: "BOSUN_PODVM_VCPUS",
        default: "1",
        help: "guest vCPUs when the pod's annotation default_vcpus does not say",
    },
    Flag {
        name: "boot-timeout",
        env: "BOSUN_PODVM_BOOT_TIMEOUT",
        default: "120",
        help: "seconds StartVM waits for the agent to answer Check",
    },
    Flag {
        name: "qemu",
        env: "BOSUN_PODVM_QEMU",
        default: "qemu-system-x86_64",
        help: "the QEMU binary",
    },
    Flag {
        name: "vhost-vsock",
        env: "BOSUN_PODVM_VHOST_VSOCK",
        default: "vhost-device-vsock",
        help: "the vhost-user vsock backend (cargo install vhost-device-vsock)",
    },
    Flag {
        name: "log-level",
        env: "BOSUN_PODVM_LOG_LEVEL",
        default: "info",
        help: "critical, error, warn, info, debug or trace",
    },
];

/// QEMU's accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The parsed options.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub state_dir: PathBuf,
    pub append: String,
    pub accel: Accel,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub boot_timeout: Duration,
    pub qemu: String,
    pub vhost_vsock: String,
    pub log_level: slog::Level,
}

/// What the command line asked.
pub enum Parsed {
    Run(Box<Options>),
    Help(String),
}

pub fn help() -> String {
    let mut s = String::from(
        "bosun-podvm: a remote hypervisor service for Kata's remote mode: boots a QEMU VM with bosun inside per pod\n\n\
         USAGE:\n    bosun-podvm --kernel FILE --initrd FILE [FLAGS]\n\nFLAGS (flag > environment > default):\n",
    );
    for f in FLAGS {
        s += &format!("    --{} <value>\n        {}\n        env: {}\n", f.name, f.help, f.env);
        if !f.default.is_empty() {
            s += &format!("        default: {}\n", f.default);
        }
    }
    s
}

/// Parses `args` (without the program name), reading the environment
/// through `env`.
pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Parsed, String> {
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Ok(Parsed::Help(help()));
        }
        let (name, inline) = match a.strip_prefix("--") {
            Some(n) => match n.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (n, None),
            },
            None => return Err(format!("unexpected argument {a:?} (see --help)")),
        };
        let flag = FLAGS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| format!("unknown flag --{name} (see --help)"))?;
        let v = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or_else(|| format!("--{name} needs a value"))?,
        };
        given.push((flag.name, v));
    }
    let get = |name: &str| -> String {
        let f = FLAGS.iter().find(|f| f.name == name).expect("a flag of the table");
        given
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| env(f.env))
            .unwrap_or_else(|| f.default.to_string())
    };
    let number = |name: &str, lo: u64, hi: u64| -> Result<u64, String> {
        let v = get(name);
        match v.parse::<u64>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(format!("--{name}: {v:?} is not a number from {lo} to {hi}")),
        }
    };
    let required = |name: &str| -> Result<PathBuf, String> {
        let v = get(name);
        if v.is_empty() {
            return Err(format!("--{name} is required (see --help)"));
        }
        Ok(PathBuf::from(v))
    };
    let accel = match get("accel").as_str() {
        "tcg" => Accel::Tcg,
        "kvm" => Accel::Kvm,
        other => return Err(format!("--accel: {other:?} is not tcg or kvm")),
    };
    let log_level = match get("log-level").as_str() {
        "critical" => slog::Level::Critical,
        "error" => slog::Level::Error,
        "warn" => slog::Level::Warning,
        "info" => slog::Level::Info,
        "debug" => slog::Level::Debug,
        "trace" => slog::Level::Trace,
        other => return Err(format!("--log-level: {other:?} is not a level")),
    };
    Ok(Parsed::Run(Box::new(Options {
        listen: PathBuf::from(get("listen")),
        kernel: required("kernel")?,
        initrd: required("initrd")?,
        state_dir: PathBuf::from(get("state-dir")),
        append: get("append"),
        accel,
        memory_mib: number("memory", 64, 1 << 20)? as u32,
        vcpus: number("vcpus", 1, 256)? as u32,
        boot_timeout: Duration::from_secs(number("boot-timeout", 1, 3600)?),
        qemu: get("qemu"),
        vhost_vsock: get("vhost-vsock"),
        log_level,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match parse(&args, &|k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help(_) => Err("help".into()),
        }
    }

    #[test]
    fn flag_over_environment_over_default() {
        let o = run(
            &["--kernel", "k", "--initrd=i", "--memory", "256"],
            &[("BOSUN_PODVM_MEMORY", "1024"), ("BOSUN_PODVM_VCPUS", "2")],
        )
        .unwrap();
        assert_eq!(o.memory_mib, 256);
        assert_eq!(o.vcpus, 2);
        assert_eq!(o.listen, PathBuf::from("/run/peerpod/hypervisor.sock"));
        assert_eq!(o.accel, Accel::Tcg);
        assert_eq!(o.initrd, PathBuf::from("i"));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(run(&[], &[]).unwrap_err().contains("--kernel is required"));
        let e = run(&["--kernel", "k", "--initrd", "i", "--accel", "hvf"], &[]).unwrap_err();
        assert!(e.contains("--accel"), "{e}");
        let e = run(&["--kernel", "k", "--initrd", "i", "--vcpus", "0"], &[]).unwrap_err();
        assert!(e.contains("--vcpus"), "{e}");
        assert!(run(&["--nope", "x"], &[]).unwrap_err().contains("unknown flag --nope"));
    }

    #[test]
    fn help_lists_every_flag() {
        let h = help();
        for f in FLAGS {
            assert!(h.contains(&format!("--{}", f.name)) && h.contains(f.env), "{}", f.name);
        }
    }
}
