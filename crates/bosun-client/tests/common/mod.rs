//! Shared test helpers: start a bosun process, wait for it, stop it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun::transport::Address;
use bosun_client::Client;

/// A bosun process started by a test; killed (by its pid) when dropped.
pub struct Agent {
    pub child: Child,
    pub addr: Address,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    isolated: bool,
    /// A network namespace to run in (`/proc/PID/ns/net`) instead of a new one.
    net: Option<PathBuf>,
    /// Shell commands an isolated agent runs in its namespaces first.
    setup: String,
}

/// The shell steps of an isolated agent: a fresh tmpfs on /run in its own
/// mount namespace, so the fixed paths runtimes use (/run/kata-containers)
/// are the test's alone and vanish with it; then the test's own set-up
/// (it may make things under that /run); then bosun.
const ISOLATED_RUN: &str = "mount -t tmpfs -o mode=0755,size=256m bosun-test-run /run && ";
const EXEC_AGENT: &str = "exec \"$0\" \"$@\"";

/// Spawns bosun with `args`, its stderr appended to DIR/bosun.log. An
/// isolated one runs in its own mount, UTS, IPC and network namespaces
/// with its own /run (the pid stays bosun's: unshare and sh exec it).
fn spawn(args: &[String], dir: &Path, env: &[(&str, &str)], isolated: bool, net: Option<&Path>, setup: &str) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bosun.log"))
        .expect("log file");
    let mut cmd = if isolated {
        // New mount, UTS and IPC namespaces; the network namespace `net`
        // (a test registry's) or a new one.
        let mut c = bosun_client::local_registry::isolated_command(net);
        c.args(["sh", "-c", &format!("{ISOLATED_RUN}{setup}{EXEC_AGENT}")]);
        c.arg(agent_bin());
        c
    } else {
        Command::new(agent_bin())
    };
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn bosun")
}

impl Agent {
    /// Starts bosun on a unix socket in a fresh temp dir.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = Address::Unix(dir.path().join("bosun.sock"));
        Self::start_at(addr, dir, &[])
    }

    /// Starts bosun at `addr` with extra flags.
    pub fn start_at(addr: Address, dir: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::start_with(addr, dir, extra, false)
    }

    /// Starts bosun at `addr`, isolated (see `spawn`) when asked.
    pub fn start_with(addr: Address, dir: tempfile::TempDir, extra: &[&str], isolated: bool) -> Self {
        Self::start_in(addr, dir, extra, isolated, None)
    }

    /// As `start_with`, isolated but in the network namespace `net`.
    pub fn start_in(
        addr: Address,
        dir: tempfile::TempDir,
        extra: &[&str],
        isolated: bool,
        net: Option<PathBuf>,
    ) -> Self {
        Self::start_after(addr, dir, extra, isolated, net, "")
    }

    /// As `start_in`; an isolated agent first runs `setup` (shell commands
    /// ending in `&&`) in its own namespaces.
    pub fn start_after(
        addr: Address,
        dir: tempfile::TempDir,
        extra: &[&str],
        isolated: bool,
        net: Option<PathBuf>,
        setup: &str,
    ) -> Self {
        // Every agent gets its own run dir (never the machine's /run/bosun).
        let mut args: Vec<String> = vec![
            "--server-addr".into(),
            addr.to_string(),
            "--log-level".into(),
            "debug".into(),
            "--shutdown-timeout".into(),
            "2".into(),
        ];
        if !extra.contains(&"--run-dir") {
            args.extend([
                "--run-dir".to_string(),
                dir.path().join("run").to_str().expect("utf-8").to_string(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = spawn(&args, dir.path(), &[], isolated, net.as_deref(), setup);
        let a = Agent {
            child,
            addr,
            dir,
            args,
            isolated,
            net,
            setup: setup.to_string(),
        };
        a.wait_ready();
        a
    }

    /// SIGKILLs this bosun (no clean-up of any kind) and waits for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts bosun again with the same flags (after `kill9` or a crash),
    /// with `env` added; does not wait for it to serve.
    pub fn respawn(&mut self, env: &[(&str, &str)]) {
        self.child = spawn(
            &self.args,
            self.dir.path(),
            env,
            self.isolated,
            self.net.as_deref(),
            &self.setup,
        );
    }

    /// Polls Check until it answers (5 s bound).
    pub fn wait_ready(&self) {
        let rt = rt();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ok = rt.block_on(async {
                match Client::connect(&self.addr, Duration::from_millis(500)).await {
                    Ok(c) => c.check().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bosun did not become ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A path as this agent sees it (through /proc/PID/root: an isolated
    /// agent has its own mounts).
    pub fn seen(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.child.id()))
    }

    /// Mount points at or under `dir` in this agent's mount namespace.
    pub fn mounts_under(&self, dir: &str) -> Vec<String> {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.child.id()))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(dir))
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bosun.log")).unwrap_or_default()
    }

    /// The log once every one of `needles` is in it (30 s bound): the
    /// agent's logger writes from its own thread, after the call that logs
    /// has answered, so a log read at once can miss the line on a busy
    /// machine. Panics naming what is missing.
    pub fn log_with(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if needles.iter().all(|n| log.contains(n)) {
                return log;
            }
            assert!(Instant::now() < deadline, "the log never said {needles:?}:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket_path(&self) -> PathBuf {
        match &self.addr {
            Address::Unix(p) => p.clone(),
            other => panic!("not a path socket: {other}"),
        }
    }

    /// Sends SIGTERM and waits for the exit status (5 s bound).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM our own bosun");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(Instant::now() < deadline, "bosun did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The agent binary, `bosun`, from the target directory this test runs
/// from: the agent is another package of the workspace, so cargo gives its
/// tests no `CARGO_BIN_EXE_bosun`. `make test` builds it first.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/bosun
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test runs from target/<profile>/deps")
        .join("bosun");
    assert!(
        bin.exists(),
        "{} is missing: build the agent first (`make test` does; or `cargo build --workspace`)",
        bin.display()
    );
    // A test of the client package does not rebuild the agent: an agent
    // older than its sources would test yesterday's code.
    static FRESH: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let newer = FRESH.get_or_init(|| {
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok()?;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bosun/src");
        let mut stack = vec![src];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t > built) {
                    return Some(p);
                }
            }
        }
        None
    });
    if let Some(p) = newer {
        panic!(
            "{} is older than {}: rebuild the agent (`make test` does; or `cargo build --workspace`)",
            bin.display(),
            p.display()
        );
    }
    bin
}

/// A current-thread runtime for one test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs bosunctl with `args`; returns (exit code, stdout, stderr).
pub fn bosunctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bosunctl"))
        .args(args)
        .env_remove("BOSUNCTL_ADDR")
        .output()
        .expect("run bosunctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A unique abstract socket name for this test process.
pub fn abstract_name(tag: &str) -> String {
    format!("bosun-test-{}-{tag}", std::process::id())
}

pub mod fixtures;
pub mod pod;
pub mod registry;

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Busybox applets linked into test rootfs images.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ps", "hostname", "sleep", "true", "false", "yes", "head", "wc", "ls", "md5sum", "env", "id",
    "pwd", "tr", "kill", "mount", "grep", "stty",
];

/// Builds a minimal busybox rootfs under `dir`; returns its path.
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = bosun_client::spec::busybox_rootfs(dir, APPLETS).expect("busybox rootfs");
    std::fs::write(root.join("etc/hostname"), "image\n").unwrap();
    root
}

