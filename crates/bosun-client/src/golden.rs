//! The golden requests of `tests/fixtures/` (see its README): CreateSandbox,
//! CopyFile and CreateContainer exactly as the Kata runtimes build them,
//! compiled in so that the tests and `bosun-conformance` (which runs them
//! against any agent, in a VM too) send the same bytes.

use protobuf::MessageFull;

/// One fixture: its file name and text.
pub struct Fixture {
    /// File name under tests/fixtures/.
    pub name: &'static str,
    /// Its JSON.
    pub text: &'static str,
}

macro_rules! fixture {
    ($id:ident, $file:literal) => {
        #[doc = concat!("tests/fixtures/", $file)]
        pub const $id: Fixture = Fixture {
            name: $file,
            text: include_str!(concat!("../tests/fixtures/", $file)),
        };
    };
}

fixture!(AGENT_CTL_SANDBOX, "agent-ctl-CreateSandbox.json");
fixture!(AGENT_CTL_CONTAINER, "agent-ctl-CreateContainer.json");
fixture!(REMOTE_SANDBOX, "runtime-rs-remote-CreateSandbox.json");
fixture!(REMOTE_COPY_FILES, "runtime-rs-remote-CopyFile.json");
fixture!(REMOTE_PAUSE, "runtime-rs-remote-CreateContainer-pause.json");
fixture!(REMOTE_WORKLOAD, "runtime-rs-remote-CreateContainer-workload.json");
fixture!(VIRTIOFS_SANDBOX, "go-runtime-virtiofs-CreateSandbox.json");
fixture!(VIRTIOFS_PAUSE, "go-runtime-virtiofs-CreateContainer-pause.json");
fixture!(VIRTIOFS_WORKLOAD, "go-runtime-virtiofs-CreateContainer-workload.json");

/// The guest directory the runtimes share (virtio-fs) or copy (CopyFile)
/// containers' files into.
pub const SHARED_DIR: &str = "/run/kata-containers/shared/containers/";

impl Fixture {
    /// The request, with `@KEY@` placeholders replaced. Strict: a field the
    /// protocol does not have is an error, so a fixture cannot drift.
    pub fn parse<M: MessageFull>(&self, subst: &[(&str, &str)]) -> Result<M, String> {
        protobuf_json_mapping::parse_from_str(&self.substituted(subst)).map_err(|e| format!("{}: {e}", self.name))
    }

    /// A fixture that is a JSON array of requests.
    pub fn parse_list<M: MessageFull>(&self) -> Result<Vec<M>, String> {
        let v: serde_json::Value = serde_json::from_str(self.text).map_err(|e| format!("{}: {e}", self.name))?;
        v.as_array()
            .ok_or_else(|| format!("{}: not an array", self.name))?
            .iter()
            .map(|m| protobuf_json_mapping::parse_from_str(&m.to_string()).map_err(|e| format!("{}: {e}", self.name)))
            .collect()
    }

    fn substituted(&self, subst: &[(&str, &str)]) -> String {
        subst.iter().fold(self.text.to_string(), |t, (k, v)| t.replace(k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_protocols::agent::{CopyFileRequest, CreateContainerRequest, CreateSandboxRequest};

    #[test]
    fn every_fixture_parses() {
        for f in [AGENT_CTL_SANDBOX, REMOTE_SANDBOX, VIRTIOFS_SANDBOX] {
            f.parse::<CreateSandboxRequest>(&[]).unwrap();
        }
        for f in [
            AGENT_CTL_CONTAINER,
            REMOTE_PAUSE,
            REMOTE_WORKLOAD,
            VIRTIOFS_PAUSE,
            VIRTIOFS_WORKLOAD,
        ] {
            let r: CreateContainerRequest = f.parse(&[("@ROOTFS@", "/r")]).unwrap();
            assert!(r.OCI.Process.is_some(), "{}", f.name);
        }
        assert!(REMOTE_COPY_FILES.parse_list::<CopyFileRequest>().unwrap().len() > 5);
        let bad = Fixture {
            name: "bad",
            text: r#"{"container_id":"x","no_such_field":1}"#,
        };
        assert!(
            bad.parse::<CreateContainerRequest>(&[]).is_err(),
            "unknown fields are refused"
        );
    }
}
