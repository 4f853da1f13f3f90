//! The tests' registry: `bosun_client::local_registry` (docker-registry in
//! a network namespace of its own) plus what only tests need: an htpasswd
//! file, a token endpoint that signs real JWTs (with openssl) for the
//! registry's token auth, and a TCP proxy in front of the registry that
//! can stall or slow a transfer and counts blob requests. The proxy is the
//! one fake here: a registry that stalls mid-blob cannot be caused with
//! the real one.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bosun_client::local_registry::{Auth, NetNs, Registry};
use bosun_client::oci_layout::{self, Comp, Entry};

/// Applets the test images link to busybox.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "hostname", "stat", "id", "true", "md5sum", "head", "wc",
];

/// A registry in its own namespace, its files in a temp dir.
pub struct TestRegistry {
    pub reg: Registry,
    pub ns: NetNs,
    pub dir: tempfile::TempDir,
}

pub const PORT: u16 = 5000;
pub const PROXY_PORT: u16 = 5001;
pub const TOKEN_PORT: u16 = 5002;
pub const TLS_PORT: u16 = 5443;
pub const USER: &str = "puller";
pub const PASSWORD: &str = "s3cret-pw";

impl TestRegistry {
    pub fn anonymous() -> Self {
        Self::start(|_| Auth::None)
    }

    /// Basic auth with USER/PASSWORD.
    pub fn basic() -> Self {
        Self::start(|dir| {
            let hash = bcrypt::hash(PASSWORD, 4).unwrap();
            let p = dir.join("htpasswd");
            std::fs::write(&p, format!("{USER}:{hash}\n")).unwrap();
            Auth::Htpasswd(p)
        })
    }

    fn start(auth: impl FnOnce(&Path) -> Auth) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ns = NetNs::new().expect("network namespace");
        let auth = auth(dir.path());
        let reg = Registry::start(&ns, &dir.path().join("registry"), PORT, &auth).expect("docker-registry");
        Self { reg, ns, dir }
    }

    /// HTTPS on TLS_PORT, anonymous: a certificate for 127.0.0.1 signed by
    /// a CA made here, whose PEM is returned (for SSL_CERT_FILE).
    pub fn tls() -> (Self, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ns = NetNs::new().expect("network namespace");
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=bosun-test-ca",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", "reg.key", "-out", "reg.csr", "-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "reg.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "reg.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        let reg = Registry::start_tls(
            &ns,
            &d.join("registry"),
            TLS_PORT,
            &Auth::None,
            Some((&d.join("reg.pem"), &d.join("reg.key"))),
        )
        .expect("docker-registry");
        let ca = d.join("ca.pem");
        (Self { reg, ns, dir }, ca)
    }

    /// Token auth: the endpoint (served here) signs tokens for USER/PASSWORD.
    pub fn token() -> (Self, Arc<TokenServer>) {
        let dir = tempfile::tempdir().unwrap();
        let ns = NetNs::new().expect("network namespace");
        let ts = TokenServer::start(&ns, dir.path());
        let auth = Auth::Token {
            realm: format!("http://127.0.0.1:{TOKEN_PORT}/token"),
            service: "bosun-test-registry".into(),
            issuer: "bosun-test-issuer".into(),
            cert: ts.cert.clone(),
        };
        let reg = Registry::start(&ns, &dir.path().join("registry"), PORT, &auth).expect("docker-registry");
        (Self { reg, ns, dir }, ts)
    }

    /// Writes `layers` as an OCI layout and pushes it as `name:tag`.
    pub fn push(&self, name: &str, tag: &str, layers: &[(Vec<Entry>, Comp)], creds: Option<&str>) -> oci_layout::Built {
        self.push_padded(name, tag, layers, 0, creds)
    }

    pub fn push_padded(
        &self,
        name: &str,
        tag: &str,
        layers: &[(Vec<Entry>, Comp)],
        config_pad: usize,
        creds: Option<&str>,
    ) -> oci_layout::Built {
        let layout = self.dir.path().join(format!("layout-{name}-{tag}"));
        let built = oci_layout::write_layout(&layout, tag, layers, config_pad).unwrap();
        self.reg.push(&self.ns, &layout, tag, name, creds).unwrap();
        built
    }

    /// The reference bosun pulls `name:tag` by.
    pub fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.reg.addr)
    }
}

/// The bottom layer of every test image: busybox and its applets.
pub fn busybox_layer() -> Vec<Entry> {
    oci_layout::busybox_layer(APPLETS).expect("busybox layer (busybox-static: scripts/setup.sh test)")
}

/// base64url without padding (JWT).
pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A token endpoint: `GET /token?service=&scope=` with basic USER/PASSWORD
/// → a JWT (RS256, x5c: the certificate the registry trusts) granting the
/// scope's actions.
pub struct TokenServer {
    pub cert: PathBuf,
    key: PathBuf,
    cert_der_b64: String,
    /// Requests served, with the scope asked for.
    pub requests: Mutex<Vec<String>>,
}

