//! The Kata calls the scenarios make, with the failure kept as (code,
//! message) so that verdicts can compare codes.

use std::path::Path;

use bosun_client::{spec, Client};
use bosun_protocols::agent::*;
use bosun_protocols::oci;

/// A failed call.
#[derive(Debug, Clone)]
pub struct Fail {
    pub code: ttrpc::Code,
    pub msg: String,
}

pub type R<T> = Result<T, Fail>;

fn f(e: ttrpc::Error) -> Fail {
    match e {
        ttrpc::Error::RpcStatus(s) => Fail {
            code: s.code(),
            msg: s.message().to_string(),
        },
        other => Fail {
            code: ttrpc::Code::UNKNOWN,
            msg: other.to_string(),
        },
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub struct Calls<'a>(pub &'a Client);

impl Calls<'_> {
    pub async fn sandbox(&self, host: &str) -> R<()> {
        let mut r = CreateSandboxRequest::new();
        (r.hostname, r.sandbox_id) = (host.into(), host.into());
        self.send_sandbox(&r).await
    }
    pub async fn destroy(&self) -> R<()> {
        self.0
            .agent
            .destroy_sandbox(self.0.ctx(), &DestroySandboxRequest::new())
            .await
            .map(|_| ())
            .map_err(f)
    }
    pub async fn create_spec(&self, id: &str, spec: oci::Spec, storages: Vec<Storage>) -> R<()> {
        self.create_full(id, spec, storages, Vec::new()).await
    }
    /// CreateContainer with storages and devices.
    pub async fn create_full(&self, id: &str, spec: oci::Spec, storages: Vec<Storage>, devices: Vec<Device>) -> R<()> {
        let mut r = CreateContainerRequest::new();
        (r.container_id, r.exec_id, r.OCI, r.storages, r.devices) =
            (id.into(), id.into(), Some(spec).into(), storages, devices);
        self.send_container(&r).await
    }
    pub async fn create(&self, id: &str, rootfs: &Path, args: &[&str]) -> R<()> {
        self.create_spec(id, spec::container(Some(rootfs), &s(args)), vec![])
            .await
    }
    /// The pause container: `args` run in `rootfs`, or, with no rootfs,
    /// the spec's `/pause` in a rootfs that was never mounted.
    pub async fn pause(&self, rootfs: Option<&Path>, args: &[&str]) -> R<()> {
        let mut s = spec::pause(rootfs);
        if rootfs.is_some() && !args.is_empty() {
            if let Some(p) = s.Process.as_mut() {
                p.Args = args.iter().map(|a| a.to_string()).collect();
            }
        }
        self.create_spec("pause", s, vec![]).await?;
        self.start("pause").await
    }
    pub async fn start(&self, id: &str) -> R<()> {
        let mut r = StartContainerRequest::new();
        r.container_id = id.into();
        self.0
            .agent
            .start_container(self.0.ctx(), &r)
            .await
            .map(|_| ())
            .map_err(f)
    }
    pub async fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> R<()> {
        let mut r = ExecProcessRequest::new();
        (r.container_id, r.exec_id, r.process) = (id.into(), exec_id.into(), Some(spec::process(&s(args))).into());
        self.0.agent.exec_process(self.0.ctx(), &r).await.map(|_| ()).map_err(f)
    }
    pub async fn wait(&self, id: &str, exec_id: &str) -> R<i32> {
        let mut r = WaitProcessRequest::new();
        (r.container_id, r.exec_id) = (id.into(), exec_id.into());
        self.0
            .agent
            .wait_process(self.0.long_poll(), &r)
            .await
            .map(|r| r.status)
            .map_err(f)
    }
    pub async fn signal(&self, id: &str, exec_id: &str, sig: u32) -> R<()> {
        let mut r = SignalProcessRequest::new();
        (r.container_id, r.exec_id, r.signal) = (id.into(), exec_id.into(), sig);
        self.0
            .agent
            .signal_process(self.0.ctx(), &r)
            .await
            .map(|_| ())
            .map_err(f)
    }
    pub async fn write(&self, id: &str, exec_id: &str, data: &[u8]) -> R<u32> {
        let mut r = WriteStreamRequest::new();
        (r.container_id, r.exec_id, r.data) = (id.into(), exec_id.into(), data.to_vec());
        self.0
            .agent
            .write_stdin(self.0.ctx(), &r)
            .await
            .map(|r| r.len)
            .map_err(f)
    }
    pub async fn read(&self, id: &str, exec_id: &str) -> R<Vec<u8>> {
        let mut r = ReadStreamRequest::new();
        (r.container_id, r.exec_id, r.len) = (id.into(), exec_id.into(), 1 << 20);
        self.0
            .agent
            .read_stdout(self.0.long_poll(), &r)
            .await
            .map(|r| r.data)
            .map_err(f)
    }
    /// Reads stdout until the empty read that means EOF.
    /// Reads stdout until it holds `needle` (or EOF), within `bound`.
    pub async fn read_until(&self, id: &str, exec_id: &str, needle: &str, bound: std::time::Duration) -> R<String> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + bound;
        while !String::from_utf8_lossy(&out).contains(needle) {
            let d = tokio::time::timeout_at(deadline, self.read(id, exec_id))
                .await
                .map_err(|_| Fail {
                    code: ttrpc::Code::DEADLINE_EXCEEDED,
                    msg: format!(
                        "no {needle:?} within {bound:?}; got {:?}",
                        String::from_utf8_lossy(&out)
                    ),
                })??;
            if d.is_empty() {
                break;
            }
            out.extend(d);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    /// CreateSandbox as given.
    pub async fn send_sandbox(&self, r: &CreateSandboxRequest) -> R<()> {
        self.0
            .agent
            .create_sandbox(self.0.ctx(), r)
            .await
            .map(|_| ())
            .map_err(f)
    }
    /// CreateContainer as given.
    pub async fn send_container(&self, r: &CreateContainerRequest) -> R<()> {
        self.0
            .agent
            .create_container(self.0.ctx(), r)
            .await
            .map(|_| ())
            .map_err(f)
    }
    /// CopyFile as given.
    pub async fn copy_file(&self, r: &CopyFileRequest) -> R<()> {
        self.0.agent.copy_file(self.0.ctx(), r).await.map(|_| ()).map_err(f)
    }
    /// ExecProcess of a process built by the caller.
    pub async fn exec_process(&self, exec_id: &str, id: &str, p: oci::Process) -> R<()> {
        let mut r = ExecProcessRequest::new();
        (r.container_id, r.exec_id, r.process) = (id.into(), exec_id.into(), Some(p).into());
        self.0.agent.exec_process(self.0.ctx(), &r).await.map(|_| ()).map_err(f)
    }
    pub async fn read_all(&self, id: &str, exec_id: &str) -> R<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let d = self.read(id, exec_id).await?;
            if d.is_empty() {
                return Ok(out);
            }
            out.extend(d);
        }
    }
    pub async fn remove(&self, id: &str) -> R<()> {
        let mut r = RemoveContainerRequest::new();
        (r.container_id, r.timeout) = (id.into(), 10);
        self.0
            .agent
            .remove_container(self.0.ctx(), &r)
            .await
            .map(|_| ())
            .map_err(f)
    }
    /// The agent's own listing, when it has one (bosun's GetDiagnosticData
    /// "containers"); `None` for an agent without it.
    pub async fn listing(&self) -> Option<Vec<String>> {
        let mut q = GetDiagnosticDataRequest::new();
        q.log_type = "containers".into();
        let data = self.0.agent.get_diagnostic_data(self.0.ctx(), &q).await.ok()?.data;
        let v: serde_json::Value = serde_json::from_str(&data).ok()?;
        Some(
            v.as_array()?
                .iter()
                .filter_map(|c| c["id"].as_str().map(String::from))
                .collect(),
        )
    }
}
