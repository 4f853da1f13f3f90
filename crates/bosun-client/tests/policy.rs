//! The agent policy with real pods: SetPolicy as runtime-rs sends it, a
//! denial while the pod runs, an argv rule, a denied create that leaves
//! nothing, the policy kept across SIGKILL and restart, `--policy-file` at
//! start, and every served method checked before it acts.

mod common;

use std::time::Duration;

use common::pod::{spec, started, Pod};

/// Allows every request type but `denied`, as kata-opa's policies are
/// written: a default per type.
fn allow_all_except(denied: &[&str]) -> String {
    let mut s = String::from("package agent_policy\n\n");
    for r in bosun_protocols::agent_request_types() {
        s += &format!("default {r} := {}\n", !denied.contains(&r.as_str()));
    }
    s
}

fn assert_denied(r: Result<(), common::pod::Failure>, request: &str) {
    let (code, msg) = r.expect_err("allowed");
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(msg.contains(&format!("{request} is blocked by policy")), "{msg}");
}

fn running(pod: &Pod, id: &str) -> bool {
    let list: serde_json::Value = serde_json::from_str(&pod.diagnostic("containers").unwrap()).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == id && c["status"] == "running")
}

/// A pod whose runtime sends SetPolicy runs; allow-all-except-exec then
/// makes ExecProcess PERMISSION_DENIED while the pod keeps running.
#[test]
#[ignore = "needs root"]
fn set_policy_then_exec_is_denied_and_the_pod_keeps_running() {
    let (pod, rootfs) = started("policy-pod", false);
    pod.set_policy(&allow_all_except(&[])).unwrap();
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    pod.exec("app", "e1", &["true"]).unwrap();
    assert_eq!(pod.wait("app", "e1").unwrap(), 0);
    pod.set_policy(&allow_all_except(&["ExecProcessRequest"])).unwrap();
    assert_denied(pod.exec("app", "e2", &["true"]), "ExecProcessRequest");
    assert!(running(&pod, "app"), "the pod stopped");
    // Everything else still works, and the denial is counted.
    pod.stats("app").unwrap();
    let metrics = pod
        .rt
        .block_on(pod.c.agent.get_metrics(pod.c.ctx(), &Default::default()))
        .unwrap();
    assert!(
        metrics
            .metrics
            .contains("bosun_policy_denials_total{request=\"ExecProcessRequest\"} "),
        "{}",
        metrics.metrics
    );
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
}

