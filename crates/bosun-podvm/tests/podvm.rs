//! bosun-podvm as runtime-rs drives it in remote mode: the test plays the
//! shim. A node namespace with a bridge and a registry stands for the
//! host's network; each pod gets a network namespace with a veth on that
//! bridge, as a CNI bridge plugin makes it. CreateVM/StartVM boot a real
//! QEMU VM (TCG) with bosun inside, in the pod's namespace; the golden
//! runtime-rs remote-mode requests run the pod through `agentSocketPath`,
//! the workload's image pulled in the guest through the pod's network;
//! StopVM leaves nothing. Two pods at once, and the service restarted
//! between StartVM and StopVM.
//!
//! Needs root, the guest image (`make guest-image`: guest-image/out),
//! QEMU and vhost-device-vsock; skipped with the reason otherwise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::local_registry::{Auth, NetNs, Registry};
use bosun_client::{golden, Client};
use bosun_protocols::agent::{
    CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest, ExecProcessRequest,
    ReadStreamRequest, RemoveContainerRequest, StartContainerRequest, WaitProcessRequest,
};
use bosun_protocols::remote::{CreateVMRequest, StartVMRequest, StopVMRequest, VersionRequest};
use bosun_protocols::remote_ttrpc::HypervisorClient;

const REGISTRY: &str = "10.88.0.1:5000";
const BUSYBOX: &str = "docker.io/library/busybox:1.36";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What the VM test needs, or why it is skipped.
struct Needs {
    image: PathBuf,
    vhost: PathBuf,
}

fn needs() -> Result<Needs, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root".into());
    }
    let image = std::env::var_os("BOSUN_GUEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("guest-image/out"));
    for f in ["vmlinuz", "initrd.gz"] {
        if !image.join(f).is_file() {
            return Err(format!("no guest image at {} (make guest-image)", image.display()));
        }
    }
    let which = |p: &str| -> Option<PathBuf> {
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(home)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    };
    let vhost = which("vhost-device-vsock").ok_or("no vhost-device-vsock (scripts/setup.sh vm-test)")?;
    which("qemu-system-x86_64").ok_or("no qemu-system-x86_64 (scripts/setup.sh vm-test)")?;
    Ok(Needs { image, vhost })
}

macro_rules! needs_or_skip {
    () => {
        match needs() {
            Ok(n) => n,
            Err(why) => {
                eprintln!("SKIPPED: {why}");
                return;
            }
        }
    };
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node's network: a namespace with a bridge (10.88.0.1/24) and a
/// registry on it holding busybox as docker.io would serve it.
struct Node {
    ns: NetNs,
    _registry: Registry,
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let ns = NetNs::new().unwrap();
        sh(ns.command("ip").args(["link", "add", "br0", "type", "bridge"]));
        sh(ns.command("ip").args(["addr", "add", "10.88.0.1/24", "dev", "br0"]));
        sh(ns.command("ip").args(["link", "set", "br0", "up"]));
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::start_at(&ns, &dir.path().join("registry"), REGISTRY, &Auth::None, None).unwrap();
        let layout = dir.path().join("layout");
        let layer =
            bosun_client::oci_layout::busybox_layer(&["sh", "echo", "cat", "ls", "sleep", "hostname", "nc", "id"])
                .unwrap();
        bosun_client::oci_layout::write_layout(&layout, "1.36", &[(layer, bosun_client::oci_layout::Comp::Gzip)], 0)
            .unwrap();
        registry.push(&ns, &layout, "1.36", "library/busybox", None).unwrap();
        Node {
            ns,
            _registry: registry,
            dir,
        }
    }

    /// A pod's namespace with `eth0` at 10.88.0.N/24 on the bridge, the
    /// default route through the node.
    fn pod(&self, n: u8) -> NetNs {
        let pod = NetNs::new().unwrap();
        let host = format!("veth{n}");
        sh(self
            .ns
            .command("ip")
            .args(["link", "add", &host, "type", "veth", "peer", "name", "eth0"]));
        sh(self
            .ns
            .command("ip")
            .args(["link", "set", "eth0", "netns", &pod.path().display().to_string()]));
        sh(self
            .ns
            .command("ip")
            .args(["link", "set", &host, "master", "br0", "up"]));
        sh(pod
            .command("ip")
            .args(["addr", "add", &format!("10.88.0.{n}/24"), "dev", "eth0"]));
        sh(pod.command("ip").args(["link", "set", "eth0", "up"]));
        sh(pod.command("ip").args(["route", "add", "default", "via", "10.88.0.1"]));
        pod
    }
}

