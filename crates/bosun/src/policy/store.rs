//! The policy in force and its `pstate`, journalled under the run dir
//! (`policy.json`, `policy-state.json`: checksummed, written atomically),
//! so that a restarted agent enforces what it enforced before.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::journal::{Journal, JournalError, Versioned};

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    version: u32,
    /// Where it came from (a file's path, or SetPolicy).
    source: String,
    rego: String,
}

impl Versioned for Saved {
    const VERSION: u32 = 1;
    fn version(&self) -> u32 {
        self.version
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct State {
    version: u32,
    pstate: Value,
}

impl Versioned for State {
    const VERSION: u32 = 1;
    fn version(&self) -> u32 {
        self.version
    }
}

/// What was in force.
pub struct Restored {
    pub source: String,
    pub rego: String,
    pub pstate: Value,
}

/// The two journals, or none (a policy that is never kept).
pub struct Store {
    files: Option<(Journal, Journal)>,
}

impl Store {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            files: Some((
                Journal::at(run_dir.join("policy.json")),
                Journal::at(run_dir.join("policy-state.json")),
            )),
        }
    }

    pub fn none() -> Self {
        Self { files: None }
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .flat_map(|(p, s)| [p.path().to_path_buf(), s.path().to_path_buf()])
            .collect()
    }

    /// The policy and pstate in force before, if one was; an error when
    /// they are there and cannot be trusted.
    pub fn load(&self) -> Result<Option<Restored>, String> {
        let Some((p, s)) = &self.files else {
            return Ok(None);
        };
        let Some(saved) = p.load::<Saved>().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let pstate = s
            .load::<State>()
            .map_err(|e| e.to_string())?
            .map(|s| s.pstate)
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(Some(Restored {
            source: saved.source,
            rego: saved.rego,
            pstate,
        }))
    }

    /// A new policy: its text, and an empty pstate.
    pub fn save_policy(&self, rego: &str, source: &str) -> Result<(), String> {
        let Some((p, s)) = &self.files else {
            return Ok(());
        };
        let _w = p.write_lock();
        let _ws = s.write_lock();
        s.save(&State {
            version: State::VERSION,
            pstate: serde_json::json!({}),
        })
        .and_then(|_| {
            p.save(&Saved {
                version: Saved::VERSION,
                source: source.to_string(),
                rego: rego.to_string(),
            })
        })
        .map_err(|e: JournalError| e.to_string())
    }

    pub fn save_pstate(&self, pstate: &Value) -> Result<(), String> {
        let Some((_, s)) = &self.files else {
            return Ok(());
        };
        let _w = s.write_lock();
        s.save(&State {
            version: State::VERSION,
            pstate: pstate.clone(),
        })
        .map_err(|e| e.to_string())
    }
}
