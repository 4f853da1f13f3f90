use serde_json::json;

use super::*;

fn log() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

/// A policy allowing every listed request type but `denied`, as kata-opa's
/// allow-all-except-exec-process.rego is written (a default per type).
pub fn allow_all_except(denied: &[&str]) -> String {
    let mut s = String::from("package agent_policy\n\n");
    for r in [
        "CreateContainerRequest",
        "ExecProcessRequest",
        "CopyFileRequest",
        "SetPolicyRequest",
    ] {
        let v = !denied.contains(&r);
        s += &format!("default {r} := {v}\n");
    }
    s
}

fn with_file(text: &str) -> (tempfile::TempDir, Policy) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("p.rego");
    std::fs::write(&f, text).unwrap();
    let p = Policy::open(d.path(), Source::File(&f), true, &log()).unwrap();
    (d, p)
}

fn denial(r: Result<(), PolicyError>) -> String {
    match r {
        Err(PolicyError::Denied { request, why }) => format!("{request}: {why}"),
        other => panic!("not a denial: {other:?}"),
    }
}

#[test]
fn no_policy_allows_everything_without_an_engine() {
    let d = tempfile::tempdir().unwrap();
    let p = Policy::open(d.path(), Source::None, false, &log()).unwrap();
    assert!(!p.is_enforcing());
    assert!(p.check("ExecProcessRequest", &json!({})).is_ok());
    assert!(p.check("AnythingRequest", &json!({})).is_ok());
}

#[test]
fn a_default_false_denies_and_the_rest_is_allowed() {
    let (_d, p) = with_file(&allow_all_except(&["ExecProcessRequest"]));
    assert!(p.is_enforcing());
    assert!(p.check("CreateContainerRequest", &json!({"container_id": "a"})).is_ok());
    let why = denial(p.check("ExecProcessRequest", &json!({})));
    assert!(why.starts_with("ExecProcessRequest: "), "{why}");
    // A type the policy says nothing of: denied, saying so.
    let why = denial(p.check("UpdateRoutesRequest", &json!({})));
    assert!(why.contains("no rule for UpdateRoutesRequest"), "{why}");
    assert!(denials().iter().any(|(r, n)| r == "ExecProcessRequest" && *n >= 1));
}

#[test]
fn a_rule_on_the_input_allows_exactly_what_it_lists_and_prints_why() {
    let (_d, p) = with_file(
        r#"package agent_policy
default ExecProcessRequest := false
ExecProcessRequest if {
    input.process.Args == ["echo", "hi"]
}
ExecProcessRequest if {
    print("refused argv", input.process.Args)
    false
}
"#,
    );
    assert!(p
        .check("ExecProcessRequest", &json!({"process": {"Args": ["echo", "hi"]}}))
        .is_ok());
    let why = denial(p.check("ExecProcessRequest", &json!({"process": {"Args": ["sh"]}})));
    assert!(
        why.contains("refused argv"),
        "the policy's print() is the message: {why}"
    );
    assert!(p
        .check("ExecProcessRequest", &json!({"process": {"Args": ["echo", "hi", "x"]}}))
        .is_err());
}

const STATEFUL: &str = r#"package agent_policy
default CreateSandboxRequest := false
CreateSandboxRequest := {"allowed": true, "ops": ops} if {
    not data.pstate.sandbox
    ops := [{"op": "add", "path": "/pstate/sandbox", "value": input.sandbox_id}]
}
default CreateContainerRequest := false
CreateContainerRequest if {
    input.sandbox_id == data.pstate.sandbox
}
default SetPolicyRequest := false
"#;