/// A running bosun-podvm, killed (by pid) when dropped.
struct Service {
    child: Child,
    sock: PathBuf,
    state: PathBuf,
    args: Vec<String>,
}

impl Service {
    fn start(n: &Needs, dir: &Path) -> Service {
        let sock = dir.join("hypervisor.sock");
        let state = dir.join("state");
        let args = vec![
            "--listen".to_string(),
            sock.display().to_string(),
            "--kernel".into(),
            n.image.join("vmlinuz").display().to_string(),
            "--initrd".into(),
            n.image.join("initrd.gz").display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "--vhost-vsock".into(),
            n.vhost.display().to_string(),
            "--boot-timeout".into(),
            "240".into(),
            "--append".into(),
            format!("agent.insecure_registries={REGISTRY}"),
            "--log-level".into(),
            "debug".into(),
        ];
        let child = Self::spawn(&args, dir);
        let s = Service {
            child,
            sock,
            state,
            args,
        };
        s.wait_listening();
        s
    }

    fn spawn(args: &[String], dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("podvm.log"))
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_bosun-podvm"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&self.sock).is_err() {
            assert!(Instant::now() < deadline, "bosun-podvm did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then a new instance on the same state.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = self.sock.parent().unwrap().to_path_buf();
        self.child = Self::spawn(&self.args, &dir);
        self.wait_listening();
    }

    async fn client(&self) -> HypervisorClient {
        let s = tokio::net::UnixStream::connect(&self.sock).await.unwrap();
        HypervisorClient::new(ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(s)))
    }
}

impl Drop for Service {
    /// The service, and, when a test failed before StopVM, the VMs it
    /// started (they outlive the service by design): by pid, found by
    /// their command lines naming this test's state directory.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in pids_naming(&self.state, self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(300).as_nanos() as i64)
}

/// The agent in a VM, through the socket CreateVM answered.
async fn agent(sock: &Path) -> Client {
    Client::connect(&Address::Unix(sock.to_path_buf()), Duration::from_secs(30))
        .await
        .unwrap()
}

/// The golden workload's container id.
fn workload_id() -> String {
    golden::REMOTE_WORKLOAD
        .parse::<CreateContainerRequest>(&[])
        .unwrap()
        .container_id
}

/// ExecProcess of `args` in the golden workload.
fn exec_request(exec_id: &str, args: &[String]) -> ExecProcessRequest {
    let mut r = ExecProcessRequest::new();
    r.container_id = workload_id();
    r.exec_id = exec_id.into();
    r.process = Some(bosun_client::spec::process(args)).into();
    r
}

