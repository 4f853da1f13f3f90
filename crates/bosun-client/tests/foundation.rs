//! Foundation: Health over unix and abstract sockets, UNIMPLEMENTED for every
//! unserved method, hostile frames, hybrid vsock handshakes, configuration
//! errors and the startup conflict rules of the listener.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use bosun::transport::connect::ConnectError;
use bosun::transport::Address;
use bosun_client::Client;
use bosun_protocols::health::health_check_response::ServingStatus;
use common::{abstract_name, bosunctl, rt, Agent};

fn check_and_version(addr: &Address) {
    rt().block_on(async {
        let c = Client::connect(addr, Duration::from_secs(2)).await.expect("connect");
        let h = c.check().await.expect("Check");
        assert_eq!(h.status.enum_value_or_default(), ServingStatus::SERVING);
        let v = c.version().await.expect("Version");
        assert_eq!(v.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(v.grpc_version, bosun::rpc::PROTOCOL_VERSION);
    });
    let a = addr.to_string();
    let (code, out, err) = bosunctl(&["--addr", &a, "check"]);
    assert_eq!((code, out.trim()), (0, "SERVING"), "stderr: {err}");
    let (code, out, err) = bosunctl(&["--addr", &a, "--json", "version"]);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["grpc_version"], bosun::rpc::PROTOCOL_VERSION);
}

#[test]
fn check_and_version_over_unix_socket() {
    let agent = Agent::start();
    check_and_version(&agent.addr);
}

#[test]
fn check_and_version_over_abstract_socket() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_at(Address::UnixAbstract(abstract_name("abs")), dir, &[]);
    check_and_version(&agent.addr);
}

fn agent_methods() -> Vec<String> {
    include_str!("../../bosun-protocols/protos/agent.proto")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("rpc "))
        .map(|l| l.split('(').next().expect("rpc name").trim().to_string())
        .collect()
}

#[test]
fn every_unserved_method_answers_unimplemented() {
    let methods = agent_methods();
    assert!(
        methods.len() >= 40,
        "parsed only {} methods from agent.proto",
        methods.len()
    );
    let agent = Agent::start();
    rt().block_on(async {
        let c = Client::connect(&agent.addr, Duration::from_secs(2)).await.unwrap();
        for (i, m) in methods
            .iter()
            .filter(|m| !common::SERVED.contains(&m.as_str()))
            .enumerate()
        {
            let mut req = ttrpc::proto::Request::new();
            req.set_service("grpc.AgentService".into());
            req.set_method(m.clone());
            req.set_timeout_nano(2_000_000_000);
            // An empty payload is a valid encoding of every request message.
            let err = c
                .raw
                .request(req)
                .await
                .expect_err(&format!("test[{i}]: {m} answered OK"));
            match err {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), ttrpc::Code::UNIMPLEMENTED, "test[{i}]: {m}: {}", s.message());
                    assert!(
                        s.message().contains(m.as_str()),
                        "test[{i}]: message {:?} does not name {m}",
                        s.message()
                    );
                }
                other => panic!("test[{i}]: {m}: not a status: {other:?}"),
            }
        }
        assert!(c.check().await.is_ok(), "server still serves after the sweep");
    });
}

/// Sends `bytes` on a fresh connection and expects the server to close it
/// (EOF or reset) within a bound, then a new connection to be served.
fn assert_closed_after(agent: &Agent, bytes: &[u8]) {
    let mut s = UnixStream::connect(agent.socket_path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 256];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue, // an error reply may precede the close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection not closed after {:?}: {e}", start.elapsed()),
        }
    }
    let agent_addr = agent.addr.clone();
    rt().block_on(async move {
        let c = Client::connect(&agent_addr, Duration::from_secs(2)).await.unwrap();
        assert!(c.check().await.is_ok());
    });
}

#[test]
fn oversized_frame_closes_only_that_connection() {
    let agent = Agent::start();
    // A second, idle connection must survive the hostile one.
    // The client's tasks live on this runtime, so it must outlive the test.
    let rt = rt();
    let idle = rt
        .block_on(Client::connect(&agent.addr, Duration::from_secs(2)))
        .unwrap();
    rt.block_on(async { assert!(idle.check().await.is_ok()) });
    let mut header = (1u32 << 30).to_be_bytes().to_vec(); // claims 1 GiB
    header.extend_from_slice(&1u32.to_be_bytes());
    header.extend_from_slice(&[1, 0]);
    assert_closed_after(&agent, &header);
    rt.block_on(async { assert!(idle.check().await.is_ok(), "idle connection was dropped") });
}

