//! `--policy`: whether an agent's policy reads requests as the Kata agent's
//! does. One probe policy (`policy-probe.rego`) whose rules look at the
//! input's shape (Rust field names such as `type_`, `null` for an unset
//! message, enums and 64-bit integers as numbers, CopyFile's reduced
//! input), then requests that it must allow or deny. Only the decision is
//! compared: an allowed request may still fail for its own reasons. The
//! agent is left with a policy allowing everything.

use std::time::Duration;

use crate::ctx::{Ctx, Verdict};

pub const ALL: &[(&str, &str)] = &[(
    "policy_decisions",
    "a Rego policy on the request's fields allows and denies exactly as with the Kata agent",
)];

const PROBE: &str = include_str!("policy-probe.rego");

/// (method, case, denied, request as protobuf JSON)
const CASES: &[(&str, &str, bool, &str)] = &[
    (
        "CreateSandbox",
        "denied:hostname",
        true,
        r#"{"hostname":"other","sandboxId":"s1"}"#,
    ),
    (
        "CreateSandbox",
        "denied:dns",
        true,
        r#"{"hostname":"probe","sandboxId":"s1","dns":["nameserver 1.1.1.1"]}"#,
    ),
    (
        "CreateSandbox",
        "allowed",
        false,
        r#"{"hostname":"probe","sandboxId":"s1"}"#,
    ),
    (
        "CreateContainer",
        "denied:id",
        true,
        r#"{"containerId":"c2","execId":"c2","OCI":{"Process":{"Args":["sleep","300"]},"Mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"Root":{"Path":"/nonexistent"}}}"#,
    ),
    (
        "CreateContainer",
        "denied:hooks",
        true,
        r#"{"containerId":"c1","execId":"c1","OCI":{"Hooks":{},"Process":{"Args":["sleep","300"]},"Mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"Root":{"Path":"/nonexistent"}}}"#,
    ),
    (
        "CreateContainer",
        "denied:storage",
        true,
        r#"{"containerId":"c1","execId":"c1","storages":[{"driver":"local","mountPoint":"/run/kata-containers/x"}],"OCI":{"Process":{"Args":["sleep","300"]},"Mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"Root":{"Path":"/nonexistent"}}}"#,
    ),
    (
        "CreateContainer",
        "allowed",
        false,
        r#"{"containerId":"c1","execId":"c1","OCI":{"Process":{"Args":["sleep","300"]},"Mounts":[{"destination":"/proc","type":"proc","source":"proc"}],"Root":{"Path":"/nonexistent"}}}"#,
    ),
    (
        "ExecProcess",
        "denied:args",
        true,
        r#"{"containerId":"c1","execId":"e1","process":{"Args":["sh"]}}"#,
    ),
    (
        "ExecProcess",
        "denied:string_user",
        true,
        r#"{"containerId":"c1","execId":"e1","stringUser":{"uid":"0"},"process":{"Args":["echo","hi"]}}"#,
    ),
    (
        "ExecProcess",
        "allowed",
        false,
        r#"{"containerId":"c1","execId":"e1","process":{"Args":["echo","hi"],"User":{"UID":0}}}"#,
    ),
    (
        "CopyFile",
        "allowed",
        false,
        r#"{"path":"/run/kata-containers/shared/containers/x-hosts","fileMode":33188,"fileSize":"3","data":"aGkK"}"#,
    ),
    (
        "CopyFile",
        "denied:size",
        true,
        r#"{"path":"/run/kata-containers/shared/containers/x-hosts","fileMode":33188,"fileSize":"4","data":"aGkK"}"#,
    ),
    (
        "CopyFile",
        "allowed:symlink",
        false,
        r#"{"path":"/run/kata-containers/shared/containers/x-link","fileMode":41471,"data":"Li5kYXRhL2hvc3Rz"}"#,
    ),
    (
        "CopyFile",
        "denied:symlink",
        true,
        r#"{"path":"/run/kata-containers/shared/containers/x-link","fileMode":41471,"data":"Li4vLi4vZXRj"}"#,
    ),
    (
        "UpdateInterface",
        "denied:name",
        true,
        r#"{"interface":{"name":"eth1","mtu":"1500","IPAddresses":[{"address":"10.0.0.2","mask":"24"}]}}"#,
    ),
    (
        "UpdateInterface",
        "denied:family",
        true,
        r#"{"interface":{"name":"eth0","mtu":"1500","IPAddresses":[{"family":"v6","address":"fd00::2","mask":"64"}]}}"#,
    ),
    (
        "UpdateInterface",
        "allowed",
        false,
        r#"{"interface":{"name":"eth0","mtu":"1500","IPAddresses":[{"address":"10.0.0.2","mask":"24"}]}}"#,
    ),
    (
        "UpdateRoutes",
        "denied:gateway",
        true,
        r#"{"routes":{"Routes":[{"dest":"","gateway":"10.0.0.254","device":"eth0"}]}}"#,
    ),
    (
        "UpdateRoutes",
        "allowed",
        false,
        r#"{"routes":{"Routes":[{"dest":"","gateway":"10.0.0.1","device":"eth0"}]}}"#,
    ),
    (
        "AddARPNeighbors",
        "denied:state",
        true,
        r#"{"neighbors":{"ARPNeighbors":[{"toIPAddress":{"address":"10.0.0.9"},"device":"eth0","lladdr":"aa:bb:cc:dd:ee:ff","state":2}]}}"#,
    ),
    (
        "AddARPNeighbors",
        "allowed",
        false,
        r#"{"neighbors":{"ARPNeighbors":[{"toIPAddress":{"address":"10.0.0.9"},"device":"eth0","lladdr":"aa:bb:cc:dd:ee:ff","state":128}]}}"#,
    ),
    ("RemoveContainer", "denied:id", true, r#"{"containerId":"c9"}"#),
    (
        "RemoveContainer",
        "denied:timeout",
        true,
        r#"{"containerId":"c1","timeout":5}"#,
    ),
    ("RemoveContainer", "allowed", false, r#"{"containerId":"c1"}"#),
];

/// A policy allowing every request type of the protocol.
fn allow_all() -> String {
    let mut s = String::from("package agent_policy\n");
    let mut seen = std::collections::BTreeSet::new();
    for svc in bosun_protocols::agent::file_descriptor().services() {
        for m in svc.methods() {
            seen.insert(m.input_type().name().to_string());
        }
    }
    for r in seen {
        s += &format!("default {r} := true\n");
    }
    s
}

async fn set_policy(ctx: &Ctx<'_>, rego: &str) -> Result<(), String> {
    let json = serde_json::json!({ "policy": rego }).to_string();
    bosun_client::call::call(ctx.calls.0, "SetPolicy", &json, Duration::from_secs(10))
        .await
        .map(|_| ())
}

pub async fn run(_name: &str, ctx: &Ctx<'_>) -> Result<String, Verdict> {
    if let Err(e) = set_policy(ctx, PROBE).await {
        return Err(Verdict::Skip(format!("SetPolicy: {e}")));
    }
    let mut wrong = Vec::new();
    for (method, case, denied, json) in CASES {
        let answer = bosun_client::call::call(ctx.calls.0, method, json, Duration::from_secs(10)).await;
        let was_denied = matches!(&answer, Err(e) if e.contains("blocked by policy"));
        if was_denied != *denied {
            let got = match &answer {
                Ok(_) => "OK".to_string(),
                Err(e) => e.chars().take(120).collect(),
            };
            wrong.push(format!("{method} {case}: {got}"));
        }
    }
    // A type with no rule: refused either way (bosun: PERMISSION_DENIED,
    // the Kata agent: INTERNAL), never served.
    let none = bosun_client::call::call(ctx.calls.0, "ListRoutes", "{}", Duration::from_secs(10)).await;
    if none.is_ok() {
        wrong.push("ListRoutes (no rule): answered OK".into());
    }
    set_policy(ctx, &allow_all())
        .await
        .map_err(|e| Verdict::Fail(format!("restoring an allow-all policy: {e}")))?;
    if wrong.is_empty() {
        Ok(format!("{} decisions as expected", CASES.len()))
    } else {
        Err(Verdict::Fail(wrong.join("; ")))
    }
}
