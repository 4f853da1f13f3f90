//! The VMs: created (a directory and a record), started (vsock backend,
//! QEMU in the pod's network namespace, the agent answering, the agent
//! socket relayed), stopped (every step done, what failed reported).
//!
//! Each VM's record (`STATE_DIR/ID/vm.json`) is written before what it
//! names is made, and read back at start, so a restarted service still
//! knows its VMs: their relays come back, and StopVM removes them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slog::{info, warn, Logger};

use crate::net::{self, Plumbing, PodNet};
use crate::options::Options;
use crate::procs::{self, Proc};
use crate::{guest, relay};

const RECORD: &str = "vm.json";
const AGENT_SOCK: &str = "agent.sock";
const VHOST_SOCK: &str = "vhost.sock";
const VSOCK: &str = "vm.vsock";
const CONSOLE: &str = "console.log";
/// The annotations runtime-rs sends (`prepare_annotations`).
const ANN_MEMORY: &str = "io.katacontainers.config.hypervisor.default_memory";
const ANN_VCPUS: &str = "io.katacontainers.config.hypervisor.default_vcpus";
const ANN_INITDATA: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The pod's initdata as the guest reads it: a QEMU firmware config entry
/// (bosun's `--initdata` default when it is the guest's init).
const INITDATA: &str = "initdata";
const FW_CFG_INITDATA: &str = "opt/io.katacontainers.initdata";

/// Why a call failed, by the code the shim gets.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Created,
    Started,
}

/// What is known of a VM, journalled.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub id: String,
    pub netns: Option<PathBuf>,
    pub annotations: BTreeMap<String, String>,
    pub cid: u32,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub state: State,
    pub vhost: Option<Proc>,
    pub qemu: Option<Proc>,
    pub net: Option<Plumbing>,
    pub pod: Option<PodNet>,
}