#[test]
fn pstate_follows_the_answers_and_survives_a_restart() {
    let (d, p) = with_file(STATEFUL);
    assert!(p.check("CreateSandboxRequest", &json!({"sandbox_id": "s1"})).is_ok());
    // Once set, a second sandbox is refused, and containers must name it.
    assert!(p.check("CreateSandboxRequest", &json!({"sandbox_id": "s2"})).is_err());
    assert!(p.check("CreateContainerRequest", &json!({"sandbox_id": "s1"})).is_ok());
    assert!(p.check("CreateContainerRequest", &json!({"sandbox_id": "s2"})).is_err());
    drop(p);
    // Restarted with no source at all: the policy and its state hold.
    let again = Policy::open(d.path(), Source::None, false, &log()).unwrap();
    assert!(again.is_enforcing());
    assert!(again
        .check("CreateContainerRequest", &json!({"sandbox_id": "s1"}))
        .is_ok());
    assert!(again
        .check("CreateSandboxRequest", &json!({"sandbox_id": "s3"}))
        .is_err());
    // A SetPolicy the policy in force refuses changes nothing.
    let why = denial(again.set(&json!({"policy": "..."}), &allow_all_except(&[])));
    assert!(why.starts_with("SetPolicyRequest"), "{why}");
    assert!(again
        .check("CreateContainerRequest", &json!({"sandbox_id": "s2"}))
        .is_err());
}

#[test]
fn a_bad_policy_is_refused_naming_the_line_and_the_old_one_holds() {
    let (_d, p) = with_file(&allow_all_except(&["ExecProcessRequest"]));
    let bad =
        "package agent_policy\n\ndefault ExecProcessRequest := true\nExecProcessRequest if {\n    input.x ==\n}\n";
    match p.set(&json!({}), bad) {
        Err(PolicyError::Invalid(m)) => assert!(m.contains(":6") || m.contains("line 6") || m.contains(":5"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Over the Kata agent's bounds (64 KiB a line).
    let wide = format!(
        "package agent_policy\nlong := \"{}\"\ndefault ExecProcessRequest := true\n",
        "x".repeat(70_000)
    );
    let r = p.set(&json!({}), &wide);
    assert!(matches!(r, Err(PolicyError::Invalid(_))), "{r:?}");
    assert!(
        p.check("ExecProcessRequest", &json!({})).is_err(),
        "the old policy holds"
    );
    // A good one replaces it.
    p.set(&json!({}), &allow_all_except(&[])).unwrap();
    assert!(p.check("ExecProcessRequest", &json!({})).is_ok());
}

#[test]
fn allow_requests_failing_policy_turns_denials_into_warnings() {
    let (_d, p) =
        with_file(&(allow_all_except(&["ExecProcessRequest"]) + "default AllowRequestsFailingPolicy := true\n"));
    assert!(p.check("ExecProcessRequest", &json!({})).is_ok());
    assert!(p.check("NoRuleRequest", &json!({})).is_ok());
}

#[test]
fn a_policy_that_cannot_be_read_back_closes_the_agent() {
    let (d, p) = with_file(&allow_all_except(&[]));
    drop(p);
    let f = d.path().join("policy.json");
    let mut text = std::fs::read_to_string(&f).unwrap();
    text.push(' ');
    std::fs::write(&f, text).unwrap();
    let p = Policy::open(d.path(), Source::None, false, &log()).unwrap();
    let why = denial(p.check("CreateContainerRequest", &json!({})));
    assert!(why.contains("could not be read back"), "{why}");
    assert!(p.set(&json!({}), &allow_all_except(&[])).is_err());
}

#[test]
fn decisions_are_logged_at_debug() {
    let (d, p) = with_file(&allow_all_except(&["ExecProcessRequest"]));
    p.check("CreateContainerRequest", &json!({"container_id": "c"}))
        .unwrap();
    let _ = p.check("ExecProcessRequest", &json!({"exec_id": "e"}));
    let text = std::fs::read_to_string(d.path().join("policy-decisions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["kind"], "ExecProcessRequest");
    assert_eq!(lines[1]["allowed"], false);
    assert_eq!(lines[0]["request"]["container_id"], "c");
}
