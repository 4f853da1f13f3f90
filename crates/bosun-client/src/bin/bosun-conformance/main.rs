//! `bosun-conformance`: drives any Kata-protocol agent through sandbox and
//! teardown scenarios, prints a verdict for each, and exits 0 only if none
//! failed. `--local` (same machine as the agent) also checks mountinfo and
//! the process table after each scenario.

mod calls;
mod ctx;
mod golden;
mod hostile;
mod policy;
mod scenarios;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::Client;
use ctx::{mark, Ctx, Verdict};
use scenarios::ALL;

/// Bound on one scenario: none needs more than a few seconds; this keeps a
/// hung agent from hanging the suite.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

struct Opts {
    addr: Address,
    rootfs: Option<PathBuf>,
    local: bool,
    json: bool,
    only: Option<String>,
    disks: Option<ctx::Disks>,
    image: Option<String>,
    mode: Mode,
    restart: Option<String>,
}

/// Which scenarios: the plain and golden ones, the adversarial ones, or
/// the policy probe.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Hostile,
    Policy,
}

const USAGE: &str = "usage: bosun-conformance --addr ADDR [--rootfs DIR] [--local] [--only SCENARIO] [--json]
                         [--blk-pci-path PATH --scsi-addr T:L] [--registry HOST[:PORT] | --image REF]
                         [--hostile | --policy] [--restart CMD]
  --hostile     the adversarial scenarios instead (hostile storages and binds, races, cut-off
                calls, deep paths; with --local, memory under wire attacks)
  --policy      the policy probe instead: the agent's Rego policy must decide requests as the
                Kata agent's does (it is left with a policy allowing everything)
  --restart CMD a shell command run before each scenario that (re)starts the agent at ADDR
                (an agent that exits after DestroySandbox, as the Kata agent does)
  --rootfs DIR  a busybox rootfs as the agent sees it (with --local, one is made if omitted)
  --local       the agent runs on this machine: also check mountinfo and processes
  --blk-pci-path, --scsi-addr  where the VM has a virtio-blk disk (an ext4 busybox rootfs) and a
                virtio-scsi disk (ext4 with /hello); without them hotplugged_disks SKIPs
  --registry    a registry the agent reaches, holding bosun-conformance/busybox:latest (busybox with sh,
                echo, sleep); --image: any such image by reference. Without them guest_pull SKIPs";

fn parse() -> Result<Opts, String> {
    let (mut addr, mut rootfs, mut local, mut json, mut only) = (None, None, false, false, None);
    let (mut blk, mut scsi, mut image) = (None, None, None);
    let (mut mode, mut restart) = (Mode::Plain, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |n: &str| it.next().ok_or(format!("{n} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(Address::parse(&val("--addr")?).map_err(|e| e.to_string())?),
            "--rootfs" => rootfs = Some(PathBuf::from(val("--rootfs")?)),
            "--only" => only = Some(val("--only")?),
            "--blk-pci-path" => blk = Some(val("--blk-pci-path")?),
            "--scsi-addr" => scsi = Some(val("--scsi-addr")?),
            "--registry" => image = Some(format!("{}/bosun-conformance/busybox:latest", val("--registry")?)),
            "--image" => image = Some(val("--image")?),
            "--local" => local = true,
            "--hostile" => mode = Mode::Hostile,
            "--policy" => mode = Mode::Policy,
            "--restart" => restart = Some(val("--restart")?),
            "--json" => json = true,
            _ => return Err(USAGE.into()),
        }
    }
    let addr = addr.ok_or(USAGE)?;
    if rootfs.is_none() && !local {
        return Err("--rootfs DIR is needed unless --local".into());
    }
    let disks = match (blk, scsi) {
        (Some(blk_pci_path), Some(scsi_addr)) => Some(ctx::Disks {
            blk_pci_path,
            scsi_addr,
        }),
        (None, None) => None,
        _ => return Err("--blk-pci-path and --scsi-addr go together".into()),
    };
    Ok(Opts {
        addr,
        rootfs,
        local,
        json,
        only,
        disks,
        image,
        mode,
        restart,
    })
}

fn busybox_rootfs(dir: &Path) -> PathBuf {
    bosun_client::spec::busybox_rootfs(
        dir,
        &[
            "sh", "true", "sleep", "cat", "echo", "grep", "id", "ls", "hostname", "touch",
        ],
    )
    .unwrap_or_else(|e| {
        eprintln!("bosun-conformance: {e}; or pass --rootfs");
        std::process::exit(2);
    })
}

/// What `--local` finds left behind: mounts under `mnt`, processes of ours.
fn local_leftovers(mnt: &Path) -> Vec<String> {
    let mut left: Vec<String> = bosun::mount::mountinfo::mount_points()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.starts_with(mnt))
        .map(|m| format!("mount {}", m.display()))
        .collect();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmd == format!("sleep\0{}\0", mark()).as_bytes() {
            left.push(format!("process {}", e.file_name().to_string_lossy()));
        }
    }
    left
}

