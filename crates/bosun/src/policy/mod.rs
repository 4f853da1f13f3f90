//! Agent policy: every request checked against a Rego policy before it
//! acts, with the Kata agent's semantics, so that the policies written for
//! it (kata-opa's, genpolicy's) decide the same way here.
//!
//! One regorus engine. Its data starts as `{"pstate": {}}`; the policy is
//! `package agent_policy`; a request is decided by
//! `data.agent_policy.<RequestTypeName>` with the request as `input`
//! (`input.rs`: serde's rendering of the rust-protobuf structs, as the Kata
//! agent hands it). The answer is a bool, or `{allowed, ops}` whose JSON
//! patch `ops` update `pstate` when allowed. A denial is PERMISSION_DENIED,
//! `<Name> is blocked by policy: <the policy's print() output>`.
//! `AllowRequestsFailingPolicy` true turns denials into warnings.
//!
//! Where bosun differs, and why: a request the policy has no rule for is
//! denied (PERMISSION_DENIED, "no rule") where the Kata agent answers
//! INTERNAL; an evaluation is bounded in time (a rule that loops denies
//! instead of wedging the agent); and the policy in force and its
//! `pstate` are journalled (`store.rs`), so a restarted agent enforces
//! what it enforced before: the Kata agent starts again from its default
//! file, which a restart would let a host use to open the agent.

mod decisions;
pub mod input;
mod store;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use slog::{info, Logger};

/// Policy text bounds, the Kata agent's (genpolicy's policies have lines of
/// over 1 KiB: an image's environment on one line).
const MAX_COL: u32 = 64 * 1024;
const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
const MAX_LINES: usize = 200_000;
/// Bound on one decision's evaluation.
const EVAL_LIMIT: Duration = Duration::from_secs(2);

/// Why a policy could not be taken or applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy text does not load (syntax, limits): names the line.
    #[error("policy: {0}")]
    Invalid(String),
    /// The request is not allowed.
    #[error("{request} is blocked by policy: {why}")]
    Denied {
        /// The request type (`ExecProcessRequest`).
        request: String,
        /// The policy's print() output, or what bosun found.
        why: String,
    },
    /// The policy could not be read or kept.
    #[error("policy store: {0}")]
    Store(String),
}

/// The rules in force.
enum Rules {
    /// No policy: every request allowed (no engine is built).
    Open,
    /// A Rego policy.
    Rego(Box<Engine>),
    /// The journalled policy could not be read back: everything denied,
    /// SetPolicy included, rather than opening the agent.
    Closed(String),
}

struct Engine {
    engine: regorus::Engine,
    allow_failures: bool,
}

/// The agent's policy.
pub struct Policy {
    rules: Mutex<Rules>,
    store: store::Store,
    decisions: Option<Mutex<decisions::Log>>,
    log: Logger,
}

impl Default for Policy {
    fn default() -> Self {
        Self::open_to_all()
    }
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &*crate::sync::lock(&self.rules) {
            Rules::Open => "open",
            Rules::Rego(_) => "rego",
            Rules::Closed(_) => "closed",
        };
        write!(f, "Policy({what})")
    }
}

/// Where a policy came from, for the log.
pub enum Source<'a> {
    /// A file named by configuration (`--policy-file`, the default file).
    File(&'a Path),
    /// None: every request allowed.
    None,
}