/// Mount points at or under `dir` in this mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    bosun::mount::mountinfo::mount_points()
        .unwrap()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// A loop device over an image file; detached when dropped.
pub struct Loop(pub String);

impl Loop {
    pub fn ext4_with_busybox(dir: &Path) -> Self {
        let img = dir.join("rootfs.img");
        let src = busybox_rootfs(&dir.join("src"));
        let st = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-d"])
            .arg(&src)
            .arg(&img)
            .arg("16M")
            .status()
            .expect("mkfs.ext4 (e2fsprogs)");
        assert!(st.success());
        Self::attach(&img)
    }

    /// A loop device over `img`.
    pub fn attach(img: &Path) -> Self {
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(img)
            .output()
            .expect("losetup");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The AgentService methods bosun serves; every other method declared in
/// protocols/agent.proto must answer UNIMPLEMENTED.
pub const SERVED: &[&str] = &[
    "CreateSandbox",
    "DestroySandbox",
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "ExecProcess",
    "SignalProcess",
    "WaitProcess",
    "ReadStdout",
    "ReadStderr",
    "WriteStdin",
    "CloseStdin",
    "GetGuestDetails",
    "OnlineCPUMem",
    "UpdateContainer",
    "StatsContainer",
    "PauseContainer",
    "ResumeContainer",
    "GetDiagnosticData",
    "TtyWinResize",
    "CopyFile",
    "SetGuestDateTime",
    "UpdateEphemeralMounts",
    "GetOOMEvent",
    "ListInterfaces",
    "UpdateInterface",
    "ListRoutes",
    "UpdateRoutes",
    "AddARPNeighbors",
    "GetMetrics",
    "GetVolumeStats",
    "ResizeVolume",
    "AddSwap",
    "AddSwapPath",
    "MemHotplugByProbe",
    "ReseedRandomDev",
    "RemoveStaleVirtiofsShareMounts",
    "GetIPTables",
    "SetIPTables",
    "SetPolicy",
];

/// One value of the agent's GetMetrics.
pub fn metric(agent: &Agent, name: &str) -> f64 {
    let rt = rt();
    rt.block_on(async {
        let c = Client::connect(&agent.addr, Duration::from_secs(10)).await.unwrap();
        let m = c
            .agent
            .get_metrics(c.ctx(), &bosun_protocols::agent::GetMetricsRequest::new())
            .await
            .unwrap();
        m.metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in GetMetrics"))
    })
}

/// Polls `f` until it holds (30 s bound: a busy machine is slow, not wrong).
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