/// CreateVM as runtime-rs sends it (`prepare_annotations`).
fn create_vm_request(id: &str, netns: &Path) -> CreateVMRequest {
    let mut r = CreateVMRequest::new();
    r.id = id.into();
    r.networkNamespacePath = netns.display().to_string();
    let ann: HashMap<String, String> = [
        ("io.kubernetes.cri.sandbox-name", "web-0"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.katacontainers.config.hypervisor.machine_type", ""),
        ("io.katacontainers.config.hypervisor.default_vcpus", "1"),
        ("io.katacontainers.config.hypervisor.default_memory", "512"),
        ("io.katacontainers.config.hypervisor.image", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    r.annotations = ann;
    r
}

/// cc_init_data as runtime-rs sends it: base64 of the gzip'd TOML
/// document, its policy allowing everything but an exec of `id`.
fn initdata_denying_exec_of_id() -> String {
    use base64::Engine;
    use std::io::Write;
    let mut rego = String::from("package agent_policy\n\nimport future.keywords.if\n\n");
    for r in bosun_protocols::agent_request_types() {
        rego += &format!("default {r} := true\n");
    }
    rego += "\nExecProcessRequest := false if {\n    input.process.Args[0] == \"id\"\n    print(\"id is not to be run here\")\n}\n";
    let doc = format!("version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\"policy.rego\" = '''\n{rego}'''\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(doc.as_bytes()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

/// The golden runtime-rs pod through the agent socket: sandbox, files,
/// pause, the workload pulled in the guest; its output read.
async fn run_pod(agent_sock: &Path) -> String {
    let c = agent(agent_sock).await;
    c.check().await.unwrap();
    let sb: CreateSandboxRequest = golden::REMOTE_SANDBOX.parse(&[]).unwrap();
    c.agent.create_sandbox(c.ctx(), &sb).await.unwrap();
    for f in golden::REMOTE_COPY_FILES.parse_list::<CopyFileRequest>().unwrap() {
        c.agent.copy_file(c.ctx(), &f).await.unwrap();
    }
    let pause: CreateContainerRequest = golden::REMOTE_PAUSE.parse(&[]).unwrap();
    c.agent.create_container(c.ctx(), &pause).await.unwrap();
    let mut start = StartContainerRequest::new();
    start.container_id = pause.container_id.clone();
    c.agent.start_container(c.ctx(), &start).await.unwrap();
    // The workload's image, from the node's registry instead of docker.io.
    let image = format!("{REGISTRY}/library/busybox:1.36");
    let wl: CreateContainerRequest = golden::REMOTE_WORKLOAD.parse(&[(BUSYBOX, &image)]).unwrap();
    c.agent
        .create_container(
            ttrpc::context::with_timeout(Duration::from_secs(120).as_nanos() as i64),
            &wl,
        )
        .await
        .unwrap_or_else(|e| panic!("the workload, pulled in the guest: {e:?}"));
    start.container_id = wl.container_id.clone();
    c.agent.start_container(c.ctx(), &start).await.unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !String::from_utf8_lossy(&out).contains("default\n") && Instant::now() < deadline {
        let mut r = ReadStreamRequest::new();
        r.container_id = wl.container_id.clone();
        r.exec_id = wl.container_id.clone();
        r.len = 4096;
        match c.agent.read_stdout(c.long_poll(), &r).await {
            Ok(d) => out.extend(d.data),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What `args` prints, run as an exec in the workload.
async fn exec_output(agent_sock: &Path, exec_id: &str, args: &[&str]) -> String {
    let c = agent(agent_sock).await;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    c.agent
        .exec_process(c.ctx(), &exec_request(exec_id, &args))
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let mut rd = ReadStreamRequest::new();
        rd.container_id = workload_id();
        rd.exec_id = exec_id.into();
        rd.len = 65536;
        match c.agent.read_stdout(c.long_poll(), &rd).await {
            Ok(d) if !d.data.is_empty() => out.extend(d.data),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key:` of /proc/meminfo text, in MiB.
fn meminfo_mib(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// An exec in the workload that answers one TCP connection on `port`.
async fn listen_in_guest(agent_sock: &Path, port: u16) {
    let c = agent(agent_sock).await;
    let args = [
        "sh".into(),
        "-c".into(),
        format!("echo 'hello from the guest' | nc -l -p {port}"),
    ];
    c.agent
        .exec_process(c.ctx(), &exec_request(&format!("listen-{port}"), &args))
        .await
        .unwrap();
}

async fn teardown_pod(agent_sock: &Path) {
    let c = agent(agent_sock).await;
    let pause: CreateContainerRequest = golden::REMOTE_PAUSE.parse(&[]).unwrap();
    for id in [&workload_id(), &pause.container_id] {
        let mut sig = bosun_protocols::agent::SignalProcessRequest::new();
        sig.container_id = id.clone();
        sig.signal = 9;
        let _ = c.agent.signal_process(c.ctx(), &sig).await;
        let mut w = WaitProcessRequest::new();
        w.container_id = id.clone();
        let _ = c.agent.wait_process(c.long_poll(), &w).await;
        let mut r = RemoveContainerRequest::new();
        r.container_id = id.clone();
        c.agent.remove_container(c.ctx(), &r).await.unwrap();
    }
    c.agent
        .destroy_sandbox(c.ctx(), &DestroySandboxRequest::new())
        .await
        .unwrap();
}

/// What bosun-podvm may have left in a pod's namespace.
fn leftovers_in(pod: &NetNs) -> Vec<String> {
    let mut v = Vec::new();
    let links = String::from_utf8(pod.command("ip").args(["-o", "link"]).output().unwrap().stdout).unwrap();
    if links.contains("tap0_podvm") {
        v.push("the tap".into());
    }
    let q = String::from_utf8(
        pod.command("tc")
            .args(["qdisc", "show", "dev", "eth0", "ingress"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    if q.contains("ingress") {
        v.push("eth0's ingress qdisc".into());
    }
    v
}

/// The host RSS of the QEMU whose command line names `dir`.
fn rss_of_qemu(dir: &Path) -> String {
    let needle = dir.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let c = String::from_utf8_lossy(&c);
        if c.starts_with("qemu-system") && c.contains(&needle) {
            let st = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
            return format!("{:.0} MiB", meminfo_mib(&st, "VmRSS:"));
        }
    }
    "?".into()
}

/// Processes whose command line names `dir`, but `except` (the service,
/// whose --state-dir names it): pid and command line.
fn naming(dir: &Path, except: u32) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = match e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            Some(pid) if pid != except => pid,
            _ => continue,
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(&needle) {
                v.push((pid, c));
            }
        }
    }
    v
}

fn processes_naming(dir: &Path, except: u32) -> Vec<String> {
    naming(dir, except).into_iter().map(|(_, c)| c).collect()
}

fn pids_naming(dir: &Path, except: u32) -> Vec<u32> {
    naming(dir, except).into_iter().map(|(p, _)| p).collect()
}

/// The runtime each test drives its clients on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_pods_in_real_vms_through_their_netns_with_a_restart_between_start_and_stop() {
    let n = needs_or_skip!();
    let node = Node::new();
    let pods = [node.pod(2), node.pod(3)];
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(&n, dir.path());
    let rt = runtime();
    let ids = [
        "3f5d9c7e1a2b4c6d8e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d",
        "7c1e4a9b2d8f6e3a5c0b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a",
    ];
    let socks: Vec<PathBuf> = rt.block_on(async {
        let hv = svc.client().await;
        let v = hv.version(ctx(), &VersionRequest::new()).await.unwrap();
        assert!(v.version.starts_with("bosun-podvm"), "{}", v.version);
        let mut socks = Vec::new();
        for (i, (id, pod)) in ids.iter().zip(&pods).enumerate() {
            let mut req = create_vm_request(id, &pod.path());
            // The second pod's owner hands its VM a policy in initdata.
            if i == 1 {
                req.annotations.insert(
                    "io.katacontainers.config.hypervisor.cc_init_data".into(),
                    initdata_denying_exec_of_id(),
                );
            }
            let r = hv.create_vm(ctx(), &req).await.unwrap();
            socks.push(PathBuf::from(r.agentSocketPath));
        }
        // Both booting at once.
        let t0 = Instant::now();
        let starts = ids.iter().map(|id| {
            let hv = hv.clone();
            let mut r = StartVMRequest::new();
            r.id = id.to_string();
            async move { hv.start_vm(ctx(), &r).await }
        });
        for r in futures::future::join_all(starts).await {
            r.unwrap_or_else(|e| {
                panic!(
                    "StartVM: {e:?}\n{}",
                    std::fs::read_to_string(dir.path().join("podvm.log")).unwrap_or_default()
                )
            });
        }
        eprintln!(
            "== two VMs: CreateVM -> both agents ready in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        socks
    });
    // The pods run, each in its VM, pulling through its own netns.
    for (sock, pod) in socks.iter().zip(&pods) {
        let t0 = Instant::now();
        let out = rt.block_on(run_pod(sock));
        eprintln!(
            "== pod through {}: running in {:.1} s",
            sock.display(),
            t0.elapsed().as_secs_f64()
        );
        assert!(out.starts_with("hello from web-0\n"), "{out}");
        assert!(out.contains("namespace\ntoken\n"), "{out}");
        // The tap and its redirects are there while the VM runs.
        assert_eq!(leftovers_in(pod).len(), 2, "{:?}", leftovers_in(pod));
    }
    // What a pod VM costs: the guest's own view and QEMU's on the host.
    for sock in &socks {
        let m = rt.block_on(exec_output(sock, "meminfo", &["cat", "/proc/meminfo"]));
        let used = meminfo_mib(&m, "MemTotal:") - meminfo_mib(&m, "MemAvailable:");
        let dir = sock.parent().unwrap();
        eprintln!(
            "== guest memory in use (MemTotal - MemAvailable): {used:.1} MiB of {:.0} MiB; QEMU's host RSS: {}",
            meminfo_mib(&m, "MemTotal:"),
            rss_of_qemu(dir)
        );
    }
    // initdata's policy holds in the second VM only.
    let id_out = rt.block_on(exec_output(&socks[0], "id", &["id"]));
    assert!(id_out.starts_with("uid=0"), "{id_out}");
    let denied = rt.block_on(async {
        let c = agent(&socks[1]).await;
        c.agent
            .exec_process(c.ctx(), &exec_request("id", &["id".to_string()]))
            .await
    });
    match denied {
        Err(ttrpc::Error::RpcStatus(s)) => {
            assert_eq!(s.code(), ttrpc::Code::PERMISSION_DENIED, "{}", s.message());
            assert!(s.message().contains("id is not to be run here"), "{}", s.message());
        }
        other => panic!("an exec of id in the VM with initdata's policy: {other:?}"),
    }
    // The pulls came from the pods' addresses, through their namespaces.
    let reg_log = std::fs::read_to_string(node.dir.path().join("registry/registry.log")).unwrap();
    for ip in ["10.88.0.2", "10.88.0.3"] {
        assert!(reg_log.contains(ip), "no pull from {ip}: {reg_log}");
    }
    // Traffic to a pod's IP reaches its guest: a listener in the guest's
    // workload (nothing listens in the pod's namespace) answers the node.
    for (sock, ip) in socks.iter().zip(["10.88.0.2", "10.88.0.3"]) {
        rt.block_on(listen_in_guest(sock, 8080));
        let addr = format!("{ip}:8080");
        let got = node
            .ns
            .run(move || -> std::io::Result<String> {
                use std::io::Read;
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)) {
                        Ok(mut s) => {
                            let mut out = String::new();
                            s.set_read_timeout(Some(Duration::from_secs(10)))?;
                            s.read_to_string(&mut out)?;
                            return Ok(out);
                        }
                        Err(e) if Instant::now() > deadline => return Err(e),
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("connect to the guest at {ip}:8080: {e}"));
        assert_eq!(got, "hello from the guest\n");
    }

    // The service dies and comes back: both VMs are still its own.
    svc.restart();
    for sock in &socks {
        rt.block_on(async {
            agent(sock)
                .await
                .check()
                .await
                .expect("the agent through the restarted service");
        });
    }
    rt.block_on(async {
        for sock in &socks {
            teardown_pod(sock).await;
        }
        let hv = svc.client().await;
        for id in ids {
            let mut r = StopVMRequest::new();
            r.id = id.to_string();
            hv.stop_vm(ctx(), &r).await.unwrap();
            // Idempotent: the shim retries.
            hv.stop_vm(ctx(), &r).await.unwrap();
        }
    });
    for pod in &pods {
        assert!(leftovers_in(pod).is_empty(), "{:?}", leftovers_in(pod));
    }
    assert!(
        processes_naming(&svc.state, svc.child.id()).is_empty(),
        "{:?}",
        processes_naming(&svc.state, svc.child.id())
    );
    let left: Vec<_> = std::fs::read_dir(&svc.state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(node.dir);
}

#[test]
fn bad_requests_get_clear_codes_and_a_failed_boot_leaves_nothing() {
    let mut n = needs_or_skip!();
    let dir = tempfile::tempdir().unwrap();
    // A kernel QEMU cannot boot: StartVM fails, naming QEMU's complaint.
    let image = dir.path().join("image");
    std::fs::create_dir_all(&image).unwrap();
    std::fs::write(image.join("vmlinuz"), b"not a kernel").unwrap();
    std::fs::write(image.join("initrd.gz"), b"").unwrap();
    n.image = image;
    let svc = Service::start(&n, dir.path());
    let pod = NetNs::new().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let hv = svc.client().await;
        let code = |r: ttrpc::Result<_>| match r {
            Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_string()),
            other => panic!("not a status: {other:?}"),
        };
        let pod_ns = pod.path();
        for (id, netns, says) in [
            ("../etc", pod_ns.as_path(), "id"),
            ("vm1", Path::new("/nonexistent/netns"), "/nonexistent/netns"),
            ("vm1", Path::new("/proc/self/ns/uts"), "not a network one"),
        ] {
            let (c, m) = code(hv.create_vm(ctx(), &create_vm_request(id, netns)).await.map(|_| ()));
            assert_eq!(c, ttrpc::Code::INVALID_ARGUMENT, "{id} {}: {m}", netns.display());
            assert!(m.contains(says), "{m}");
        }
        let mut start = StartVMRequest::new();
        start.id = "unknown".into();
        let (c, _) = code(hv.start_vm(ctx(), &start).await.map(|_| ()));
        assert_eq!(c, ttrpc::Code::NOT_FOUND);
        let mut stop = StopVMRequest::new();
        stop.id = "unknown".into();
        hv.stop_vm(ctx(), &stop).await.expect("StopVM of an unknown id is OK");

        // CreateVM is idempotent; the same id with another netns is not.
        let a = hv
            .create_vm(ctx(), &create_vm_request("vm1", &pod.path()))
            .await
            .unwrap();
        let b = hv
            .create_vm(ctx(), &create_vm_request("vm1", &pod.path()))
            .await
            .unwrap();
        assert_eq!(a.agentSocketPath, b.agentSocketPath);
        let other = NetNs::new().unwrap();
        let (c, _) = code(
            hv.create_vm(ctx(), &create_vm_request("vm1", &other.path()))
                .await
                .map(|_| ()),
        );
        assert_eq!(c, ttrpc::Code::ALREADY_EXISTS);

        // The pod has no interface with an address: the guest gets no NIC.
        start.id = "vm1".into();
        let (c, m) = code(hv.start_vm(ctx(), &start).await.map(|_| ()));
        assert_eq!(c, ttrpc::Code::INTERNAL, "{m}");
        assert!(m.contains("QEMU exited"), "{m}");
        assert!(
            processes_naming(&svc.state, svc.child.id()).is_empty(),
            "{:?}",
            processes_naming(&svc.state, svc.child.id())
        );
        stop.id = "vm1".into();
        hv.stop_vm(ctx(), &stop).await.unwrap();
    });
    let left: Vec<_> = std::fs::read_dir(&svc.state)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The service SIGKILLed in the middle of StartVM (QEMU started, the
/// agent not yet answering), then restarted: StartVM again boots the VM
/// (what the cut-short start left is undone first), and StopVM then
/// leaves nothing.
#[test]
fn a_service_killed_in_the_middle_of_start_vm_recovers_and_leaves_nothing() {
    let n = needs_or_skip!();
    let node = Node::new();
    let pod = node.pod(4);
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::start(&n, dir.path());
    let rt = runtime();
    let id = "b1c2d3e4f5a6978812345678901234567890abcdefabcdefabcdefabcdefabcd";
    let sock = rt.block_on(async {
        let hv = svc.client().await;
        let r = hv.create_vm(ctx(), &create_vm_request(id, &pod.path())).await.unwrap();
        let mut start = StartVMRequest::new();
        start.id = id.into();
        // The call dies with the service; only its effects matter.
        tokio::spawn(async move { hv.start_vm(ctx(), &start).await });
        PathBuf::from(r.agentSocketPath)
    });
    let vm_dir = sock.parent().unwrap().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !processes_naming(&vm_dir, svc.child.id())
        .iter()
        .any(|c| c.starts_with("qemu-system"))
    {
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    svc.restart();
    rt.block_on(async {
        let hv = svc.client().await;
        let mut start = StartVMRequest::new();
        start.id = id.into();
        hv.start_vm(ctx(), &start)
            .await
            .unwrap_or_else(|e| panic!("StartVM after the restart: {e:?}"));
        agent(&sock)
            .await
            .check()
            .await
            .expect("the agent after a start cut short");
        // One QEMU and one vsock backend for the VM, not two.
        let procs = processes_naming(&vm_dir, svc.child.id());
        assert_eq!(procs.len(), 2, "{procs:?}");
        let mut stop = StopVMRequest::new();
        stop.id = id.into();
        hv.stop_vm(ctx(), &stop).await.unwrap();
    });
    assert!(leftovers_in(&pod).is_empty(), "{:?}", leftovers_in(&pod));
    assert!(
        processes_naming(&svc.state, svc.child.id()).is_empty(),
        "{:?}",
        processes_naming(&svc.state, svc.child.id())
    );
    assert!(!vm_dir.exists());
}