impl Policy {
    /// The policy in force at start: the one journalled under `run_dir` if
    /// any (a restart keeps what was enforced), else `source`. With
    /// `debug`, every decision is logged to a bounded file in `run_dir`.
    pub fn open(run_dir: &Path, source: Source<'_>, debug: bool, log: &Logger) -> Result<Self, PolicyError> {
        let store = store::Store::new(run_dir);
        let rules = match store.load() {
            Ok(Some(saved)) => {
                info!(log, "policy: the one in force before the restart"; "from" => &saved.source);
                let mut e = Engine::new(&saved.rego)?;
                e.set_pstate(saved.pstate)?;
                Rules::Rego(Box::new(e))
            }
            Ok(None) => match source {
                Source::File(p) => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| PolicyError::Invalid(format!("read {}: {e}", p.display())))?;
                    let e = Engine::new(&text).map_err(|e| PolicyError::Invalid(format!("{}: {e}", p.display())))?;
                    store
                        .save_policy(&text, &p.display().to_string())
                        .map_err(PolicyError::Store)?;
                    info!(log, "policy: from a file"; "file" => %p.display(), "allow_failures" => e.allow_failures);
                    Rules::Rego(Box::new(e))
                }
                Source::None => Rules::Open,
            },
            Err(why) => {
                slog::error!(log, "policy: the journalled policy cannot be read; every request is denied"; "error" => &why);
                Rules::Closed(why)
            }
        };
        let decisions = debug.then(|| Mutex::new(decisions::Log::new(run_dir)));
        Ok(Self {
            rules: Mutex::new(rules),
            store,
            decisions,
            log: log.clone(),
        })
    }

    /// No policy: every request allowed, nothing kept.
    pub fn open_to_all() -> Self {
        Self {
            rules: Mutex::new(Rules::Open),
            store: store::Store::none(),
            decisions: None,
            log: Logger::root(slog::Discard, slog::o!()),
        }
    }

    /// Whether any policy is enforced.
    pub fn is_enforcing(&self) -> bool {
        !matches!(*crate::sync::lock(&self.rules), Rules::Open)
    }

    /// Decides a request by its type name, with its input as the Kata
    /// agent renders it (built only when a policy is enforced).
    pub fn check_request(&self, req: &dyn protobuf::MessageDyn) -> Result<(), PolicyError> {
        if !self.is_enforcing() {
            return Ok(());
        }
        self.check(req.descriptor_dyn().name(), &input::of(req))
    }

    /// Decides `request` (its type name) with `input`.
    pub fn check(&self, request: &str, input: &Value) -> Result<(), PolicyError> {
        let started = std::time::Instant::now();
        let mut rules = crate::sync::lock(&self.rules);
        let decided = match &mut *rules {
            Rules::Open => return Ok(()),
            Rules::Closed(why) => Err(PolicyError::Denied {
                request: request.to_string(),
                why: format!("the policy in force could not be read back ({why})"),
            }),
            Rules::Rego(e) => e.decide(request, input, &self.store),
        };
        drop(rules);
        slog::debug!(self.log, "policy decided"; "request" => request, "allowed" => decided.is_ok(),
            "us" => started.elapsed().as_micros() as u64);
        if let Some(d) = &self.decisions {
            crate::sync::lock(d).record(request, input, decided.is_ok());
        }
        if let Err(PolicyError::Denied { .. }) = &decided {
            count_denial(request);
        }
        decided
    }

    /// SetPolicy: checked by the policy in force, then `rego` replaces it
    /// (with a fresh `pstate`); a policy that does not load leaves the
    /// one in force.
    pub fn set(&self, input: &Value, rego: &str) -> Result<(), PolicyError> {
        self.check("SetPolicyRequest", input)?;
        let e = Engine::new(rego)?;
        self.store.save_policy(rego, "SetPolicy").map_err(PolicyError::Store)?;
        info!(self.log, "policy: replaced by SetPolicy"; "bytes" => rego.len(), "allow_failures" => e.allow_failures);
        *crate::sync::lock(&self.rules) = Rules::Rego(Box::new(e));
        Ok(())
    }
}

