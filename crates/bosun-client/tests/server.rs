//! bosun's ttrpc server (`crates/bosun/src/rpc/server.rs`) on raw frames, as
//! any client's bytes reach it: pipelined requests each answered once, the
//! codes ttrpc's own server gives for a bad frame, service or method (the
//! connection kept), a waiting call holding up no other and ending at its
//! deadline, and a closed connection taking its waiting calls with it.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use bosun_protocols::health::{health_check_response::ServingStatus, HealthCheckResponse};
use common::{eventually, metric, Agent};
use protobuf::Message;
use ttrpc::proto::{Request, Response};
use ttrpc::Code;

struct Raw(UnixStream);

impl Raw {
    fn open(agent: &Agent) -> Self {
        let s = UnixStream::connect(agent.socket_path()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        Raw(s)
    }

    fn frame(id: u32, kind: u8, body: &[u8]) -> Vec<u8> {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&[kind, 0]);
        f.extend_from_slice(body);
        f
    }

    fn request(id: u32, service: &str, method: &str, payload: &[u8], timeout: Duration) -> Vec<u8> {
        let mut r = Request::new();
        r.service = service.into();
        r.method = method.into();
        r.payload = payload.to_vec();
        r.timeout_nano = timeout.as_nanos() as i64;
        Self::frame(id, 1, &r.write_to_bytes().expect("encode"))
    }

    fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("send");
    }

    /// The next answer: its stream id, code and payload.
    fn answer(&mut self) -> (u32, Code, Vec<u8>) {
        let mut h = [0u8; 10];
        self.0.read_exact(&mut h).expect("an answer");
        assert_eq!(h[8], 2, "a response frame");
        let mut body = vec![0; u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize];
        self.0.read_exact(&mut body).expect("its body");
        let r = Response::parse_from_bytes(&body).expect("a Response");
        let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        (id, r.status.code.enum_value_or_default(), r.payload)
    }

    fn check(&mut self, id: u32) {
        self.send(&Self::request(id, "grpc.Health", "Check", &[], Duration::ZERO));
        let (got, code, payload) = self.answer();
        assert_eq!((got, code), (id, Code::OK), "Check on the same connection");
        let h = HealthCheckResponse::parse_from_bytes(&payload).expect("HealthCheckResponse");
        assert_eq!(h.status.enum_value_or_default(), ServingStatus::SERVING);
    }
}

#[test]
fn pipelined_requests_are_each_answered_once() {
    let agent = Agent::start();
    let mut c = Raw::open(&agent);
    let ids: BTreeSet<u32> = (0..500).map(|i| 2 * i + 1).collect();
    let all: Vec<u8> = ids
        .iter()
        .flat_map(|id| Raw::request(*id, "grpc.Health", "Check", &[], Duration::from_secs(5)))
        .collect();
    c.send(&all);
    let mut seen = BTreeSet::new();
    for _ in 0..ids.len() {
        let (id, code, _) = c.answer();
        assert_eq!(code, Code::OK, "stream {id}");
        assert!(seen.insert(id), "stream {id} answered twice");
    }
    assert_eq!(seen, ids);
}

#[test]
fn bad_requests_get_ttrpcs_codes_and_the_connection_goes_on() {
    let agent = Agent::start();
    let mut c = Raw::open(&agent);
    let t = Duration::from_secs(5);
    let cases: [(&str, Vec<u8>, Code); 6] = [
        (
            "even stream id",
            Raw::request(2, "grpc.Health", "Check", &[], t),
            Code::INVALID_ARGUMENT,
        ),
        (
            "unknown service",
            Raw::request(3, "grpc.Nope", "Check", &[], t),
            Code::INVALID_ARGUMENT,
        ),
        (
            "unknown method",
            Raw::request(5, "grpc.Health", "Nope", &[], t),
            Code::UNIMPLEMENTED,
        ),
        ("not a Request", Raw::frame(7, 1, &[0xff; 7]), Code::INVALID_ARGUMENT),
        ("a data frame", Raw::frame(9, 3, b"data"), Code::INVALID_ARGUMENT),
        (
            "a payload not a CheckRequest",
            Raw::request(11, "grpc.Health", "Check", &[0xff; 3], t),
            Code::UNKNOWN,
        ),
    ];
    for (i, (name, bytes, want)) in cases.into_iter().enumerate() {
        c.send(&bytes);
        let id = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let (got, code, _) = c.answer();
        assert_eq!((got, code), (id, want), "case {i}: {name}");
        c.check(101 + 2 * i as u32);
    }
}

#[test]
fn a_waiting_call_holds_up_no_other_and_ends_at_its_deadline() {
    let agent = Agent::start();
    let mut c = Raw::open(&agent);
    // GetOOMEvent waits for an OOM that never comes: once without a
    // deadline, once with one; then a Check behind them.
    c.send(&Raw::request(
        1,
        "grpc.AgentService",
        "GetOOMEvent",
        &[],
        Duration::ZERO,
    ));
    c.send(&Raw::request(
        3,
        "grpc.AgentService",
        "GetOOMEvent",
        &[],
        Duration::from_secs(3),
    ));
    c.check(5);
    let (id, code, _) = c.answer();
    assert_eq!((id, code), (3, Code::DEADLINE_EXCEEDED));
    c.check(7);
}

#[test]
fn a_closed_connection_takes_its_waiting_calls_with_it() {
    let agent = Agent::start();
    let mut c = Raw::open(&agent);
    for i in 0..10 {
        c.send(&Raw::request(
            2 * i + 1,
            "grpc.AgentService",
            "GetOOMEvent",
            &[],
            Duration::ZERO,
        ));
    }
    c.check(21);
    assert_eq!(
        metric(&agent, "bosun_pending_requests"),
        10.0 + 1.0,
        "10 waiting + GetMetrics"
    );
    drop(c);
    // Only the connection asking is left, its one call pending: the closed
    // one is not kept open by the calls it left waiting.
    eventually("the closed connection gone", || {
        metric(&agent, "bosun_connections") == 1.0 && metric(&agent, "bosun_pending_requests") == 1.0
    });
}
