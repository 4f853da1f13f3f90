//! A registry of the tests' and the benchmark's own: Debian's
//! `docker-registry` (the CNCF distribution registry) on 127.0.0.1 inside a
//! network namespace made for it, images pushed to it with `skopeo`. The
//! namespace keeps it off this machine's network; an agent that is to pull
//! from it joins the namespace (`NetNs::path`).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A network namespace held open by a sleeping process of ours, with its
/// loopback up; the process is killed (by pid) when this is dropped.
pub struct NetNs {
    holder: Child,
}

impl NetNs {
    /// A new namespace (needs root).
    pub fn new() -> io::Result<Self> {
        let holder = Command::new("unshare")
            .args(["--net", "--", "sleep", "infinity"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let ns = Self { holder };
        let mine = std::fs::read_link("/proc/self/ns/net")?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(ns.path()).ok().as_ref() == Some(&mine) || !ns.path().exists() {
            if Instant::now() > deadline {
                return Err(io::Error::other("the namespace holder did not unshare"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = ns.command("ip").args(["link", "set", "lo", "up"]).status()?;
        if !st.success() {
            return Err(io::Error::other("ip link set lo up failed in the namespace"));
        }
        Ok(ns)
    }

    /// The holder's pid.
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `/proc/PID/ns/net`, for `nsenter --net=` or setns.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.holder.id()))
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        c
    }

    /// Runs `f` on a thread that has joined the namespace (a network
    /// namespace is per thread), and returns what it returns.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = self.path();
        std::thread::spawn(move || -> io::Result<T> {
            enter(&path)?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("thread in the namespace panicked"))?
    }

    /// Starts a thread that joins the namespace and then runs `f`.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let path = self.path();
        std::thread::spawn(move || {
            if enter(&path).is_ok() {
                f()
            }
        });
    }
}

/// A command (the program is added by the caller) in new mount, UTS and
/// IPC namespaces (propagation private) and the network namespace `net`,
/// or a new one: how the tests and the bench run bosun off this machine's
/// mounts, hostname and network.
pub fn isolated_command(net: Option<&Path>) -> Command {
    let mut c = match net {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).args(["--", "unshare"]);
            c
        }
        None => {
            let mut c = Command::new("unshare");
            c.arg("--net");
            c
        }
    };
    c.args(["--mount", "--uts", "--ipc", "--propagation", "private", "--"]);
    c
}

/// Joins the network namespace at `path`, for the calling thread only.
pub fn enter(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// How the registry authenticates.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP basic against an htpasswd file (bcrypt).
    Htpasswd(PathBuf),
    /// The bearer-token flow, tokens signed by the certificate's key.
    Token {
        /// Token endpoint URL.
        realm: String,
        /// `service` the registry names.
        service: String,
        /// `iss` of the tokens.
        issuer: String,
        /// PEM certificate the registry verifies tokens with.
        cert: PathBuf,
    },
}

/// A running registry; killed (by pid) when dropped.
pub struct Registry {
    child: Child,
    /// Its data and log.
    pub dir: PathBuf,
    /// `IP:PORT` inside the namespace (127.0.0.1 unless started at another).
    pub addr: String,
}

impl Registry {
    /// Starts `docker-registry` in `ns` on `port`, its storage under `dir`.
    pub fn start(ns: &NetNs, dir: &Path, port: u16, auth: &Auth) -> io::Result<Self> {
        Self::start_tls(ns, dir, port, auth, None)
    }

    /// As `start`, serving HTTPS with `tls` (PEM certificate, key) if given.
    pub fn start_tls(ns: &NetNs, dir: &Path, port: u16, auth: &Auth, tls: Option<(&Path, &Path)>) -> io::Result<Self> {
        Self::start_at(ns, dir, &format!("127.0.0.1:{port}"), auth, tls)
    }

    /// As `start_tls`, listening on `addr` (`IP:PORT` of the namespace).
    pub fn start_at(ns: &NetNs, dir: &Path, addr: &str, auth: &Auth, tls: Option<(&Path, &Path)>) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("data"))?;
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd(p) => format!("auth:\n  htpasswd:\n    realm: bosun-test\n    path: {}\n", p.display()),
            Auth::Token {
                realm,
                service,
                issuer,
                cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let addr = addr.to_string();
        let tls_yaml = match tls {
            Some((cert, key)) => format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{tls_yaml}{auth_yaml}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = ns
            .command("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let r = Self {
            child,
            dir: dir.to_path_buf(),
            addr: addr.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let a = addr.clone();
            if ns.run(move || std::net::TcpStream::connect(a).is_ok())? {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "docker-registry did not listen on {addr}: {}",
                    std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pushes the OCI layout `layout` (tag `tag`) as `name:tag`, with
    /// `creds` (`user:password`) when the registry wants them.
    pub fn push(&self, ns: &NetNs, layout: &Path, tag: &str, name: &str, creds: Option<&str>) -> io::Result<String> {
        let mut c = ns.command("skopeo");
        c.args([
            "copy",
            "--insecure-policy",
            "--quiet",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(cr) = creds {
            c.args(["--dest-creds", cr]);
        }
        let dest = format!("{}/{name}:{tag}", self.addr);
        let out = c
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{dest}"))
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "skopeo copy to {dest}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(dest)
    }

    /// Where the registry keeps blob `digest` (to damage it on purpose).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = &digest["sha256:".len()..];
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
