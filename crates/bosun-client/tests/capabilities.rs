//! Capability sets as real runtimes send them, applied to a container's
//! init and checked from inside it (/proc/self/status).
//!
//! containerd's default set (14 capabilities in bounding, effective and
//! permitted; no inheritable, no ambient) is what every CRI container
//! gets; Kata's Rust conversion (runtime-rs, kata-agent-ctl) sends the
//! names without `CAP_`, the Go runtime with it.

mod common;

use std::str::FromStr;

use common::pod::{self, Pod};

/// containerd's default capabilities (pkg/oci/spec.go defaultUnixCaps).
const CONTAINERD_DEFAULT: &[&str] = bosun_client::spec::DEFAULT_CAPS;

#[derive(Clone, Copy, Debug)]
enum Names {
    /// `CAP_CHOWN` (Go runtime, OCI).
    Prefixed,
    /// `CHOWN` (Kata's Rust conversion).
    Bare,
    /// `chown`.
    Lower,
}

fn names(set: &[&str], how: Names) -> Vec<String> {
    set.iter()
        .map(|n| match how {
            Names::Prefixed => n.to_string(),
            Names::Bare => n.trim_start_matches("CAP_").to_string(),
            Names::Lower => n.trim_start_matches("CAP_").to_lowercase(),
        })
        .collect()
}

fn mask(set: &[&str]) -> u64 {
    set.iter()
        .map(|n| caps::Capability::from_str(n).expect("known capability").bitmask())
        .fold(0, |m, b| m | b)
}

/// The value of `key` in /proc/self/status output, as a bit mask.
fn status_mask(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {out}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[derive(Debug)]
struct Case {
    uid: u32,
    nnp: bool,
    names: Names,
    /// Ambient (and so inheritable) set: the only way a non-root process
    /// keeps capabilities across exec of a binary without file caps.
    ambient: &'static [&'static str],
}

/// What the kernel gives the process after execve (capabilities(7)):
/// root gets its bounding set (and inheritable) as permitted and
/// effective; any other uid only its ambient set.
fn expected(c: &Case) -> (u64, u64, u64) {
    let bnd = mask(CONTAINERD_DEFAULT);
    let amb = mask(c.ambient);
    let prm = if c.uid == 0 { bnd | amb } else { amb };
    (bnd, prm, prm)
}

#[test]
#[ignore = "needs root"]
fn containerd_default_set_for_root_and_a_user_with_every_spelling() {
    let (pod, rootfs) = pod::started("caps", false);
    let cases = [
        Case {
            uid: 0,
            nnp: false,
            names: Names::Prefixed,
            ambient: &[],
        },
        Case {
            uid: 0,
            nnp: true,
            names: Names::Bare,
            ambient: &[],
        },
        Case {
            uid: 0,
            nnp: true,
            names: Names::Lower,
            ambient: &[],
        },
        Case {
            uid: 1000,
            nnp: false,
            names: Names::Bare,
            ambient: &[],
        },
        Case {
            uid: 1000,
            nnp: true,
            names: Names::Prefixed,
            ambient: &[],
        },
        Case {
            uid: 1000,
            nnp: true,
            names: Names::Bare,
            ambient: &["CAP_NET_BIND_SERVICE", "CAP_CHOWN"],
        },
        Case {
            uid: 1000,
            nnp: false,
            names: Names::Lower,
            ambient: CONTAINERD_DEFAULT,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let id = format!("c{i}");
        run_case(&pod, &rootfs, &id, c, &format!("test[{i}]: {c:?}"));
    }
}

fn run_case(pod: &Pod, rootfs: &std::path::Path, id: &str, c: &Case, what: &str) {
    let mut spec = pod::spec(
        Some(rootfs),
        &["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; id -u"],
    );
    let p = spec.Process.as_mut().unwrap();
    let mut u = bosun_protocols::oci::User::new();
    (u.UID, u.GID) = (c.uid, c.uid);
    p.User = Some(u).into();
    p.NoNewPrivileges = c.nnp;
    let mut caps = bosun_protocols::oci::LinuxCapabilities::new();
    let default = names(CONTAINERD_DEFAULT, c.names);
    (caps.Bounding, caps.Effective, caps.Permitted) = (default.clone(), default.clone(), default);
    caps.Ambient = names(c.ambient, c.names);
    caps.Inheritable = caps.Ambient.clone();
    p.Capabilities = Some(caps).into();

    pod.create(id, spec).unwrap_or_else(|e| panic!("{what}: create: {e:?}"));
    pod.start_c(id).unwrap_or_else(|e| panic!("{what}: start: {e:?}"));
    let out = String::from_utf8(pod.read_all(id, id, false).unwrap()).unwrap();
    assert_eq!(pod.wait(id, id).unwrap(), 0, "{what}: {out}");
    let (bnd, prm, eff) = expected(c);
    assert_eq!(status_mask(&out, "CapBnd"), bnd, "{what}: CapBnd\n{out}");
    assert_eq!(status_mask(&out, "CapPrm"), prm, "{what}: CapPrm\n{out}");
    assert_eq!(status_mask(&out, "CapEff"), eff, "{what}: CapEff\n{out}");
    assert_eq!(status_mask(&out, "CapAmb"), mask(c.ambient), "{what}: CapAmb\n{out}");
    assert!(out.contains(&format!("NoNewPrivs:\t{}", c.nnp as u8)), "{what}: {out}");
    assert_eq!(out.lines().last(), Some(c.uid.to_string().as_str()), "{what}: {out}");
    pod.remove(id).unwrap();
}

#[test]
#[ignore = "needs root"]
fn an_unknown_capability_is_refused_by_name() {
    let (pod, rootfs) = pod::started("caps-bad", false);
    for (i, bad) in ["SYS_EVERYTHING", "CAP_", ""].iter().enumerate() {
        let mut spec = pod::spec(Some(&rootfs), &["true"]);
        let mut caps = bosun_protocols::oci::LinuxCapabilities::new();
        caps.Bounding = vec!["CHOWN".into(), bad.to_string()];
        spec.Process.as_mut().unwrap().Capabilities = Some(caps).into();
        let (code, msg) = pod.create("bad", spec).unwrap_err();
        assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "test[{i}]: {msg}");
        assert!(msg.contains(&format!("{bad:?}")), "test[{i}]: names the bad one: {msg}");
    }
    // Nothing was left by the refusals: the same id works.
    pod.create("bad", pod::spec(Some(&rootfs), &["true"])).unwrap();
}