#[test]
fn garbage_bytes_close_the_connection() {
    let agent = Agent::start();
    assert_closed_after(&agent, b"GET / HTTP/1.1\r\nHost: bosun\r\n\r\n");
    // Valid header, type 7 (unknown), then garbage.
    let mut bytes = 4u32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 1, 7, 0, 0xde, 0xad, 0xbe, 0xef]);
    assert_closed_after(&agent, &bytes);
}

/// A hybrid-vsock multiplexer stand-in: on `CONNECT <port>\n` it runs `reply`.
fn hv_listener(reply: impl Fn(UnixStream, String) + Send + 'static) -> (tempfile::TempDir, Address) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vm.vsock");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut line = Vec::new();
            let mut b = [0u8];
            while s.read(&mut b).map(|n| n == 1).unwrap_or(false) && b[0] != b'\n' {
                line.push(b[0]);
            }
            reply(s, String::from_utf8_lossy(&line).into_owned());
        }
    });
    (dir, Address::HybridVsock { path, port: 1024 })
}

#[test]
fn hybrid_vsock_handshake_ok_reaches_the_agent() {
    let agent = Agent::start();
    let target = agent.socket_path();
    let (_d, addr) = hv_listener(move |mut s, line| {
        assert_eq!(line, "CONNECT 1024");
        let mut up = UnixStream::connect(&target).unwrap();
        s.write_all(b"OK 1073741824\n").unwrap();
        let (mut s2, mut up2) = (s.try_clone().unwrap(), up.try_clone().unwrap());
        std::thread::spawn(move || std::io::copy(&mut s2, &mut up2));
        std::thread::spawn(move || std::io::copy(&mut up, &mut s));
    });
    check_and_version(&addr);
}