/// Connects, retrying for 30 s (an agent just (re)started).
async fn connect(addr: &Address) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Client::connect(addr, Duration::from_secs(10)).await {
            Ok(c) => return Ok(c),
            Err(_) if Instant::now() < deadline => {}
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `--restart` command; a failure ends the run.
fn restart(cmd: &str) {
    match std::process::Command::new("sh").args(["-c", cmd]).status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("bosun-conformance: --restart {cmd:?}: {other:?}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let o = parse().unwrap_or_else(|e| {
        eprintln!("bosun-conformance: {e}");
        std::process::exit(2);
    });
    let die = |what: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("bosun-conformance: {what}: {e}");
        std::process::exit(1)
    };
    let tmp = tempfile::tempdir().unwrap_or_else(|e| die("tempdir", &e));
    let rootfs = o.rootfs.clone().unwrap_or_else(|| busybox_rootfs(tmp.path()));
    // Locally an empty directory; remotely a path that does not exist:
    // both are a rootfs that was never mounted.
    let never_mounted = if o.local {
        tmp.path().join("never-mounted")
    } else {
        PathBuf::from("/run/bosun-conformance/never-mounted")
    };
    if o.local {
        std::fs::create_dir_all(&never_mounted).unwrap_or_else(|e| die("mkdir", &e));
    }
    let mnt = if o.local {
        tmp.path().join("mnt")
    } else {
        PathBuf::from("/run/kata-containers/bosun-conformance")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die("runtime", &e));
    let mut rows = Vec::new();
    let plain = ALL.iter().chain(golden::ALL.iter());
    let list: Vec<&(&str, &str)> = match o.mode {
        Mode::Hostile => hostile::ALL.iter().collect(),
        Mode::Policy => policy::ALL.iter().collect(),
        Mode::Plain => plain.collect(),
    };
    for (name, proves) in list
        .into_iter()
        .filter(|(n, _)| o.only.as_deref().is_none_or(|x| x == *n))
    {
        if let Some(cmd) = &o.restart {
            restart(cmd);
        }
        let client = rt.block_on(connect(&o.addr)).unwrap_or_else(|e| {
            eprintln!("bosun-conformance: {e}");
            std::process::exit(1);
        });
        let ctx = Ctx {
            calls: calls::Calls(&client),
            rootfs: rootfs.clone(),
            never_mounted: never_mounted.clone(),
            mnt: mnt.clone(),
            disks: o.disks.clone(),
            image: o.image.clone(),
        };
        let t = Instant::now();
        let outcome = rt.block_on(async {
            let run = async {
                if o.mode == Mode::Policy {
                    policy::run(name, &ctx).await
                } else if o.mode == Mode::Hostile {
                    let h = hostile::Hostile {
                        ctx: &ctx,
                        addr: &o.addr,
                        local: o.local,
                    };
                    hostile::run(name, &h).await
                } else if name.starts_with("golden_") {
                    golden::run(name, &ctx).await.map(|_| String::new())
                } else {
                    scenarios::run(name, &ctx).await.map(|_| String::new())
                }
            };
            tokio::time::timeout(SCENARIO_TIMEOUT, run)
                .await
                .unwrap_or_else(|_| Err(Verdict::Fail(format!("no answer within {SCENARIO_TIMEOUT:?}"))))
        });
        // Whatever happened, leave the agent without a sandbox, then look.
        let _ = rt.block_on(ctx.calls.destroy());
        let mut left = rt
            .block_on(ctx.calls.listing())
            .unwrap_or_default()
            .into_iter()
            .map(|id| format!("container {id}"))
            .collect::<Vec<_>>();
        if o.local {
            left.extend(local_leftovers(&mnt));
        }
        let (verdict, detail) = match outcome {
            Ok(figures) if left.is_empty() => ("PASS", figures),
            Ok(figures) => ("FAIL", format!("{figures}; left behind: {}", left.join(", "))),
            Err(Verdict::Fail(d)) => ("FAIL", d),
            Err(Verdict::Skip(d)) => ("SKIP", d),
        };
        rows.push((name.to_string(), verdict, detail, t.elapsed(), proves.to_string()));
    }
    let failed = rows.iter().filter(|r| r.1 == "FAIL").count();
    if o.json {
        let v: Vec<_> = rows.iter().map(|(n, v, d, t, p)| serde_json::json!({"scenario": n, "verdict": v, "detail": d, "ms": t.as_millis() as u64, "proves": p})).collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("{:<34} {:<7} {:>8}  detail", "scenario", "verdict", "ms");
        for (n, v, d, t, _) in &rows {
            println!("{n:<34} {v:<7} {:>8}  {d}", t.as_millis());
        }
        let count = |x| rows.iter().filter(|r| r.1 == x).count();
        println!("{} passed, {} failed, {} skipped", count("PASS"), failed, count("SKIP"));
    }
    // exit() runs no destructors: the temp dir goes first.
    drop(tmp);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
