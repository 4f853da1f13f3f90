//! A test driver for one bosun agent: builds Kata-style requests and calls
//! them the way a kata shim does.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bosun_client::Client;
use bosun_protocols::agent::*;
use bosun_protocols::oci;

use super::{rt, Agent};

/// One agent, a runtime and a connected client.
pub struct Pod {
    pub agent: Agent,
    /// The agent's --cgroup-parent.
    pub cgroup_parent: String,
    pub rt: tokio::runtime::Runtime,
    pub c: Client,
}

/// A ttrpc failure as (code, message).
pub type Failure = (ttrpc::Code, String);

fn failure(e: ttrpc::Error) -> Failure {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => (ttrpc::Code::UNKNOWN, other.to_string()),
    }
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The OCI spec of a container: `args` in `rootfs`, with /proc and /dev.
pub fn spec(rootfs: Option<&Path>, args: &[&str]) -> oci::Spec {
    bosun_client::spec::container(rootfs, &strings(args))
}

/// The pause container's spec as a kata shim sends it.
pub fn pause_spec(rootfs: Option<&Path>) -> oci::Spec {
    bosun_client::spec::pause(rootfs)
}

/// A process for ExecProcess.
pub fn process(args: &[&str]) -> oci::Process {
    bosun_client::spec::process(&strings(args))
}