#[test]
fn hybrid_vsock_refusal_is_reported() {
    let (_d, addr) = hv_listener(|mut s, _| {
        let _ = s.write_all(b"ERR no listener on port 1024\n");
    });
    let err = rt()
        .block_on(Client::connect(&addr, Duration::from_secs(2)))
        .err()
        .expect("refused");
    assert!(
        matches!(err, ConnectError::HandshakeRefused { ref reply, .. } if reply.starts_with("ERR")),
        "{err}"
    );
    let (code, _, stderr) = bosunctl(&["--addr", &addr.to_string(), "check"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("refused CONNECT"), "{stderr}");
}

#[test]
fn hybrid_vsock_silence_times_out() {
    let (_d, addr) = hv_listener(|s, _| {
        std::thread::sleep(Duration::from_secs(10));
        drop(s);
    });
    let start = Instant::now();
    let err = rt()
        .block_on(Client::connect(&addr, Duration::from_millis(300)))
        .err()
        .expect("timeout");
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
    // A 300 ms bound against a 10 s silence: 5 s tells them apart on a busy machine.
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    let (code, _, stderr) = bosunctl(&["--timeout", "0.3", "--addr", &addr.to_string(), "check"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no answer"), "{stderr}");
}

fn bosun(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let run = tempfile::tempdir().unwrap();
    let mut c = Command::new(common::agent_bin());
    c.args(args);
    if !args.contains(&"--run-dir") {
        c.arg("--run-dir").arg(run.path().join("run"));
    }
    for k in [
        "BOSUN_SERVER_ADDR",
        "KATA_AGENT_SERVER_ADDR",
        "BOSUN_LOG_LEVEL",
        "KATA_AGENT_LOG_LEVEL",
        "BOSUN_LOG_FORMAT",
        "BOSUN_CMDLINE_FILE",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn invalid_configuration_exits_2_with_a_clear_message() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--server-addr", "tcp://0:1"], &[], "server-addr"),
        (&[], &[("BOSUN_LOG_LEVEL", "loud")], "log-level"),
        (
            &[],
            &[("KATA_AGENT_SERVER_ADDR", "vsock://x:1")],
            "KATA_AGENT_SERVER_ADDR",
        ),
        (&["--log-format", "xml"], &[], "log-format"),
        (&["--bogus"], &[], "unknown flag"),
        (
            &["--cmdline-file", "/nonexistent/cmdline"],
            &[],
            "cannot read kernel command line",
        ),
        (
            &["--config", "/nonexistent/agent-config.toml"],
            &[],
            "configuration file",
        ),
    ];
    for (i, (args, env, needle)) in cases.iter().enumerate() {
        let (code, text) = bosun(args, env);
        assert_eq!(code, 2, "test[{i}]: {args:?} {env:?}: {text}");
        assert!(text.contains(needle), "test[{i}]: {text:?} lacks {needle:?}");
    }
    let (code, text) = bosun(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in bosun::config::OPTIONS {
        assert!(
            text.contains(&format!("--{}", flag.flag)),
            "--help lacks --{}",
            flag.flag
        );
    }
}

/// Started as cloud-api-adaptor's pod VM unit starts the Kata agent:
/// `kata-agent --config /etc/agent-config.toml` (or `-c`), the file in the
/// Kata agent's format with its keys and one it has and bosun does not use.
#[test]
fn the_kata_agents_config_file_starts_bosun() {
    for (i, flag) in ["--config", "-c"].iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let file = dir.path().join("agent-config.toml");
        std::fs::write(
            &file,
            format!(
                "server_addr = \"unix://{}\"\nguest_components_procs = \"none\"\nrun_dir = \"{}\"\n",
                sock.display(),
                dir.path().join("run").display()
            ),
        )
        .unwrap();
        let mut child = Command::new(common::agent_bin())
            .arg(flag)
            .arg(&file)
            .env_remove("BOSUN_SERVER_ADDR")
            .env_remove("KATA_AGENT_SERVER_ADDR")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let a = Address::Unix(sock);
        let deadline = Instant::now() + Duration::from_secs(30);
        let served = loop {
            let ok = rt().block_on(async {
                match Client::connect(&a, Duration::from_millis(200)).await {
                    Ok(c) => c.check().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok || Instant::now() > deadline {
                break ok;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            served,
            "test[{i}]: bosun {flag} FILE did not serve at the file's server_addr"
        );
    }
    // A file that does not parse: exit 2, naming the file and the line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent-config.toml");
    std::fs::write(&file, "server_addr = \"unix:///x.sock\"\nlog_level = \n").unwrap();
    let (code, text) = bosun(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn cmdline_file_configures_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("from-cmdline.sock");
    let cl = dir.path().join("cmdline");
    std::fs::write(
        &cl,
        format!(
            "console=ttyS0 agent.server_addr=unix://{} agent.log=debug\n",
            sock.display()
        ),
    )
    .unwrap();
    let addr = Address::Unix(sock);
    let agent = Agent::start_at(addr.clone(), dir, &[]);
    drop(agent); // the flag wins; now start from the file alone
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    std::fs::write(
        dir.path().join("cmdline"),
        format!("agent.server_addr=unix://{}\n", sock.display()),
    )
    .unwrap();
    let mut child = Command::new(common::agent_bin())
        .arg("--cmdline-file")
        .arg(dir.path().join("cmdline"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .env_remove("BOSUN_SERVER_ADDR")
        .env_remove("KATA_AGENT_SERVER_ADDR")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let a = Address::Unix(sock);
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        let ok = rt().block_on(async {
            Client::connect(&a, Duration::from_millis(200))
                .await
                .map(|_| ())
                .is_ok()
        });
        if ok || Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "bosun did not listen on the address from its command-line file");
}

#[test]
fn second_agent_on_a_live_socket_exits_1_and_first_keeps_serving() {
    let first = Agent::start();
    let a = first.addr.to_string();
    let (code, text) = bosun(&["--server-addr", &a], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("in use by pid {}", first.child.id())), "{text}");
    assert!(first.socket_path().exists(), "live socket was unlinked");
    check_and_version(&first.addr);
}

#[test]
fn second_agent_on_a_live_abstract_socket_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let first = Agent::start_at(Address::UnixAbstract(abstract_name("dup")), dir, &[]);
    let (code, text) = bosun(&["--server-addr", &first.addr.to_string()], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(&format!("in use by pid {}", first.child.id())), "{text}");
}

#[test]
fn stale_socket_is_replaced_and_non_socket_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bosun.sock");
    drop(UnixListener::bind(&path).unwrap()); // leaves a socket file nobody serves
    assert!(path.exists());
    let agent = Agent::start_at(Address::Unix(path.clone()), dir, &[]);
    check_and_version(&agent.addr);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("precious");
    std::fs::write(&file, b"data").unwrap();
    let (code, text) = bosun(&["--server-addr", &format!("unix://{}", file.display())], &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not a socket"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

#[test]
fn sigterm_stops_gracefully_and_removes_only_its_socket() {
    let mut agent = Agent::start();
    let path = agent.socket_path();
    let lock = agent.dir.path().join("run.lock");
    assert!(lock.exists(), "the run directory's lock while serving");
    let st = agent.terminate();
    assert!(st.success(), "exit status {st:?}");
    assert!(!path.exists(), "socket file left behind");
    assert!(!lock.exists(), "run-dir lock left behind");
}

#[test]
fn bosunctl_usage_errors_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["check"],
        &["--addr", "tcp://x:1", "check"],
        &["--addr", "vsock://2:1024", "check"],
        &["--addr", "unix:///x", "frobnicate"],
        &["--timeout", "-1", "check"],
    ];
    for (i, args) in cases.iter().enumerate() {
        let (code, _, err) = bosunctl(args);
        assert_eq!(code, 2, "test[{i}]: {args:?}: {err}");
    }
    let (code, _, err) = bosunctl(&["--addr", "unix:///nonexistent/bosun.sock", "check"]);
    assert_eq!(code, 1, "{err}");
    let (code, out, err) = bosunctl(&["--version"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("bosunctl "), "{out}");
}

#[test]
fn bosunctl_call_prints_a_text_answer_as_text() {
    let agent = Agent::start();
    let addr = agent.addr.to_string();
    let (code, out, err) = bosunctl(&["--addr", &addr, "call", "GetMetrics"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().any(|l| l.starts_with("# HELP ")),
        "not Prometheus text: {out}"
    );
    let (code, out, err) = bosunctl(&["--addr", &addr, "--json", "call", "GetMetrics"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON with --json");
    assert!(v["metrics"].as_str().is_some_and(|m| m.contains("# HELP")), "{out}");
}

#[test]
fn requests_are_logged_at_debug_with_method_and_duration() {
    let mut agent = Agent::start();
    check_and_version(&agent.addr);
    let st = agent.terminate(); // flushes the log
    assert!(st.success());
    let log = agent.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log line"))
        .collect();
    for method in ["Check", "Version"] {
        let hit = lines.iter().find(|v| v["msg"] == "rpc done" && v["method"] == method);
        let hit = hit.unwrap_or_else(|| panic!("no debug line for {method} in:\n{log}"));
        assert_eq!(hit["level"], "DEBG");
        assert!(hit["us"].is_u64(), "duration missing: {hit}");
    }
}

/// Random byte streams (and random frames with a valid header) sent to a
/// live server: whatever each does to its own connection, the server keeps
/// answering Check on a new one.
#[test]
fn random_input_never_takes_the_server_down() {
    use proptest::prelude::*;
    let agent = Agent::start();
    let path = agent.socket_path();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        ..Default::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 0..4096),
        any::<bool>(),
        0u32..64,
        1u8..4,
    );
    runner
        .run(&strategy, |(bytes, framed, len, ty)| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            if framed {
                // A plausible header: small length, stream 1, some type.
                let mut h = len.to_be_bytes().to_vec();
                h.extend_from_slice(&1u32.to_be_bytes());
                h.extend_from_slice(&[ty, 0]);
                let _ = s.write_all(&h);
            }
            let _ = s.write_all(&bytes);
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            drop(s);
            let ok = rt().block_on(async {
                let c = Client::connect(&agent.addr, Duration::from_secs(2))
                    .await
                    .expect("connect");
                c.check().await.is_ok()
            });
            prop_assert!(ok, "Check failed after {} random bytes", bytes.len());
            Ok(())
        })
        .unwrap();
    assert!(
        !agent.log().contains("panicked"),
        "a handler panicked:\n{}",
        agent.log()
    );
}