impl Engine {
    fn new(rego: &str) -> Result<Self, PolicyError> {
        let mut engine = regorus::Engine::new();
        engine.set_strict_builtin_errors(false);
        engine.set_gather_prints(true);
        engine.set_policy_length_config(regorus::PolicyLengthConfig {
            max_col: NonZeroU32::new(MAX_COL).expect("non-zero"),
            max_file_bytes: NonZeroUsize::new(MAX_FILE_BYTES).expect("non-zero"),
            max_lines: NonZeroUsize::new(MAX_LINES).expect("non-zero"),
        });
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_LIMIT,
            check_interval: NonZeroU32::new(64).expect("non-zero"),
        });
        engine
            .add_data(regorus::Value::from_json_str(r#"{"pstate": {}}"#).map_err(|e| invalid(&e))?)
            .map_err(|e| invalid(&e))?;
        engine
            .add_policy("agent_policy".into(), rego.to_string())
            .map_err(|e| invalid(&e))?;
        let mut e = Engine {
            engine,
            allow_failures: false,
        };
        // As the Kata agent: the flag is the rule's value with an empty input.
        e.allow_failures = matches!(
            e.query("AllowRequestsFailingPolicy", "{}"),
            Ok((Some(Verdict::Bool(true)), _))
        );
        Ok(e)
    }

    fn set_pstate(&mut self, pstate: Value) -> Result<(), PolicyError> {
        let data = serde_json::json!({ "pstate": pstate });
        self.engine.clear_data();
        self.engine
            .add_data(regorus::Value::from_json_str(&data.to_string()).map_err(|e| PolicyError::Store(e.to_string()))?)
            .map_err(|e| PolicyError::Store(e.to_string()))
    }

    /// The rule's value for `input`, and what the policy printed.
    fn query(&mut self, request: &str, input: &str) -> Result<(Option<Verdict>, String), String> {
        self.engine.set_input_json(input).map_err(|e| e.to_string())?;
        // The rule alone (eval_rule), not a query: the same value, at a
        // fraction of the cost (StartContainer with a genpolicy-sized
        // policy: 5 us against 338 us, measured in a release build).
        let value = self.engine.eval_rule(format!("data.agent_policy.{request}"));
        let prints = self.engine.take_prints().map(|p| p.join(" ")).unwrap_or_default();
        let value = match value {
            Ok(regorus::Value::Undefined) => None,
            Ok(v) => Some(Verdict::of(&v)?),
            // No such rule, or it failed: the query tells the two apart
            // (no result, or an error), as the Kata agent asks.
            Err(_) => {
                let results = self
                    .engine
                    .eval_query(format!("data.agent_policy.{request}"), false)
                    .map_err(|e| e.to_string())?;
                match results.result.as_slice() {
                    [] => None,
                    [one] => match one.expressions.as_slice() {
                        [x] => Some(Verdict::of(&x.value)?),
                        _ => return Err(format!("{} expressions in the answer", one.expressions.len())),
                    },
                    more => return Err(format!("{} answers", more.len())),
                }
            }
        };
        Ok((value, prints))
    }

    fn decide(&mut self, request: &str, input: &Value, store: &store::Store) -> Result<(), PolicyError> {
        let denied = |why: String| PolicyError::Denied {
            request: request.to_string(),
            why,
        };
        let (verdict, prints) = match self.query(request, &input.to_string()) {
            Ok(v) => v,
            Err(_) if self.allow_failures => return Ok(()),
            Err(e) => return Err(denied(format!("evaluation failed: {e}"))),
        };
        let allowed = match verdict {
            None if self.allow_failures => true,
            None => return Err(denied(format!("the policy has no rule for {request}"))),
            Some(Verdict::Bool(b)) => b,
            Some(Verdict::Patch { allowed, ops }) => {
                if allowed && !ops.0.is_empty() {
                    match self.apply(ops, store) {
                        Ok(()) => {}
                        // Debugging with every request let through: the
                        // state stays as it was.
                        Err(_) if self.allow_failures => {}
                        Err(e) => return Err(denied(format!("its state update failed: {e}"))),
                    }
                }
                allowed
            }
        };
        if allowed || self.allow_failures {
            return Ok(());
        }
        Err(denied(prints))
    }

    /// Applies `ops` to the data (`pstate`), and journals the new pstate.
    fn apply(&mut self, ops: json_patch::Patch, store: &store::Store) -> Result<(), String> {
        let mut data = serde_json::to_value(self.engine.get_data()).map_err(|e| e.to_string())?;
        json_patch::patch(&mut data, &ops).map_err(|e| e.to_string())?;
        let pstate = data.get("pstate").cloned().unwrap_or_else(|| serde_json::json!({}));
        store.save_pstate(&pstate)?;
        self.set_pstate(pstate).map_err(|e| e.to_string())
    }
}

/// A rule's answer.
enum Verdict {
    Bool(bool),
    Patch { allowed: bool, ops: json_patch::Patch },
}

impl Verdict {
    fn of(v: &regorus::Value) -> Result<Self, String> {
        match v {
            regorus::Value::Bool(b) => Ok(Verdict::Bool(*b)),
            regorus::Value::Object(_) => {
                #[derive(serde::Deserialize)]
                struct Answer {
                    allowed: bool,
                    #[serde(default)]
                    ops: Option<json_patch::Patch>,
                }
                let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
                let a: Answer = serde_json::from_value(json).map_err(|e| format!("an answer object: {e}"))?;
                Ok(Verdict::Patch {
                    allowed: a.allowed,
                    ops: a.ops.unwrap_or(json_patch::Patch(Vec::new())),
                })
            }
            other => Err(format!(
                "a rule's value must be a bool or {{allowed, ops}}, not {other}"
            )),
        }
    }
}

fn invalid(e: &dyn std::fmt::Display) -> PolicyError {
    PolicyError::Invalid(e.to_string())
}

/// Denials by request type, for GetMetrics.
static DENIALS: Mutex<std::collections::BTreeMap<String, u64>> = Mutex::new(std::collections::BTreeMap::new());

fn count_denial(request: &str) {
    *crate::sync::lock(&DENIALS).entry(request.to_string()).or_default() += 1;
}

/// Denials so far, by request type.
pub fn denials() -> Vec<(String, u64)> {
    crate::sync::lock(&DENIALS)
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The Kata agent's default policy file.
pub const DEFAULT_FILE: &str = "/etc/kata-opa/default-policy.rego";

/// Where the policy's journal lives under a run dir (for the sweep and
/// the protection rules).
pub fn store_paths(run_dir: &Path) -> Vec<PathBuf> {
    store::Store::new(run_dir).paths()
}

#[cfg(test)]
mod tests;