impl TokenServer {
    fn start(ns: &NetNs, dir: &Path) -> Arc<Self> {
        let (key, cert) = (dir.join("token.key"), dir.join("token.crt"));
        let st = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bosun-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(
            st.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("openssl x509");
        let ts = Arc::new(Self {
            cert,
            key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(der.stdout),
            requests: Mutex::new(Vec::new()),
        });
        let listener = ns
            .run(|| TcpListener::bind(("127.0.0.1", TOKEN_PORT)).expect("bind token port"))
            .unwrap();
        let t = ts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let t = t.clone();
                std::thread::spawn(move || t.serve(conn));
            }
        });
        ts
    }

    fn serve(&self, mut conn: TcpStream) {
        let mut buf = [0u8; 8192];
        let n = conn.read(&mut buf).unwrap_or(0);
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        let line = req.lines().next().unwrap_or("").to_string();
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        let authorized = req
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == want);
        let scope = line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("scope="))
            .unwrap_or("")
            .replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",");
        self.requests.lock().unwrap().push(scope.clone());
        let resp = if !authorized {
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        } else {
            let body = format!("{{\"token\":\"{}\"}}", self.sign(&scope));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = conn.write_all(resp.as_bytes());
    }

    fn sign(&self, scope: &str) -> String {
        let mut parts = scope.splitn(3, ':');
        let (typ, name, actions) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]});
        let claims = serde_json::json!({
            "iss": "bosun-test-issuer", "sub": USER, "aud": "bosun-test-registry",
            "exp": now + 600, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_u64()),
            "access": [{"type": typ, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl dgst");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        format!("{input}.{}", b64url(&out.stdout))
    }
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// A TCP proxy in front of the registry (PROXY_PORT → PORT). Per
/// connection it can stop relaying the registry's answer after
/// `stall_after` bytes (holding the connection open), and slow it to
/// `rate` bytes a second; it records every request line.
pub struct Proxy {
    pub stall_after: AtomicU64,
    pub rate: AtomicU64,
    pub requests: Mutex<Vec<String>>,
    pub connections: AtomicUsize,
    /// The next this many connections get `503 Service Unavailable` to
    /// their first request, and are closed.
    pub fail_next: AtomicUsize,
    /// The answer to the next GET of this blob is cut (the connection
    /// closed) after this many bytes; then never again.
    pub cut_blob: Mutex<Option<(String, u64)>>,
}

impl Proxy {
    pub fn start(ns: &NetNs) -> Arc<Self> {
        let p = Arc::new(Self {
            stall_after: AtomicU64::new(u64::MAX),
            rate: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            cut_blob: Mutex::new(None),
        });
        let listener = ns
            .run(|| TcpListener::bind(("127.0.0.1", PROXY_PORT)).expect("bind proxy port"))
            .unwrap();
        let path = ns.path();
        let pp = p.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (p, path) = (pp.clone(), path.clone());
                std::thread::spawn(move || {
                    if bosun_client::local_registry::enter(&path).is_ok() {
                        p.relay(conn);
                    }
                });
            }
        });
        p
    }

    /// Blob GETs seen for `digest`.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains(&format!("/blobs/{digest}")))
            .count()
    }

    fn relay(self: Arc<Self>, mut client: TcpStream) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let failing = self
            .fail_next
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            let mut buf = [0u8; 4096];
            let n = client.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            self.requests.lock().unwrap().push(format!("503 {line}"));
            let _ =
                client.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", PORT)) else {
            return;
        };
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let p = self.clone();
        // Set (to how many bytes to let through) when this connection asks
        // for the blob to cut.
        let cut_at = Arc::new(AtomicU64::new(u64::MAX));
        let cut_up = cut_at.clone();
        // Requests: client → registry, lines recorded.
        let up = std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            loop {
                let n = match c_read.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let text = String::from_utf8_lossy(&buf[..n]);
                for l in text.lines().filter(|l| {
                    l.starts_with("GET ") || l.starts_with("HEAD ") || l.to_ascii_lowercase().starts_with("range:")
                }) {
                    p.requests.lock().unwrap().push(l.to_string());
                    let mut cut = p.cut_blob.lock().unwrap();
                    if cut
                        .as_ref()
                        .is_some_and(|(d, _)| l.starts_with("GET ") && l.contains(&format!("/blobs/{d}")))
                    {
                        let (_, after) = cut.take().unwrap();
                        cut_up.store(after, Ordering::Relaxed);
                    }
                }
                if s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_write.shutdown(std::net::Shutdown::Write);
        });
        let (mut s_read, mut c_write) = (server, client);
        let mut buf = [0u8; 16384];
        let mut sent = 0u64;
        let mut counting_from = None;
        loop {
            let cut = cut_at.load(Ordering::Relaxed);
            if cut != u64::MAX {
                let from = *counting_from.get_or_insert(sent);
                if sent - from >= cut {
                    break; // cut: the connection closes mid-answer
                }
            }
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let limit = self.stall_after.load(Ordering::Relaxed);
            if sent + n as u64 > limit {
                let keep = limit.saturating_sub(sent) as usize;
                let _ = c_write.write_all(&buf[..keep]);
                // Stalled: hold the connection, send nothing more.
                std::thread::sleep(Duration::from_secs(60));
                break;
            }
            let rate = self.rate.load(Ordering::Relaxed);
            if rate > 0 {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
            }
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
        }
        let _ = c_write.shutdown(std::net::Shutdown::Both);
        let _ = up.join();
    }
}