/// A started pod: sandbox `hostname`, a pause container whose rootfs is an
/// empty directory (never mounted: bosun runs its built-in pause), and a
/// busybox rootfs for workloads.
pub fn started(hostname: &str, pidns: bool) -> (Pod, std::path::PathBuf) {
    assert!(
        super::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    let pod = Pod::start();
    let rootfs = super::busybox_rootfs(pod.dir());
    let never_mounted = pod.dir().join("pause-rootfs");
    std::fs::create_dir_all(&never_mounted).unwrap();
    pod.create_sandbox(hostname, pidns).unwrap();
    pod.create("pause", pause_spec(Some(&never_mounted))).unwrap();
    pod.start_c("pause").unwrap();
    (pod, rootfs)
}

impl Pod {
    /// Starts bosun with its run dir inside its temp dir.
    pub fn start() -> Self {
        Self::start_with(false, &[])
    }

    /// Starts bosun isolated, with its own /run (see `common::spawn`): for
    /// requests that use the runtimes' fixed paths under /run/kata-containers.
    pub fn start_isolated() -> Self {
        Self::start_with(true, &[])
    }

    /// Starts bosun isolated or not, with `extra` flags.
    pub fn start_with(isolated: bool, extra: &[&str]) -> Self {
        Self::start_in(isolated, None, extra)
    }

    /// Starts bosun isolated in the network namespace `net` (a test
    /// registry's), with `extra` flags.
    pub fn start_in_net(net: std::path::PathBuf, extra: &[&str]) -> Self {
        Self::start_in(true, Some(net), extra)
    }

    /// Starts bosun isolated, after `setup` (see `Agent::start_after`).
    pub fn start_isolated_after(setup: &str) -> Self {
        Self::start_after(true, None, &[], setup)
    }

    fn start_in(isolated: bool, net: Option<std::path::PathBuf>, extra: &[&str]) -> Self {
        Self::start_after(isolated, net, extra, "")
    }

    /// Starts bosun with `extra` flags, isolated (in the network namespace
    /// `net`, or a new one) after `setup`, or not.
    pub fn start_after(isolated: bool, net: Option<std::path::PathBuf>, extra: &[&str], setup: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let addr = bosun::transport::Address::Unix(dir.path().join("bosun.sock"));
        // Each agent gets its own cgroup parent: tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let cg = format!(
            "bosun-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut flags = vec!["--run-dir", run.to_str().unwrap(), "--cgroup-parent", &cg];
        flags.extend_from_slice(extra);
        let agent = Agent::start_after(addr, dir, &flags, isolated, net, setup);
        let rt = rt();
        let c = rt
            .block_on(Client::connect(&agent.addr, Duration::from_secs(30)))
            .unwrap();
        Pod {
            agent,
            cgroup_parent: cg,
            rt,
            c,
        }
    }

    pub fn dir(&self) -> &Path {
        self.agent.dir.path()
    }

    /// Kills bosun with SIGKILL and starts it again (same flags, plus
    /// `env`); waits until it serves unless it is expected to crash.
    pub fn restart(&mut self, env: &[(&str, &str)], wait: bool) {
        self.agent.kill9();
        self.agent.respawn(env);
        if wait {
            self.agent.wait_ready();
            self.reconnect();
        }
    }

    /// A new connection to the (restarted) agent.
    pub fn reconnect(&mut self) {
        self.c = self
            .rt
            .block_on(Client::connect(&self.agent.addr, Duration::from_secs(30)))
            .unwrap();
    }

    /// Where tests put storage mount points: outside bosun's run dir, as a
    /// runtime's /run/kata-containers is.
    pub fn mnt(&self, name: &str) -> std::path::PathBuf {
        self.dir().join("mnt").join(name)
    }

    pub fn run_dir(&self) -> std::path::PathBuf {
        self.dir().join("run")
    }

    pub fn create_sandbox(&self, hostname: &str, pidns: bool) -> Result<(), Failure> {
        let mut r = CreateSandboxRequest::new();
        r.hostname = hostname.into();
        r.sandbox_pidns = pidns;
        r.sandbox_id = "sb1".into();
        self.rt
            .block_on(self.c.agent.create_sandbox(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    /// CreateSandbox exactly as given (a golden request).
    pub fn send_create_sandbox(&self, r: &CreateSandboxRequest) -> Result<(), Failure> {
        self.rt
            .block_on(self.c.agent.create_sandbox(self.c.ctx(), r))
            .map(|_| ())
            .map_err(failure)
    }

    /// CreateContainer exactly as given (a golden request).
    pub fn send_create_container(&self, r: &CreateContainerRequest) -> Result<(), Failure> {
        self.rt
            .block_on(self.c.agent.create_container(self.c.ctx(), r))
            .map(|_| ())
            .map_err(failure)
    }

    /// CreateContainer as given, with a ttrpc timeout of `t` (the
    /// runtime's create_container_timeout).
    pub fn send_create_container_within(&self, r: &CreateContainerRequest, t: Duration) -> Result<(), Failure> {
        self.rt
            .block_on(
                self.c
                    .agent
                    .create_container(ttrpc::context::with_timeout(t.as_nanos() as i64), r),
            )
            .map(|_| ())
            .map_err(failure)
    }

    /// CreateContainer of every request at once; each one's answer.
    pub fn send_create_containers_at_once(&self, rs: &[CreateContainerRequest]) -> Vec<Result<(), Failure>> {
        let calls = rs.iter().map(|r| self.c.agent.create_container(self.c.ctx(), r));
        self.rt
            .block_on(futures::future::join_all(calls))
            .into_iter()
            .map(|r| r.map(|_| ()).map_err(failure))
            .collect()
    }

    /// CopyFile exactly as given.
    pub fn copy_file(&self, r: &CopyFileRequest) -> Result<(), Failure> {
        self.rt
            .block_on(self.c.agent.copy_file(self.c.ctx(), r))
            .map(|_| ())
            .map_err(failure)
    }

    /// CopyFile of one chunk: `data` at `offset` of a file of `size`
    /// bytes and `mode` at `path` (parent directories 0750).
    pub fn copy_chunk(&self, path: &str, size: i64, mode: u32, offset: i64, data: &[u8]) -> Result<(), Failure> {
        let mut r = CopyFileRequest::new();
        (r.path, r.file_size, r.file_mode, r.dir_mode, r.offset, r.data) =
            (path.into(), size, mode, 0o750, offset, data.to_vec());
        self.copy_file(&r)
    }

    pub fn create_with(&self, id: &str, spec: oci::Spec, storages: Vec<Storage>) -> Result<(), Failure> {
        let mut r = CreateContainerRequest::new();
        r.container_id = id.into();
        r.exec_id = id.into();
        r.OCI = Some(spec).into();
        r.storages = storages;
        self.rt
            .block_on(self.c.agent.create_container(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn create(&self, id: &str, spec: oci::Spec) -> Result<(), Failure> {
        self.create_with(id, spec, Vec::new())
    }

    pub fn start_c(&self, id: &str) -> Result<(), Failure> {
        let mut r = StartContainerRequest::new();
        r.container_id = id.into();
        self.rt
            .block_on(self.c.agent.start_container(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Result<(), Failure> {
        self.exec_with(id, exec_id, process(args))
    }

    /// ExecProcess with a process built by the caller.
    pub fn exec_with(&self, id: &str, exec_id: &str, p: oci::Process) -> Result<(), Failure> {
        let mut r = ExecProcessRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        r.process = Some(p).into();
        self.rt
            .block_on(self.c.agent.exec_process(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    /// ExecProcess with a terminal of rows × cols.
    pub fn exec_tty(&self, id: &str, exec_id: &str, args: &[&str], rows: u32, cols: u32) -> Result<(), Failure> {
        let mut p = process(args);
        p.Terminal = true;
        let mut b = oci::Box::new();
        (b.Height, b.Width) = (rows, cols);
        p.ConsoleSize = Some(b).into();
        self.exec_with(id, exec_id, p)
    }

    pub fn resize(&self, id: &str, exec_id: &str, rows: u32, cols: u32) -> Result<(), Failure> {
        let mut r = TtyWinResizeRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        (r.row, r.column) = (rows, cols);
        self.rt
            .block_on(self.c.agent.tty_win_resize(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn wait(&self, id: &str, exec_id: &str) -> Result<i32, Failure> {
        let mut r = WaitProcessRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        self.rt
            .block_on(self.c.agent.wait_process(self.c.long_poll(), &r))
            .map(|r| r.status)
            .map_err(failure)
    }

    pub fn signal(&self, id: &str, exec_id: &str, sig: u32) -> Result<(), Failure> {
        let mut r = SignalProcessRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        r.signal = sig;
        self.rt
            .block_on(self.c.agent.signal_process(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn write(&self, id: &str, exec_id: &str, data: &[u8]) -> Result<u32, Failure> {
        let mut r = WriteStreamRequest::new();
        r.container_id = id.into();
        r.exec_id = exec_id.into();
        r.data = data.to_vec();
        self.rt
            .block_on(self.c.agent.write_stdin(self.c.ctx(), &r))
            .map(|r| r.len)
            .map_err(failure)
    }

    /// One ReadStdout of up to `len` bytes (empty at EOF).
    pub fn read_some(&self, id: &str, exec_id: &str, len: u32) -> Vec<u8> {
        let r = read_request(id, exec_id, len);
        self.rt
            .block_on(self.c.agent.read_stdout(self.c.ctx(), &r))
            .unwrap()
            .data
    }

    /// Reads stdout (or stderr) until EOF.
    pub fn read_all(&self, id: &str, exec_id: &str, stderr: bool) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        loop {
            let r = read_request(id, exec_id, 1 << 20);
            let resp = if stderr {
                self.rt.block_on(self.c.agent.read_stderr(self.c.long_poll(), &r))
            } else {
                self.rt.block_on(self.c.agent.read_stdout(self.c.long_poll(), &r))
            };
            let chunk = resp.map_err(failure)?.data;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend(chunk);
        }
    }

    /// Reads stdout until it holds `needle` (each read bounded by the
    /// client's 30 s call timeout, so a missing line fails, never hangs).
    pub fn read_until(&self, id: &str, exec_id: &str, needle: &str) -> Result<String, Failure> {
        let mut out = Vec::new();
        while !String::from_utf8_lossy(&out).contains(needle) {
            let r = read_request(id, exec_id, 1 << 20);
            let chunk = self
                .rt
                .block_on(self.c.agent.read_stdout(self.c.ctx(), &r))
                .map_err(failure)?
                .data;
            if chunk.is_empty() {
                break; // EOF
            }
            out.extend(chunk);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    pub fn remove(&self, id: &str) -> Result<(), Failure> {
        let mut r = RemoveContainerRequest::new();
        r.container_id = id.into();
        r.timeout = 10;
        self.rt
            .block_on(self.c.agent.remove_container(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    /// GetDiagnosticData of `log_type`: its data.
    pub fn diagnostic(&self, log_type: &str) -> Result<String, Failure> {
        let mut r = bosun_protocols::agent::GetDiagnosticDataRequest::new();
        r.log_type = log_type.into();
        self.rt
            .block_on(self.c.agent.get_diagnostic_data(self.c.ctx(), &r))
            .map(|d| d.data)
            .map_err(failure)
    }

    pub fn update_memory(&self, id: &str, limit: i64) -> Result<(), Failure> {
        let mut r = UpdateContainerRequest::new();
        r.container_id = id.into();
        let mut res = oci::LinuxResources::new();
        let mut m = oci::LinuxMemory::new();
        m.Limit = limit;
        res.Memory = Some(m).into();
        r.resources = Some(res).into();
        self.rt
            .block_on(self.c.agent.update_container(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn stats(&self, id: &str) -> Result<StatsContainerResponse, Failure> {
        let mut r = StatsContainerRequest::new();
        r.container_id = id.into();
        self.rt
            .block_on(self.c.agent.stats_container(self.c.ctx(), &r))
            .map_err(failure)
    }

    pub fn pause(&self, id: &str, pause: bool) -> Result<(), Failure> {
        if pause {
            let mut r = PauseContainerRequest::new();
            r.container_id = id.into();
            self.rt
                .block_on(self.c.agent.pause_container(self.c.ctx(), &r))
                .map(|_| ())
                .map_err(failure)
        } else {
            let mut r = ResumeContainerRequest::new();
            r.container_id = id.into();
            self.rt
                .block_on(self.c.agent.resume_container(self.c.ctx(), &r))
                .map(|_| ())
                .map_err(failure)
        }
    }

    /// Directories of this agent's cgroup parent that exist now.
    pub fn cgroup_dirs(&self) -> Vec<std::path::PathBuf> {
        let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        text.lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                let base = if ctrls.is_empty() {
                    "/sys/fs/cgroup".to_string()
                } else {
                    format!("/sys/fs/cgroup/{}", ctrls.split(',').next()?)
                };
                Some(
                    Path::new(&base)
                        .join(path.trim_start_matches('/'))
                        .join(&self.cgroup_parent),
                )
            })
            .filter(|d| d.exists())
            .collect()
    }

    /// SetPolicy with `rego`.
    pub fn set_policy(&self, rego: &str) -> Result<(), Failure> {
        let mut r = SetPolicyRequest::new();
        r.policy = rego.into();
        self.rt
            .block_on(self.c.agent.set_policy(self.c.ctx(), &r))
            .map(|_| ())
            .map_err(failure)
    }

    pub fn destroy(&self) -> Result<(), Failure> {
        self.rt
            .block_on(
                self.c
                    .agent
                    .destroy_sandbox(self.c.ctx(), &DestroySandboxRequest::new()),
            )
            .map(|_| ())
            .map_err(failure)
    }
}

impl Drop for Pod {
    /// Best effort: whatever a failed test left running is torn down
    /// before the agent is killed.
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

/// A ReadStdout/ReadStderr request for up to `len` bytes.
fn read_request(id: &str, exec_id: &str, len: u32) -> ReadStreamRequest {
    let mut r = ReadStreamRequest::new();
    r.container_id = id.into();
    r.exec_id = exec_id.into();
    r.len = len;
    r
}
