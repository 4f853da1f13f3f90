//! Check throughput, measured with a client that costs little.
//!
//! In a pod VM the runtime's client runs on the host, not on the guest's
//! CPUs; here both share two cores, so a heavy client (a ttrpc client on a
//! tokio runtime: several tasks and wake-ups per call) takes CPU from the
//! agent it measures and caps both agents at its own speed. This client is
//! plain blocking sockets speaking ttrpc's frames: one or two threads, each
//! sending a Check on every connection it drives, then reading every
//! answer, so each connection has one call in flight, as a runtime's
//! sequential calls do. Every answer is checked (stream id, type, status).
//!
//! The agents are measured in turn, in slices, so noise on the machine
//! falls on both alike; a row is the median slice with the range.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bosun::transport::Address;
use protobuf::Message;

use crate::stats::{spread, Spread};

/// Slices per agent, and how long each lasts.
const SLICES: usize = 7;
const SLICE: Duration = Duration::from_millis(300);

/// A connection and its next stream id.
struct Conn {
    s: UnixStream,
    frame: Vec<u8>,
    id: u32,
    answer: Vec<u8>,
}

impl Conn {
    fn open(addr: &Address) -> Result<Self, String> {
        let s = match addr {
            Address::Unix(p) => UnixStream::connect(p).map_err(|e| format!("{addr}: {e}"))?,
            Address::UnixAbstract(n) => bosun::sys::socket::connect_abstract(n).map_err(|e| format!("{addr}: {e}"))?,
            _ => return Err(format!("{addr}: the throughput client speaks unix sockets only")),
        };
        let mut req = ttrpc::proto::Request::new();
        req.service = "grpc.Health".into();
        req.method = "Check".into();
        req.timeout_nano = 5_000_000_000;
        req.payload = bosun_protocols::health::CheckRequest::new()
            .write_to_bytes()
            .map_err(|e| e.to_string())?;
        let body = req.write_to_bytes().map_err(|e| e.to_string())?;
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0, 1, 0]);
        frame.extend_from_slice(&body);
        Ok(Conn {
            s,
            frame,
            id: 1,
            answer: Vec::new(),
        })
    }

    fn send(&mut self) -> Result<(), String> {
        self.frame[4..8].copy_from_slice(&self.id.to_be_bytes());
        self.s.write_all(&self.frame).map_err(|e| format!("send: {e}"))
    }

    fn receive(&mut self) -> Result<(), String> {
        let mut h = [0u8; 10];
        self.s.read_exact(&mut h).map_err(|e| format!("answer: {e}"))?;
        let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if id != self.id || h[8] != 2 || len > 1 << 20 {
            return Err(format!(
                "answer to stream {id} (type {}, {len} bytes); expected {}",
                h[8], self.id
            ));
        }
        self.answer.resize(len, 0);
        self.s
            .read_exact(&mut self.answer)
            .map_err(|e| format!("answer: {e}"))?;
        let r = ttrpc::proto::Response::parse_from_bytes(&self.answer).map_err(|e| format!("answer: {e}"))?;
        if r.status.code.value() != 0 {
            return Err(format!("Check answered {:?}: {}", r.status.code, r.status.message));
        }
        self.id += 2;
        Ok(())
    }
}

/// Calls answered per second on `conns`, driven by `threads` threads, for
/// `SLICE`.
fn slice(conns: &mut [Conn]) -> Result<f64, String> {
    let threads = conns.len().min(2);
    let per = conns.len().div_ceil(threads);
    let stop = Instant::now() + SLICE;
    let start = Instant::now();
    let counts = std::thread::scope(|sc| {
        let hs: Vec<_> = conns
            .chunks_mut(per)
            .map(|mine| {
                sc.spawn(move || -> Result<u64, String> {
                    let mut n = 0;
                    while Instant::now() < stop {
                        for c in mine.iter_mut() {
                            c.send()?;
                        }
                        for c in mine.iter_mut() {
                            c.receive()?;
                        }
                        n += mine.len() as u64;
                    }
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client thread panicked".into())))
            .collect::<Result<Vec<u64>, String>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / start.elapsed().as_secs_f64())
}

/// Throughput of each agent at `conns` connections, the agents in turn.
pub fn measure(addrs: &[&Address], conns: usize) -> Result<Vec<Spread>, String> {
    let mut sets = Vec::new();
    for a in addrs {
        sets.push((0..conns).map(|_| Conn::open(a)).collect::<Result<Vec<_>, _>>()?);
    }
    let mut rates = vec![Vec::new(); addrs.len()];
    for _ in 0..SLICES {
        for (i, set) in sets.iter_mut().enumerate() {
            rates[i].push(slice(set).map_err(|e| format!("{}: {e}", addrs[i]))?);
        }
    }
    Ok(rates.iter().map(|r| spread(r)).collect())
}