/// One HTTP/1.1 request to the registry (inside its namespace); returns
/// (status, Location header, body).
fn http(reg: &TestRegistry, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let (m, p, ct, addr) = (
        method.to_string(),
        path.to_string(),
        content_type.to_string(),
        reg.reg.addr.clone(),
    );
    reg.ns
        .run(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let head = format!(
                "{m} {p} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).unwrap();
            let split = resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(resp.len());
            let head = String::from_utf8_lossy(&resp[..split]).to_string();
            let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let location = head
                .lines()
                .find_map(|l| l.strip_prefix("Location: ").or_else(|| l.strip_prefix("location: ")))
                .unwrap_or("")
                .to_string();
            (status, location, resp[(split + 4).min(resp.len())..].to_vec())
        })
        .unwrap()
}

/// Uploads a blob by the registry API (monolithic: POST, then PUT).
pub fn raw_blob(reg: &TestRegistry, name: &str, data: &[u8]) -> String {
    let d = bosun::image::sha256_digest(data);
    let (st, loc, _) = http(
        reg,
        "POST",
        &format!("/v2/{name}/blobs/uploads/"),
        "application/octet-stream",
        Vec::new(),
    );
    assert_eq!(st, 202, "start upload");
    let path = loc
        .split_once("://")
        .map(|(_, r)| &r[r.find('/').unwrap_or(0)..])
        .unwrap_or(&loc)
        .to_string();
    let sep = if path.contains('?') { '&' } else { '?' };
    let (st, _, body) = http(
        reg,
        "PUT",
        &format!("{path}{sep}digest={d}"),
        "application/octet-stream",
        data.to_vec(),
    );
    assert_eq!(st, 201, "finish upload: {}", String::from_utf8_lossy(&body));
    d
}

/// An image whose config is `config` (any bytes: for the size cap), one
/// small layer, pushed by the registry API as `name:tag`.
pub fn raw_push(reg: &TestRegistry, name: &str, tag: &str, config: &[u8]) {
    let tar = oci_layout::layer_tar(&[Entry::File("f".into(), b"x".to_vec(), 0o644)]).unwrap();
    let layer = raw_blob(reg, name, &tar);
    let cfg = raw_blob(reg, name, config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": tar.len()}],
    });
    let (st, _, body) = http(
        reg,
        "PUT",
        &format!("/v2/{name}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().into_bytes(),
    );
    assert_eq!(st, 201, "put manifest: {}", String::from_utf8_lossy(&body));
}

/// Debian's tinyproxy, a real HTTP proxy (CONNECT and absolute-URL GETs),
/// in the registry's namespace on 127.0.0.1:TINYPROXY_PORT; stopped (by
/// its pid) when dropped.
pub struct Tinyproxy {
    child: std::process::Child,
    pub log: PathBuf,
}

pub const TINYPROXY_PORT: u16 = 8888;

impl Tinyproxy {
    pub fn start(ns: &NetNs, dir: &Path) -> Self {
        let conf = dir.join("tinyproxy.conf");
        let log = dir.join("tinyproxy.log");
        // No ConnectPort line: CONNECT to any port.
        std::fs::write(
            &conf,
            format!(
                "Port {TINYPROXY_PORT}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\nMaxClients 50\nAllow 127.0.0.1\n",
                log.display()
            ),
        )
        .unwrap();
        let child = ns
            .command("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tinyproxy (apt install tinyproxy)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ns
            .run(|| TcpStream::connect(("127.0.0.1", TINYPROXY_PORT)).is_ok())
            .unwrap()
        {
            assert!(std::time::Instant::now() < deadline, "tinyproxy did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, log }
    }

    /// The request lines tinyproxy logged ("GET http://…", "CONNECT …").
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("Request (file descriptor ").map(|(_, r)| r.to_string()))
            .collect()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{TINYPROXY_PORT}")
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
