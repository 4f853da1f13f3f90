//! What every scenario is written with: the context it runs in, its
//! verdict, and the calls that set up a pod. The plain, golden and hostile
//! scenarios all stand on this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_protocols::agent::Storage;
use ttrpc::Code;

use crate::calls::{Calls, Fail, R};

/// Bound on reading a line a container prints (its process runs on).
pub const READ_BOUND: Duration = Duration::from_secs(30);

/// Argument of the long-running processes the scenarios start (`sleep
/// MARK`): `--local` looks for leftovers by it. Unique to this run (8 and
/// the pid, a duration busybox's sleep takes): two runs on one machine,
/// such as the tests of `tests/conformance.rs` in parallel, would
/// otherwise count each other's processes as left behind.
pub fn mark() -> &'static str {
    static MARK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARK.get_or_init(|| format!("8{:07}", std::process::id()))
}

/// What a scenario found.
pub enum Verdict {
    /// It did not behave as expected.
    Fail(String),
    /// The agent lacks a call it needs.
    Skip(String),
}

pub type Outcome = Result<(), Verdict>;

/// What the scenarios need to know.
pub struct Ctx<'a> {
    pub calls: Calls<'a>,
    /// A rootfs with busybox, as the agent sees it.
    pub rootfs: PathBuf,
    /// An empty directory, or a path that does not exist: a rootfs that
    /// was never mounted.
    pub never_mounted: PathBuf,
    /// Where storages of this run are mounted.
    pub mnt: PathBuf,
    /// The VM's disks, when it has them.
    pub disks: Option<Disks>,
    /// An image the agent can pull (busybox: sh, echo, sleep).
    pub image: Option<String>,
}

/// Disks a VM was started with, by the addresses a runtime would send.
#[derive(Clone, Debug)]
pub struct Disks {
    /// A virtio-blk disk (ext4, a busybox rootfs with /etc/hostname).
    pub blk_pci_path: String,
    /// A virtio-scsi disk (ext4 with /hello).
    pub scsi_addr: String,
}

pub fn ok<T>(r: R<T>, what: &str) -> Result<T, Verdict> {
    r.map_err(|f| {
        if f.code == Code::UNIMPLEMENTED {
            Verdict::Skip(format!("the agent lacks {what}"))
        } else {
            Verdict::Fail(format!("{what}: {:?}: {}", f.code, f.msg))
        }
    })
}

pub fn expect_code<T>(r: R<T>, want: Code, what: &str) -> Outcome {
    match r {
        Ok(_) => Err(Verdict::Fail(format!("{what}: expected {want:?}, got OK"))),
        Err(Fail { code, .. }) if code == want => Ok(()),
        Err(Fail {
            code: Code::UNIMPLEMENTED,
            ..
        }) => Err(Verdict::Skip(format!("the agent lacks {what}"))),
        Err(Fail { code, msg }) => Err(Verdict::Fail(format!("{what}: expected {want:?}, got {code:?}: {msg}"))),
    }
}

pub fn check(cond: bool, what: impl Into<String>) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(Verdict::Fail(what.into()))
    }
}

pub fn storage(driver: &str, source: &str, fstype: &str, mp: &Path) -> Storage {
    let mut s = Storage::new();
    (s.driver, s.source, s.fstype, s.mount_point) =
        (driver.into(), source.into(), fstype.into(), mp.display().to_string());
    s
}

/// A sandbox and its pause container. The pause runs from the busybox
/// rootfs (every agent needs one there; only `pause_rootfs_never_mounted`
/// tries the pause whose rootfs was never mounted).
pub async fn pod(c: &Ctx<'_>, name: &str) -> Outcome {
    ok(c.calls.sandbox(name).await, "CreateSandbox")?;
    ok(
        c.calls.pause(Some(&c.rootfs), &["sleep", mark()]).await,
        "the pause container",
    )
}

pub async fn running(c: &Ctx<'_>, id: &str) -> Outcome {
    ok(
        c.calls.create(id, &c.rootfs, &["sleep", mark()]).await,
        "CreateContainer",
    )?;
    ok(c.calls.start(id).await, "StartContainer")
}
