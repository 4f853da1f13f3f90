//! The floor: a plain unix-socket request/response of the same sizes as a
//! ttrpc Check, no RPC layer at all. Measured two ways: between two
//! processes (the agent's topology: the client and bosun are processes) and
//! between two threads of this process.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protobuf::Message;

use crate::stats::Samples;

/// Bytes on the wire for a Check request and its response (ttrpc's 10-byte
/// header plus the encoded envelope), computed from the real messages.
pub fn check_sizes() -> (usize, usize) {
    let mut req = ttrpc::proto::Request::new();
    req.set_service("grpc.Health".into());
    req.set_method("Check".into());
    req.set_timeout_nano(5_000_000_000);
    let mut status = bosun_protocols::health::HealthCheckResponse::new();
    status.status = bosun_protocols::health::health_check_response::ServingStatus::SERVING.into();
    let mut resp = ttrpc::proto::Response::new();
    resp.payload = status.write_to_bytes().unwrap_or_default();
    (10 + req.compute_size() as usize, 10 + resp.compute_size() as usize)
}

/// Answers `resp` bytes for every `req` bytes read, until EOF.
pub fn echo(mut s: UnixStream, req: usize, resp: usize) {
    let (mut inb, out) = (vec![0u8; req], vec![7u8; resp]);
    while s.read_exact(&mut inb).is_ok() {
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// `n` request/response round trips of `req` and `resp` bytes on `conn`.
fn round_trips(conn: &mut UnixStream, req: usize, resp: usize, n: usize) -> Result<Samples, String> {
    let (out, mut inb) = (vec![1u8; req], vec![0u8; resp]);
    let mut s = Samples::default();
    for _ in 0..n {
        let t = Instant::now();
        conn.write_all(&out)
            .and_then(|_| conn.read_exact(&mut inb))
            .map_err(|e| format!("floor round trip: {e}"))?;
        s.0.push(t.elapsed());
    }
    Ok(s)
}

/// p50 between two threads.
pub fn threads(n: usize) -> Result<Duration, String> {
    let (req, resp) = check_sizes();
    let (mut a, b) = UnixStream::pair().map_err(|e| format!("socketpair: {e}"))?;
    let server = std::thread::spawn(move || echo(b, req, resp));
    // A warm-up block, then the measured one; then EOF ends the server.
    let p50 = round_trips(&mut a, req, resp, 1000).and_then(|_| round_trips(&mut a, req, resp, n));
    drop(a);
    let _ = server.join();
    p50.map(|s| s.pct(0.5))
}

/// The two-process floor kept up for the whole run, so that its blocks
/// can be interleaved with the agents' (`bosun-bench --floor-server`).
pub struct Floor {
    child: std::process::Child,
    conn: UnixStream,
    req: usize,
    resp: usize,
    _dir: tempfile::TempDir,
}

impl Floor {
    pub fn start() -> Result<Self, String> {
        let (req, resp) = check_sizes();
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path().join("floor.sock");
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let mut child = Command::new(exe)
            .arg("--floor-server")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn the floor server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let conn = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("floor server: {e}"));
                }
            }
        };
        let mut f = Floor {
            child,
            conn,
            req,
            resp,
            _dir: dir,
        };
        f.block(1000)?; // warm-up
        Ok(f)
    }

    /// `n` round trips.
    pub fn block(&mut self, n: usize) -> Result<Samples, String> {
        round_trips(&mut self.conn, self.req, self.resp, n)
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        let _ = self.child.wait();
    }
}

/// The child side of `processes`.
pub fn serve(path: &str) {
    let (req, resp) = check_sizes();
    match UnixListener::bind(path) {
        Ok(l) => {
            if let Ok((s, _)) = l.accept() {
                echo(s, req, resp);
            }
        }
        Err(e) => eprintln!("bosun-bench --floor-server: bind {path}: {e}"),
    }
}
