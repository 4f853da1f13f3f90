//! What bosun does as a guest's PID 1: the base filesystems, kernel
//! modules, and powering the VM off instead of exiting.

use std::ffi::CString;
use std::fs::File;
use std::path::Path;

use nix::errno::Errno;
use nix::kmod::{finit_module, ModuleInitFlags};
use nix::mount::MsFlags;

/// Mounts one base filesystem; an already-mounted target is fine.
fn base_mount(fstype: &str, target: &str, flags: MsFlags, data: Option<&str>) -> Result<(), String> {
    std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    match nix::mount::mount(Some(fstype), target, Some(fstype), flags, data) {
        Ok(()) | Err(Errno::EBUSY) => Ok(()),
        Err(e) => Err(format!("mount {fstype} on {target}: {e}")),
    }
}

/// /proc, /sys, /dev, /dev/pts, /dev/shm, /run, /tmp and the cgroup2
/// hierarchy, as an init must provide them.
pub fn mount_base() -> Vec<String> {
    let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let steps = [
        ("proc", "/proc", nodev, None),
        ("sysfs", "/sys", nodev, None),
        ("devtmpfs", "/dev", MsFlags::MS_NOSUID, Some("mode=0755")),
        (
            "devpts",
            "/dev/pts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        ),
        ("tmpfs", "/dev/shm", nodev, Some("mode=1777")),
        (
            "tmpfs",
            "/run",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        ),
        (
            "tmpfs",
            "/tmp",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        ),
        ("cgroup2", "/sys/fs/cgroup", nodev, None),
    ];
    steps
        .iter()
        .filter_map(|(t, p, f, d)| base_mount(t, p, *f, *d).err())
        .collect()
}

/// Loads the kernel modules listed (one path per line) in `list`, in
/// order; a module already loaded is fine. Returns the failures.
pub fn load_modules(list: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(list) else {
        return Vec::new();
    };
    let mut errs = Vec::new();
    for m in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if let Err(e) = load_module(Path::new(m), "") {
            errs.push(format!("{m}: {e}"));
        }
    }
    errs
}

/// Loads one module file with `params` ("key=value key2=value");
/// already loaded (EEXIST) is fine.
pub fn load_module(file: &Path, params: &str) -> Result<(), String> {
    let p = CString::new(params).map_err(|_| "a parameter has a NUL byte".to_string())?;
    let name = file.to_string_lossy();
    // Compressed modules need the kernel to decompress (flag 4,
    // MODULE_INIT_COMPRESSED_FILE, which nix does not name).
    let flags = if name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz") {
        ModuleInitFlags::from_bits_retain(4)
    } else {
        ModuleInitFlags::empty()
    };
    let f = File::open(file).map_err(|e| e.to_string())?;
    match finit_module(&f, &p, flags) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// This kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Syncs and powers the machine off. Only ever called as a guest's PID 1.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) does not return on success; if it failed, wait for the
    // hypervisor rather than exit (PID 1 exiting panics the kernel).
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
