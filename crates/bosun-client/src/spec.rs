//! Building Kata-style requests: OCI specs for a rootfs and a command, as a
//! kata shim would send them. Used by bosunctl, the tests and the benchmark.

use std::path::Path;

use bosun_protocols::oci;

/// Environment every process gets unless the caller sets its own.
pub const DEFAULT_ENV: &[&str] = &[
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/",
    "TERM=xterm",
];

fn mount(dest: &str, ty: &str, src: &str, opts: &[&str]) -> oci::Mount {
    let mut m = oci::Mount::new();
    m.destination = dest.into();
    m.type_ = ty.into();
    m.source = src.into();
    m.options = opts.iter().map(|o| o.to_string()).collect();
    m
}

/// containerd's default capabilities (pkg/oci/spec.go), which every CRI
/// container gets and the Kata agent insists on.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A process running `args` in `/`, as root with containerd's default
/// capabilities.
pub fn process(args: &[String]) -> oci::Process {
    let mut p = oci::Process::new();
    p.Args = args.to_vec();
    p.Env = DEFAULT_ENV.iter().map(|e| e.to_string()).collect();
    p.Cwd = "/".into();
    let caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    let mut c = oci::LinuxCapabilities::new();
    (c.Bounding, c.Effective, c.Permitted) = (caps.clone(), caps.clone(), caps);
    p.Capabilities = Some(c).into();
    p.User = Some(oci::User::new()).into();
    p
}

/// A container spec: `args` in `rootfs` (empty for none), with the usual
/// /proc, /dev, /dev/pts and /dev/shm mounts of `runc spec`.
pub fn container(rootfs: Option<&Path>, args: &[String]) -> oci::Spec {
    let mut s = oci::Spec::new();
    s.Version = "1.1.0".into();
    s.Process = Some(process(args)).into();
    let mut r = oci::Root::new();
    r.Path = rootfs.map(|p| p.display().to_string()).unwrap_or_default();
    s.Root = Some(r).into();
    let mut linux = oci::Linux::new();
    // The paths runc and containerd hide or protect by default.
    linux.MaskedPaths = [
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
    ]
    .map(String::from)
    .to_vec();
    linux.ReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        .map(String::from)
        .to_vec();
    // As the runtimes send them (runtime-rs's amend_spec, the Go runtime's
    // constrainGRPCSpec): no network namespace (the pod's is the guest's),
    // no paths; the Kata agent refuses a spec without a mount namespace.
    linux.Namespaces = ["ipc", "uts", "mount"]
        .iter()
        .map(|t| {
            let mut n = oci::LinuxNamespace::new();
            n.Type = t.to_string();
            n
        })
        .collect();
    s.Linux = Some(linux).into();
    s.Mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    s
}

/// The spec of an OCI bundle directory; `args`, when given, replace its
/// process arguments.
pub fn bundle_spec(bundle: &Path, args: &[String]) -> Result<oci::Spec, String> {
    let mut s = bosun_protocols::bundle::load(bundle)?;
    if !args.is_empty() {
        if let Some(p) = s.Process.as_mut() {
            p.Args = args.to_vec();
        }
    }
    Ok(s)
}

/// The pause container's spec, marked as kata shims mark it.
pub fn pause(rootfs: Option<&Path>) -> oci::Spec {
    let mut s = container(rootfs, &["/pause".to_string()]);
    s.Annotations
        .insert(bosun::container::CONTAINER_TYPE_ANNOTATION.into(), "sandbox".into());
    s
}

/// `/pause` of the busybox rootfs (needs `sh` and `sleep` applets).
pub const PAUSE_SCRIPT: &str = "#!/bin/sh\ntrap 'exit 0' TERM\nsleep 2147483647 & wait\n";

/// The machine's static busybox, for test rootfs and images.
pub fn busybox_binary() -> std::io::Result<&'static Path> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no static busybox (apt-get install busybox-static)",
            )
        })
}

/// Builds a minimal rootfs in `dir/rootfs`: the machine's static busybox and
/// symlinks for `applets`. For the demo, the benchmark, the conformance
/// suite and the tests.
pub fn busybox_rootfs(dir: &Path, applets: &[&str]) -> std::io::Result<std::path::PathBuf> {
    let root = dir.join("rootfs");
    for d in ["bin", "proc", "dev", "etc", "tmp", "sys"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(busybox_binary()?, root.join("bin/busybox"))?;
    // A pause image's /pause (runtimes' pause specs run it): sleeps, and
    // exits on SIGTERM as the real one does.
    std::fs::write(root.join("pause"), PAUSE_SCRIPT)?;
    std::fs::set_permissions(root.join("pause"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    for a in applets {
        let link = root.join("bin").join(a);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    Ok(root)
}

/// Where runtime-rs has the guest mount a pulled image (virtual_volume.rs:
/// `/run/kata-containers/<cid>/rootfs`).
pub fn guest_pull_mount_point(cid: &str) -> String {
    format!("/run/kata-containers/{cid}/rootfs")
}

/// A CreateContainer with an image pulled in the guest, as runtime-rs
/// sends it in remote-hypervisor mode (resource/src/rootfs/
/// virtual_volume.rs): one `image_guest_pull` storage whose source is the
/// image (`pause` for the sandbox container), whose driver option carries
/// the container's annotations as `{"metadata": …}`, fstype overlay, at
/// the mount point that is also the OCI root.
pub fn guest_pull_request(
    cid: &str,
    image: &str,
    mut s: oci::Spec,
    sandbox: bool,
) -> bosun_protocols::agent::CreateContainerRequest {
    let mp = guest_pull_mount_point(cid);
    let kind = if sandbox { "sandbox" } else { "container" };
    s.Annotations
        .insert(bosun::container::CONTAINER_TYPE_ANNOTATION.into(), kind.into());
    s.Annotations
        .insert("io.kubernetes.cri.image-name".into(), image.into());
    s.Root.mut_or_insert_default().Path = mp.clone();
    let metadata: std::collections::BTreeMap<&String, &String> = s.Annotations.iter().collect();
    let mut st = bosun_protocols::agent::Storage::new();
    st.driver = "image_guest_pull".into();
    st.source = if sandbox { "pause".into() } else { image.into() };
    st.driver_options = vec![format!(
        "image_guest_pull={}",
        serde_json::json!({ "metadata": metadata })
    )];
    st.fstype = "overlay".into();
    st.mount_point = mp;
    let mut r = bosun_protocols::agent::CreateContainerRequest::new();
    r.container_id = cid.into();
    r.exec_id = cid.into();
    r.OCI = Some(s).into();
    r.storages = vec![st];
    r
}
