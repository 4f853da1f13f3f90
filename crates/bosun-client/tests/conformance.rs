//! The conformance suite against bosun (root: every scenario must PASS),
//! and against two stand-in agents in this process that prove the suite's
//! own verdicts: one serving nothing (every scenario SKIPs), one whose
//! calls fail (scenarios FAIL and the exit code says so).

mod common;

use std::process::Command;
use std::sync::Arc;

use bosun_protocols::{agent, agent_ttrpc, empty::Empty, health_ttrpc};
use ttrpc::r#async::TtrpcContext;

fn suite(addr: &str, extra: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_bosun-conformance"))
        .args(["--addr", addr, "--json"])
        .args(extra)
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), rows)
}

#[test]
#[ignore = "needs root"]
fn every_scenario_passes_against_bosun() {
    assert!(
        common::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    // Isolated (its own /run): the golden scenarios use the runtimes'
    // fixed paths under /run/kata-containers. In the network namespace of
    // a registry of the test's, for guest_pull.
    let reg = common::registry::TestRegistry::anonymous();
    reg.push(
        "bosun-conformance/busybox",
        "latest",
        &[(common::registry::busybox_layer(), bosun_client::oci_layout::Comp::Gzip)],
        None,
    );
    let pod = common::pod::Pod::start_in_net(reg.ns.path(), &["--insecure-registries", "127.0.0.1:5000"]);
    let (code, rows) = suite(
        &pod.agent.addr.to_string(),
        &["--local", "--registry", "127.0.0.1:5000"],
    );
    // hotplugged_disks needs a VM's disks (make vm-test runs it).
    let not_pass: Vec<_> = rows
        .iter()
        .filter(|r| r["verdict"] != "PASS" && !(r["scenario"] == "hotplugged_disks" && r["verdict"] == "SKIP"))
        .collect();
    assert!(not_pass.is_empty(), "{not_pass:#?}");
    assert_eq!(rows.len(), 17, "14 scenarios and 3 golden ones");
    assert_eq!(code, 0);
}

#[test]
#[ignore = "needs root"]
fn every_hostile_scenario_passes_against_bosun() {
    assert!(
        common::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    // Isolated, with its state where an agent in a pod VM keeps it (under
    // its own /run): bind_agent_state binds /run. Without --local (the
    // suite is outside the agent's mount namespace) the wire scenarios
    // SKIP; tests/adversary.rs runs those against bosun.
    let pod = common::pod::Pod::start_with(true, &["--run-dir", "/run/bosun"]);
    let rootfs = common::busybox_rootfs(pod.dir());
    let addr = pod.agent.addr.to_string();
    let (code, rows) = suite(&addr, &["--hostile", "--rootfs", rootfs.to_str().unwrap()]);
    let wire = |r: &serde_json::Value| {
        r["verdict"] == "SKIP" && r["detail"].as_str().is_some_and(|d| d.contains("needs --local"))
    };
    let not_pass: Vec<_> = rows.iter().filter(|r| r["verdict"] != "PASS" && !wire(r)).collect();
    assert!(not_pass.is_empty(), "{not_pass:#?}");
    assert_eq!(
        rows.iter().filter(|r| wire(r)).count(),
        3,
        "the wire scenarios: {rows:#?}"
    );
    assert_eq!(rows.len(), 10);
    assert_eq!(code, 0);
}

/// The policy probe: bosun's policy decides each request as the Kata
/// agent's does (the same run against the Kata agent 4.1.0 gave the same
/// decisions, README "Agent policy").
#[test]
#[ignore = "needs root"]
fn the_policy_probe_passes_against_bosun() {
    assert!(
        common::is_root(),
        "this test needs root: run it with `make test` as root"
    );
    let pod = common::pod::Pod::start_with(true, &[]);
    let rootfs = common::busybox_rootfs(pod.dir());
    let addr = pod.agent.addr.to_string();
    let (code, rows) = suite(&addr, &["--policy", "--rootfs", rootfs.to_str().unwrap()]);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["verdict"], "PASS", "{rows:#?}");
    assert_eq!(code, 0);
}

/// Serves AgentService with every method at its default: UNIMPLEMENTED.
struct Nothing;
impl agent_ttrpc::AgentService for Nothing {}
struct Health;
impl health_ttrpc::Health for Health {}

/// CreateSandbox succeeds, every other call fails with INTERNAL.
struct Broken;
#[async_trait::async_trait]
impl agent_ttrpc::AgentService for Broken {
    async fn create_sandbox(&self, _: &TtrpcContext, _: agent::CreateSandboxRequest) -> ttrpc::Result<Empty> {
        Ok(Empty::new())
    }
    async fn create_container(&self, _: &TtrpcContext, _: agent::CreateContainerRequest) -> ttrpc::Result<Empty> {
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::INTERNAL,
            "broken on purpose",
        )))
    }
}

fn serve(
    agent: Arc<dyn agent_ttrpc::AgentService + Send + Sync>,
) -> (
    tokio::runtime::Runtime,
    ttrpc::r#async::Server,
    tempfile::TempDir,
    String,
) {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("unix://{}", dir.path().join("s.sock").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(async {
        let mut server = ttrpc::r#async::Server::new()
            .bind(&addr)
            .unwrap()
            .register_service(agent_ttrpc::create_agent_service(agent))
            .register_service(health_ttrpc::create_health(Arc::new(Health)));
        server.start().await.unwrap();
        server
    });
    (rt, server, dir, addr)
}

#[test]
fn an_agent_without_the_calls_skips_every_scenario() {
    let (_rt, _server, _dir, addr) = serve(Arc::new(Nothing));
    let (code, rows) = suite(&addr, &["--rootfs", "/nonexistent", "--registry", "127.0.0.1:1"]);
    assert_eq!(rows.len(), 17);
    assert!(rows.iter().all(|r| r["verdict"] == "SKIP"), "{rows:#?}");
    assert_eq!(code, 0, "SKIP is not a failure");
}

#[test]
fn an_agent_whose_calls_fail_is_reported_and_exits_1() {
    let (_rt, _server, _dir, addr) = serve(Arc::new(Broken));
    let (code, rows) = suite(&addr, &["--rootfs", "/nonexistent"]);
    assert_eq!(code, 1);
    let fails: Vec<_> = rows.iter().filter(|r| r["verdict"] == "FAIL").collect();
    assert!(!fails.is_empty(), "{rows:#?}");
    assert!(
        fails
            .iter()
            .any(|r| r["detail"].as_str().unwrap_or("").contains("INTERNAL")),
        "{fails:#?}"
    );
}