/// An argv rule allows exactly the listed command.
#[test]
#[ignore = "needs root"]
fn an_argv_rule_allows_exactly_the_listed_command() {
    let (pod, rootfs) = started("argv", false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    let rule = allow_all_except(&["ExecProcessRequest"])
        + "\nExecProcessRequest if {\n    input.process.Args == [\"echo\", \"allowed\"]\n}\n";
    pod.set_policy(&rule).unwrap();
    pod.exec("app", "ok", &["echo", "allowed"]).unwrap();
    assert_eq!(pod.read_all("app", "ok", false).unwrap(), b"allowed\n");
    for (i, args) in [
        &["echo", "other"][..],
        &["echo", "allowed", "x"],
        &["sh", "-c", "echo allowed"],
    ]
    .iter()
    .enumerate()
    {
        assert_denied(pod.exec("app", &format!("no{i}"), args), "ExecProcessRequest");
    }
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
}

/// A denied CreateContainer leaves nothing: no run dir, no mount, no
/// cgroup, and the id is free for an allowed create.
#[test]
#[ignore = "needs root"]
fn a_denied_create_leaves_nothing_behind() {
    let (pod, rootfs) = started("deny-create", false);
    let cgroups = pod.cgroup_dirs();
    pod.set_policy(
        &(allow_all_except(&["CreateContainerRequest"])
            + "\nCreateContainerRequest if {\n    input.container_id != \"refused\"\n}\n"),
    )
    .unwrap();
    assert_denied(
        pod.create("refused", spec(Some(&rootfs), &["sleep", "300"])),
        "CreateContainerRequest",
    );
    assert!(!pod.run_dir().join("containers/refused").exists());
    assert!(pod.agent.mounts_under("/run/kata-containers/refused").is_empty());
    assert_eq!(pod.cgroup_dirs(), cgroups, "cgroups made for a denied create");
    pod.create("allowed", spec(Some(&rootfs), &["true"])).unwrap();
    pod.remove("allowed").unwrap();
    pod.destroy().unwrap();
}

/// The policy (and its state) hold after SIGKILL and restart: a restart
/// does not open the agent.
#[test]
#[ignore = "needs root"]
fn the_policy_holds_after_sigkill_and_restart() {
    let (mut pod, rootfs) = started("restarted", false);
    pod.create("app", spec(Some(&rootfs), &["sleep", "300"])).unwrap();
    pod.start_c("app").unwrap();
    // A rule with state: the first exec id seen is the only one allowed again.
    let rule = allow_all_except(&["ExecProcessRequest", "SetPolicyRequest"])
        + r#"
ExecProcessRequest := {"allowed": true, "ops": [{"op": "add", "path": "/pstate/exec", "value": input.exec_id}]} if {
    not data.pstate.exec
}
ExecProcessRequest if {
    input.exec_id == data.pstate.exec
}
"#;
    pod.set_policy(&rule).unwrap();
    pod.exec("app", "first", &["true"]).unwrap();
    pod.wait("app", "first").unwrap();
    assert_denied(pod.exec("app", "second", &["true"]), "ExecProcessRequest");
    pod.restart(&[], true);
    assert!(running(&pod, "app"), "the container was adopted");
    assert_denied(pod.exec("app", "second", &["true"]), "ExecProcessRequest");
    assert_denied(pod.set_policy(&allow_all_except(&[])), "SetPolicyRequest");
    let log = pod.agent.log_with(&["the one in force before the restart"]);
    assert!(log.contains("SetPolicy"), "{log}");
    // The state came back too: "first" is still the one allowed (and then
    // refused by the agent, its id being taken).
    let (code, msg) = pod.exec("app", "first", &["true"]).expect_err("exec id in use");
    assert_eq!(code, ttrpc::Code::ALREADY_EXISTS, "{msg}");
    pod.remove("app").unwrap();
    pod.destroy().unwrap();
}

/// `--policy-file` at start; a bad one keeps bosun from starting, naming
/// the file.
#[test]
fn policy_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("policy.rego");
    std::fs::write(&f, allow_all_except(&["CreateSandboxRequest"])).unwrap();
    let pod = Pod::start_with(false, &["--policy-file", f.to_str().unwrap()]);
    assert_denied(pod.create_sandbox("x", false), "CreateSandboxRequest");
    drop(pod);
    std::fs::write(&f, "package agent_policy\ndefault X := \n").unwrap();
    let out = std::process::Command::new(common::agent_bin())
        .args([
            "--server-addr",
            &format!("unix://{}", dir.path().join("s.sock").display()),
        ])
        .args(["--run-dir", dir.path().join("run2").to_str().unwrap()])
        .args(["--policy-file", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.rego"), "{err}");
}

/// Every served method is checked before it acts: with a policy that
/// allows nothing but SetPolicy, each answers PERMISSION_DENIED naming its
/// request type (ReadStdout and ReadStderr read first and withhold the
/// data, as the Kata agent does).
#[test]
fn every_served_method_is_checked_before_it_acts() {
    let pod = Pod::start_with(false, &[]);
    pod.set_policy("package agent_policy\ndefault SetPolicyRequest := true\n")
        .unwrap();
    pod.rt.block_on(async {
        for m in common::SERVED
            .iter()
            .filter(|m| !matches!(**m, "SetPolicy" | "ReadStdout" | "ReadStderr"))
        {
            let (_, d) = bosun_client::call::method(m).unwrap();
            let err = bosun_client::call::call(&pod.c, m, "{}", Duration::from_secs(5))
                .await
                .expect_err(m);
            assert!(
                err.starts_with("PERMISSION_DENIED")
                    && err.contains(&format!("{} is blocked by policy", d.input_type().name())),
                "{m}: {err}"
            );
        }
    });
}