impl Record {
    fn load(dir: &Path) -> Option<Record> {
        let text = std::fs::read(dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Written whole (a temporary file renamed over it, both synced).
    fn save(&self, dir: &Path) -> Result<(), VmError> {
        let tmp = dir.join(".vm.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| VmError::Internal(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join(RECORD))?;
            File::open(dir)?.sync_all()
        };
        write().map_err(|e| VmError::Internal(format!("record {}: {e}", dir.display())))
    }
}

/// A VM and what this instance of the service holds of it.
struct Vm {
    dir: PathBuf,
    rec: Record,
    vhost: Option<Child>,
    qemu: Option<Child>,
    relay: Option<tokio::task::JoinHandle<()>>,
}

/// The service's VMs.
pub struct Manager {
    opts: Options,
    vms: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Vm>>>>,
    log: Logger,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Blocking work (processes, iproute2) off the async workers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl Manager {
    /// The manager, with the VMs recorded under the state directory
    /// adopted: a started VM whose QEMU still runs gets its agent socket
    /// back.
    pub fn open(opts: Options, log: Logger) -> Result<Arc<Self>, String> {
        std::fs::create_dir_all(&opts.state_dir).map_err(|e| format!("{}: {e}", opts.state_dir.display()))?;
        let m = Arc::new(Manager {
            opts,
            vms: Mutex::new(HashMap::new()),
            log,
        });
        let rd = std::fs::read_dir(&m.opts.state_dir).map_err(|e| format!("{}: {e}", m.opts.state_dir.display()))?;
        for e in rd.flatten() {
            let dir = e.path();
            let Some(rec) = Record::load(&dir) else {
                continue;
            };
            let mut vm = Vm {
                dir: dir.clone(),
                rec,
                vhost: None,
                qemu: None,
                relay: None,
            };
            let running = vm.rec.qemu.as_ref().is_some_and(procs::alive);
            if vm.rec.state == State::Started && running {
                match relay::serve(&dir.join(AGENT_SOCK), dir.join(VSOCK), m.log.clone()) {
                    Ok(h) => vm.relay = Some(h),
                    Err(e) => warn!(m.log, "adopted VM: agent socket"; "id" => &vm.rec.id, "error" => %e),
                }
            }
            info!(m.log, "VM adopted from its record"; "id" => &vm.rec.id, "state" => ?vm.rec.state, "qemu_running" => running);
            lock(&m.vms).insert(vm.rec.id.clone(), Arc::new(tokio::sync::Mutex::new(vm)));
        }
        Ok(m)
    }

    /// Live QEMU and vsock-backend processes whose command line names the
    /// VM's directory `dir`, recorded or not.
    fn strays(&self, dir: &Path) -> Vec<Proc> {
        let programs = [basename(&self.opts.qemu), basename(&self.opts.vhost_vsock)];
        procs::naming(&with_slash(dir), &programs)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.opts.state_dir.join(id)
    }

    /// CreateVM: the VM's directory and record; the agent socket's path.
    pub fn create(&self, id: &str, annotations: BTreeMap<String, String>, netns: &str) -> Result<PathBuf, VmError> {
        bosun::ids::ContainerId::parse(id).map_err(|e| VmError::InvalidArgument(format!("CreateVM id: {e}")))?;
        let netns = match netns {
            "" => None,
            p => {
                let path = PathBuf::from(p);
                match bosun::sys::ns::namespace_of(&path) {
                    Ok(ns) if ns.kind == "net" => Some(path),
                    Ok(ns) => {
                        return Err(VmError::InvalidArgument(format!(
                            "networkNamespacePath {p}: a {} namespace, not a network one",
                            ns.kind
                        )))
                    }
                    Err(e) => return Err(VmError::InvalidArgument(format!("networkNamespacePath {p}: {e}"))),
                }
            }
        };
        let memory_mib = annotations
            .get(ANN_MEMORY)
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|m| *m >= 64)
            .unwrap_or(self.opts.memory_mib);
        let vcpus = annotations
            .get(ANN_VCPUS)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0 && *v <= 256.0)
            .map(|v| v.ceil() as u32)
            .unwrap_or(self.opts.vcpus);
        // cc_init_data: base64 of the (gzip'd) TOML document.
        let initdata = match annotations.get(ANN_INITDATA).map(|v| v.trim()) {
            None | Some("") => None,
            Some(v) => {
                use base64::Engine;
                Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .map_err(|e| VmError::InvalidArgument(format!("annotation {ANN_INITDATA}: not base64: {e}")))?,
                )
            }
        };
        let dir = self.dir(id);
        let mut vms = lock(&self.vms);
        if let Some(vm) = vms.get(id) {
            let same = vm.try_lock().map(|v| v.rec.netns == netns).unwrap_or(true);
            return match same {
                true => Ok(dir.join(AGENT_SOCK)),
                false => Err(VmError::AlreadyExists(format!(
                    "VM {id} exists with another network namespace"
                ))),
            };
        }
        let used: Vec<u32> = vms
            .values()
            .filter_map(|v| v.try_lock().ok().map(|v| v.rec.cid))
            .collect();
        let cid = (3u32..).find(|c| !used.contains(c)).unwrap_or(3);
        std::fs::create_dir_all(&dir).map_err(|e| VmError::Internal(format!("{}: {e}", dir.display())))?;
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        if let Some(data) = &initdata {
            std::fs::write(dir.join(INITDATA), data)
                .map_err(|e| VmError::Internal(format!("{}: {e}", dir.join(INITDATA).display())))?;
        }
        let rec = Record {
            id: id.to_string(),
            netns,
            annotations,
            cid,
            memory_mib,
            vcpus,
            state: State::Created,
            vhost: None,
            qemu: None,
            net: None,
            pod: None,
        };
        rec.save(&dir)?;
        info!(self.log, "VM created"; "id" => id, "cid" => cid, "memory_mib" => memory_mib, "vcpus" => vcpus);
        vms.insert(
            id.to_string(),
            Arc::new(tokio::sync::Mutex::new(Vm {
                dir: dir.clone(),
                rec,
                vhost: None,
                qemu: None,
                relay: None,
            })),
        );
        Ok(dir.join(AGENT_SOCK))
    }

    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<Vm>>> {
        lock(&self.vms).get(id).cloned()
    }

    /// StartVM: boots the VM and returns once its agent answers, the pod's
    /// network given to it and the agent socket served.
    pub async fn start(&self, id: &str) -> Result<(), VmError> {
        let vm = self
            .get(id)
            .ok_or_else(|| VmError::NotFound(format!("no VM {id:?}: CreateVM first")))?;
        let mut vm = vm.lock().await;
        if vm.rec.state == State::Started {
            return match vm.rec.qemu.as_ref().is_some_and(procs::alive) {
                true => Ok(()),
                false => Err(VmError::FailedPrecondition(format!(
                    "VM {id} has stopped on its own; StopVM it, then create it again"
                ))),
            };
        }
        // A start cut short (the service killed mid-boot, then restarted)
        // left processes, a tap or redirects: undone before booting again.
        let leftovers =
            vm.rec.qemu.is_some() || vm.rec.vhost.is_some() || vm.rec.net.is_some() || !self.strays(&vm.dir).is_empty();
        if leftovers {
            info!(self.log, "VM: undoing a start cut short before booting"; "id" => id);
            blocking(|| self.teardown(&mut vm)).map_err(VmError::Internal)?;
            vm.rec.save(&vm.dir)?;
        }
        let started = Instant::now();
        match self.boot(&mut vm).await {
            Ok(()) => {
                vm.rec.state = State::Started;
                vm.rec.save(&vm.dir)?;
                info!(self.log, "VM started"; "id" => id, "boot_ms" => started.elapsed().as_millis() as u64);
                Ok(())
            }
            Err(e) => {
                warn!(self.log, "VM did not start; undoing"; "id" => id, "error" => %e);
                let undo = blocking(|| self.teardown(&mut vm));
                if let Err(u) = undo {
                    warn!(self.log, "undoing a failed start"; "id" => id, "error" => %u);
                }
                let _ = vm.rec.save(&vm.dir);
                Err(e)
            }
        }
    }

    async fn boot(&self, vm: &mut Vm) -> Result<(), VmError> {
        let dir = vm.dir.clone();
        let netns = match &vm.rec.netns {
            Some(p) => Some(File::open(p).map_err(|e| VmError::FailedPrecondition(format!("{}: {e}", p.display())))?),
            None => None,
        };
        // The pod's network: recorded, then made.
        if let Some(ns) = vm.rec.netns.clone() {
            let pod = blocking(|| net::inspect(&ns)).map_err(VmError::Internal)?;
            if let Some(pod) = pod {
                let plumbing = Plumbing {
                    veth: pod.name.clone(),
                    tap: net::TAP.to_string(),
                };
                vm.rec.net = Some(plumbing.clone());
                vm.rec.pod = Some(pod.clone());
                vm.rec.save(&dir)?;
                blocking(|| net::plumb(&ns, &plumbing, pod.mtu)).map_err(VmError::FailedPrecondition)?;
            }
        }
        // The vsock backend: the guest's vsock as a hybrid-vsock socket.
        let log_file = |name: &str| {
            File::create(dir.join(name))
                .map(Stdio::from)
                .map_err(|e| VmError::Internal(format!("{name}: {e}")))
        };
        let mut cmd = Command::new(&self.opts.vhost_vsock);
        cmd.arg("--vm")
            .arg(format!(
                "guest-cid={},socket={},uds-path={}",
                vm.rec.cid,
                dir.join(VHOST_SOCK).display(),
                dir.join(VSOCK).display()
            ))
            .stdin(Stdio::null())
            .stdout(log_file("vhost.log")?)
            .stderr(log_file("vhost.err")?);
        let (child, p) = procs::spawn(&mut cmd, None)
            .map_err(|e| VmError::FailedPrecondition(format!("start {}: {e}", self.opts.vhost_vsock)))?;
        vm.vhost = Some(child);
        vm.rec.vhost = Some(p);
        vm.rec.save(&dir)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join(VHOST_SOCK).exists() {
            if Instant::now() > deadline || !procs::alive(&p) {
                return Err(VmError::Internal(format!(
                    "{} did not make its socket: {}",
                    self.opts.vhost_vsock,
                    tail(&dir.join("vhost.err"), 5)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // QEMU, in the pod's network namespace.
        let mut cmd = Command::new(&self.opts.qemu);
        cmd.args(self.qemu_args(&vm.rec, &dir))
            .stdin(Stdio::null())
            .stdout(log_file("qemu.log")?)
            .stderr(log_file("qemu.err")?);
        let (child, p) = procs::spawn(&mut cmd, netns.as_ref())
            .map_err(|e| VmError::FailedPrecondition(format!("start {}: {e}", self.opts.qemu)))?;
        vm.qemu = Some(child);
        vm.rec.qemu = Some(p);
        vm.rec.save(&dir)?;
        // Up when the agent answers.
        let deadline = Instant::now() + self.opts.boot_timeout;
        loop {
            if let Some(Ok(Some(status))) = vm.qemu.as_mut().map(|c| c.try_wait()) {
                return Err(VmError::Internal(format!(
                    "QEMU exited ({status}) before the agent answered: {} | console: {}",
                    tail(&dir.join("qemu.err"), 3),
                    tail(&dir.join(CONSOLE), 10)
                )));
            }
            if guest::ready(&dir.join(VSOCK), Duration::from_secs(1)).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(VmError::DeadlineExceeded(format!(
                    "the agent did not answer within {:?}; console: {}",
                    self.opts.boot_timeout,
                    tail(&dir.join(CONSOLE), 10)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(pod) = &vm.rec.pod {
            guest::configure(&dir.join(VSOCK), pod)
                .await
                .map_err(|e| VmError::Internal(format!("the pod's network in the guest: {e}")))?;
        }
        vm.relay = Some(
            relay::serve(&dir.join(AGENT_SOCK), dir.join(VSOCK), self.log.clone())
                .map_err(|e| VmError::Internal(format!("agent socket: {e}")))?,
        );
        Ok(())
    }

    fn qemu_args(&self, rec: &Record, dir: &Path) -> Vec<String> {
        let m = rec.memory_mib;
        let mut append = format!(
            "console=ttyS0 panic=-1 quiet agent.server_addr=vsock://-1:{} agent.log=info",
            relay::AGENT_PORT
        );
        if !self.opts.append.is_empty() {
            append = format!("{append} {}", self.opts.append);
        }
        let mut a: Vec<String> = vec![
            "-M".into(),
            "q35,memory-backend=mem".into(),
            "-accel".into(),
            self.opts.accel.name().into(),
            "-m".into(),
            format!("{m}M"),
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={m}M,share=on"),
            "-smp".into(),
            rec.vcpus.to_string(),
            "-name".into(),
            format!("bosun-podvm-{}", rec.id),
            "-nographic".into(),
            "-nodefaults".into(),
            "-serial".into(),
            format!("file:{}", dir.join(CONSOLE).display()),
            "-no-reboot".into(),
            "-kernel".into(),
            self.opts.kernel.display().to_string(),
            "-initrd".into(),
            self.opts.initrd.display().to_string(),
            "-append".into(),
            append,
            "-chardev".into(),
            format!("socket,id=vsock,path={}", dir.join(VHOST_SOCK).display()),
            "-device".into(),
            "vhost-user-vsock-pci,chardev=vsock".into(),
        ];
        if dir.join(INITDATA).is_file() {
            a.extend([
                "-fw_cfg".into(),
                format!("name={FW_CFG_INITDATA},file={}", dir.join(INITDATA).display()),
            ]);
        }
        if let (Some(p), Some(pod)) = (&rec.net, &rec.pod) {
            a.extend([
                "-netdev".into(),
                format!("tap,id=pod,ifname={},script=no,downscript=no", p.tap),
                "-device".into(),
                format!("virtio-net-pci,netdev=pod,mac={}", pod.mac),
            ]);
        }
        a
    }

    /// StopVM: every step done whatever failed before it, the failures
    /// reported; an unknown id is OK (the shim retries).
    pub async fn stop(&self, id: &str) -> Result<(), VmError> {
        bosun::ids::ContainerId::parse(id).map_err(|e| VmError::InvalidArgument(format!("StopVM id: {e}")))?;
        let Some(vm) = self.get(id) else {
            // Not recorded: what a crash before the record left, if anything.
            let dir = self.dir(id);
            if dir.is_dir() {
                blocking(|| {
                    for p in self.strays(&dir) {
                        procs::stop(&p, None, Duration::from_secs(5));
                    }
                    std::fs::remove_dir_all(&dir)
                })
                .map_err(|e| VmError::Internal(format!("{}: {e}", dir.display())))?;
            }
            return Ok(());
        };
        let mut guard = vm.lock().await;
        let vm: &mut Vm = &mut guard;
        blocking(|| self.teardown(vm)).map_err(VmError::Internal)?;
        std::fs::remove_dir_all(&vm.dir).map_err(|e| VmError::Internal(format!("{}: {e}", vm.dir.display())))?;
        lock(&self.vms).remove(id);
        info!(self.log, "VM stopped"; "id" => id);
        Ok(())
    }

    /// Stops what a VM runs and removes what it made in the pod's
    /// namespace; keeps its directory and record.
    fn teardown(&self, vm: &mut Vm) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(h) = vm.relay.take() {
            h.abort();
        }
        let _ = std::fs::remove_file(vm.dir.join(AGENT_SOCK));
        let grace = Duration::from_secs(5);
        if let Some(p) = vm.rec.qemu {
            procs::stop(&p, vm.qemu.take(), grace);
        }
        if let Some(p) = vm.rec.vhost {
            procs::stop(&p, vm.vhost.take(), grace);
        }
        // Anything of this VM's started but not recorded (a crash between).
        for p in self.strays(&vm.dir) {
            procs::stop(&p, None, grace);
        }
        if let (Some(ns), Some(p)) = (&vm.rec.netns, &vm.rec.net) {
            if let Err(e) = net::unplumb(ns, p) {
                errors.push(e);
            }
        }
        vm.rec.qemu = None;
        vm.rec.vhost = None;
        vm.rec.state = State::Created;
        if errors.is_empty() {
            vm.rec.net = None;
            vm.rec.pod = None;
            Ok(())
        } else {
            let _ = vm.rec.save(&vm.dir);
            Err(errors.join("; "))
        }
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn with_slash(dir: &Path) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push("/");
    PathBuf::from(s)
}

/// The last `n` lines of a log, on one line.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
