//! `grpc.AgentService`. Thin handlers: decode, validate, call the sandbox,
//! map the error. Methods not written here answer UNIMPLEMENTED with the
//! method's name (the generated defaults, see build.rs).

use std::sync::Arc;
use std::time::Duration;

use ttrpc::r#async::TtrpcContext;

use super::traced;
use super::{convert, convert_net};
use crate::error::AgentError;
use crate::guestops;
use crate::ids::{parse_exec_id, ContainerId};
use crate::protocols::agent::*;
use crate::protocols::agent_ttrpc;
use crate::protocols::empty::Empty;
use crate::sandbox::create_container::CreateRequest;
use crate::sandbox::stdio::Stream;
use crate::sandbox::Sandbox;

/// Serves `grpc.AgentService`.
pub struct Agent {
    pub(super) log: slog::Logger,
    pub(super) sandbox: Arc<Sandbox>,
    pub(super) net: crate::net::Network,
    /// Power the VM off after a successful DestroySandbox (as PID 1): of
    /// any sandbox (""), or of the one with this id.
    pub(super) poweroff_on_destroy: Option<String>,
    /// The pod VM's pause bundle (see `Options`).
    pub(super) pause_bundle: std::path::PathBuf,
    /// The connections' bounds and counters, for GetMetrics.
    pub(super) gate: Option<std::sync::Arc<crate::transport::limits::Gate>>,
    /// What every request is checked against before it acts.
    pub(super) policy: Arc<crate::policy::Policy>,
}

type R<T> = ttrpc::Result<T>;

/// When to give up on the slow part of a call (an image pull), ahead of
/// the client's timeout: ttrpc drops the handler at that timeout, and
/// bosun answers first, having kept nothing half-done.
fn request_deadline(timeout_nano: i64) -> Option<tokio::time::Instant> {
    if timeout_nano <= 0 {
        return None;
    }
    let t = Duration::from_nanos(timeout_nano as u64);
    let margin = (t / 10).max(Duration::from_millis(500)).min(t / 2);
    Some(tokio::time::Instant::now() + t - margin)
}

#[async_trait::async_trait]
impl agent_ttrpc::AgentService for Agent {
    async fn create_sandbox(&self, _: &TtrpcContext, req: CreateSandboxRequest) -> R<Empty> {
        self.checked(&req, "CreateSandbox", async {
            self.sandbox.create_sandbox(convert::sandbox(&req)?).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn destroy_sandbox(&self, _: &TtrpcContext, req: DestroySandboxRequest) -> R<Empty> {
        self.checked(&req, "DestroySandbox", async {
            let sid = self.sandbox.sandbox_id();
            self.sandbox.destroy_sandbox().await?;
            let wanted = self
                .poweroff_on_destroy
                .as_deref()
                .is_some_and(|w| w.is_empty() || Some(w) == sid.as_deref());
            if wanted && std::process::id() == 1 {
                slog::info!(self.log, "sandbox destroyed; powering off as configured");
                // After the reply has gone out.
                tokio::spawn(async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    crate::sys::guest::power_off();
                });
            }
            Ok(Empty::new())
        })
        .await
    }

    async fn create_container(&self, ctx: &TtrpcContext, req: CreateContainerRequest) -> R<Empty> {
        let deadline = request_deadline(ctx.timeout_nano);
        self.checked(&req, "CreateContainer", async {
            let id = ContainerId::parse(&req.container_id)?;
            let oci = convert::with_pause_bundle(&req, &self.pause_bundle)?;
            let mut spec = convert::container(oci.as_ref().or(req.OCI.as_ref()))?;
            spec.shared_mounts = convert::shared_mounts(&req.shared_mounts)?;
            spec.guest_devices = convert::guest_devices(&req.devices)?;
            let storages = convert::storages(&req.storages)?;
            let req = CreateRequest {
                id,
                spec,
                storages,
                join_pidns: req.sandbox_pidns,
                deadline,
            };
            self.sandbox.create_container(req).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn start_container(&self, _: &TtrpcContext, req: StartContainerRequest) -> R<Empty> {
        self.checked(&req, "StartContainer", async {
            self.sandbox
                .start_container(&ContainerId::parse(&req.container_id)?)
                .await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn remove_container(&self, _: &TtrpcContext, req: RemoveContainerRequest) -> R<Empty> {
        self.checked(&req, "RemoveContainer", async {
            let id = ContainerId::parse(&req.container_id)?;
            self.sandbox
                .remove_container(&id, Duration::from_secs(req.timeout.into()))
                .await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn exec_process(&self, _: &TtrpcContext, req: ExecProcessRequest) -> R<Empty> {
        self.checked(&req, "ExecProcess", async {
            let id = ContainerId::parse(&req.container_id)?;
            let exec_id = parse_exec_id(&req.exec_id)?
                .ok_or_else(|| crate::error::AgentError::invalid("exec_id", "empty; an exec needs its own id"))?;
            let p = convert::process(
                req.process
                    .as_ref()
                    .ok_or_else(|| crate::error::AgentError::invalid("process", "missing"))?,
            )?;
            self.sandbox.exec_process(&id, exec_id, p).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn signal_process(&self, _: &TtrpcContext, req: SignalProcessRequest) -> R<Empty> {
        self.checked(&req, "SignalProcess", async {
            let id = ContainerId::parse(&req.container_id)?;
            self.sandbox
                .signal(&id, parse_exec_id(&req.exec_id)?.as_deref(), req.signal)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn wait_process(&self, _: &TtrpcContext, req: WaitProcessRequest) -> R<WaitProcessResponse> {
        self.checked(&req, "WaitProcess", async {
            let id = ContainerId::parse(&req.container_id)?;
            let status = self.sandbox.wait(&id, parse_exec_id(&req.exec_id)?.as_deref()).await?;
            Ok(WaitProcessResponse {
                status,
                ..Default::default()
            })
        })
        .await
    }

    async fn read_stdout(&self, _: &TtrpcContext, req: ReadStreamRequest) -> R<ReadStreamResponse> {
        traced(&self.log, "ReadStdout", self.read(req, Stream::Stdout)).await
    }

    async fn read_stderr(&self, _: &TtrpcContext, req: ReadStreamRequest) -> R<ReadStreamResponse> {
        traced(&self.log, "ReadStderr", self.read(req, Stream::Stderr)).await
    }

    async fn write_stdin(&self, _: &TtrpcContext, req: WriteStreamRequest) -> R<WriteStreamResponse> {
        self.checked(&req, "WriteStdin", async {
            let id = ContainerId::parse(&req.container_id)?;
            let n = self
                .sandbox
                .write_stdin(&id, parse_exec_id(&req.exec_id)?.as_deref(), &req.data)
                .await?;
            Ok(WriteStreamResponse {
                len: n as u32,
                ..Default::default()
            })
        })
        .await
    }

    async fn close_stdin(&self, _: &TtrpcContext, req: CloseStdinRequest) -> R<Empty> {
        self.checked(&req, "CloseStdin", async {
            let id = ContainerId::parse(&req.container_id)?;
            self.sandbox
                .close_stdin(&id, parse_exec_id(&req.exec_id)?.as_deref())
                .await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn update_container(&self, _: &TtrpcContext, req: UpdateContainerRequest) -> R<Empty> {
        self.checked(&req, "UpdateContainer", async {
            let id = ContainerId::parse(&req.container_id)?;
            self.sandbox
                .update_container(&id, &convert::resources(req.resources.as_ref())?)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn stats_container(&self, _: &TtrpcContext, req: StatsContainerRequest) -> R<StatsContainerResponse> {
        self.checked(&req, "StatsContainer", async {
            let (stats, net) = self.sandbox.stats(&ContainerId::parse(&req.container_id)?)?;
            Ok(convert::stats_response(&stats, &net))
        })
        .await
    }

    async fn pause_container(&self, _: &TtrpcContext, req: PauseContainerRequest) -> R<Empty> {
        self.checked(&req, "PauseContainer", async {
            self.sandbox.freeze(&ContainerId::parse(&req.container_id)?, true)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn resume_container(&self, _: &TtrpcContext, req: ResumeContainerRequest) -> R<Empty> {
        self.checked(&req, "ResumeContainer", async {
            self.sandbox.freeze(&ContainerId::parse(&req.container_id)?, false)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn get_diagnostic_data(
        &self,
        _: &TtrpcContext,
        req: GetDiagnosticDataRequest,
    ) -> R<GetDiagnosticDataResponse> {
        self.checked(&req, "GetDiagnosticData", async {
            match req.log_type.as_str() {
                "teardown" => {}
                "containers" => {
                    return Ok(GetDiagnosticDataResponse {
                        data: self.sandbox.listing(),
                        ..Default::default()
                    })
                }
                "images" => {
                    let inv = self.sandbox.image_store().map(|s| s.inventory());
                    return Ok(GetDiagnosticDataResponse {
                        data: serde_json::to_string(&inv).unwrap_or_default(),
                        ..Default::default()
                    });
                }
                other => {
                    return Err(AgentError::invalid(
                        "log_type",
                        format!("{other:?}: bosun answers \"teardown\" (a report), \"containers\" (a listing) and \"images\" (the image store)"),
                    ))
                }
            }
            // Empty container id: the sandbox's last DestroySandbox.
            let key = if req.container_id.is_empty() {
                String::new()
            } else {
                ContainerId::parse(&req.container_id)?.as_str().to_string()
            };
            let data = self.sandbox.teardown_report(&key).ok_or_else(|| {
                AgentError::invalid("container_id", format!("no teardown report for {:?}", req.container_id))
            })?;
            Ok(GetDiagnosticDataResponse {
                data,
                ..Default::default()
            })
        })
        .await
    }

    async fn tty_win_resize(&self, _: &TtrpcContext, req: TtyWinResizeRequest) -> R<Empty> {
        self.checked(&req, "TtyWinResize", async {
            let id = ContainerId::parse(&req.container_id)?;
            self.sandbox
                .resize(&id, parse_exec_id(&req.exec_id)?.as_deref(), req.row, req.column)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn copy_file(&self, _: &TtrpcContext, req: CopyFileRequest) -> R<Empty> {
        traced(&self.log, "CopyFile", async {
            // The policy reads a reduced request (no data), as the Kata
            // agent's PolicyCopyFileRequest.
            let input = crate::policy::input::copy_file(&req).map_err(|e| AgentError::invalid("data", e))?;
            self.policy.check("CopyFileRequest", &input)?;
            let c = crate::sandbox::copy_file::CopyChunk {
                path: req.path,
                file_size: req.file_size,
                file_mode: req.file_mode,
                dir_mode: req.dir_mode,
                uid: req.uid,
                gid: req.gid,
                offset: req.offset,
                data: req.data,
            };
            self.sandbox.copy_file(c).await?;
            Ok(Empty::new())
        })
        .await
    }

    async fn set_guest_date_time(&self, _: &TtrpcContext, req: SetGuestDateTimeRequest) -> R<Empty> {
        self.checked(&req, "SetGuestDateTime", async {
            self.sandbox.set_time(req.Sec, req.Usec)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn update_ephemeral_mounts(&self, _: &TtrpcContext, req: UpdateEphemeralMountsRequest) -> R<Empty> {
        self.checked(&req, "UpdateEphemeralMounts", async {
            self.sandbox.update_ephemeral(&convert::storages(&req.storages)?)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn get_oom_event(&self, _: &TtrpcContext, req: GetOOMEventRequest) -> R<OOMEvent> {
        self.checked(&req, "GetOOMEvent", async {
            let id = self.sandbox.next_oom().await;
            Ok(OOMEvent {
                container_id: id.as_str().to_string(),
                ..Default::default()
            })
        })
        .await
    }

    async fn list_interfaces(&self, _: &TtrpcContext, req: ListInterfacesRequest) -> R<Interfaces> {
        self.checked(&req, "ListInterfaces", async {
            let v = self.net.list_interfaces().await.map_err(AgentError::Net)?;
            Ok(Interfaces {
                Interfaces: v.iter().map(convert_net::pb_iface).collect(),
                ..Default::default()
            })
        })
        .await
    }

    async fn update_interface(
        &self,
        _: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> R<crate::protocols::types::Interface> {
        self.checked(&req, "UpdateInterface", async {
            let want = convert_net::iface(
                req.interface
                    .as_ref()
                    .ok_or_else(|| AgentError::invalid("interface", "missing"))?,
            )?;
            Ok(convert_net::pb_iface(
                &self.net.update_interface(&want).await.map_err(AgentError::Net)?,
            ))
        })
        .await
    }

    async fn list_routes(&self, _: &TtrpcContext, req: ListRoutesRequest) -> R<Routes> {
        self.checked(&req, "ListRoutes", async {
            let v = self.net.list_routes().await.map_err(AgentError::Net)?;
            Ok(Routes {
                Routes: v.iter().map(convert_net::pb_route).collect(),
                ..Default::default()
            })
        })
        .await
    }

    async fn update_routes(&self, _: &TtrpcContext, req: UpdateRoutesRequest) -> R<Routes> {
        self.checked(&req, "UpdateRoutes", async {
            let want = convert_net::routes(req.routes.as_ref().map(|r| r.Routes.as_slice()).unwrap_or(&[]))?;
            let v = self.net.update_routes(&want).await.map_err(AgentError::Net)?;
            Ok(Routes {
                Routes: v.iter().map(convert_net::pb_route).collect(),
                ..Default::default()
            })
        })
        .await
    }

    async fn add_arp_neighbors(&self, _: &TtrpcContext, req: AddARPNeighborsRequest) -> R<Empty> {
        self.checked(&req, "AddARPNeighbors", async {
            let v = convert_net::neighbours(req.neighbors.as_ref().map(|n| n.ARPNeighbors.as_slice()).unwrap_or(&[]))?;
            self.net.add_neighbours(&v).await.map_err(AgentError::Net)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn get_guest_details(&self, _: &TtrpcContext, req: GuestDetailsRequest) -> R<GuestDetailsResponse> {
        self.checked(&req, "GetGuestDetails", async { Ok(super::guest::details(&req)) })
            .await
    }

    async fn online_cpu_mem(&self, _: &TtrpcContext, req: OnlineCPUMemRequest) -> R<Empty> {
        self.checked(&req, "OnlineCPUMem", async {
            let done = guestops::hotplug::online(req.nb_cpus, req.cpu_only, req.wait).await?;
            slog::info!(self.log, "onlined"; "cpus" => done.cpus, "memory_blocks" => done.memory_blocks);
            Ok(Empty::new())
        })
        .await
    }

    async fn mem_hotplug_by_probe(&self, _: &TtrpcContext, req: MemHotplugByProbeRequest) -> R<Empty> {
        self.checked(&req, "MemHotplugByProbe", async {
            guestops::hotplug::probe(&req.memHotplugProbeAddr)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn get_metrics(&self, _: &TtrpcContext, req: GetMetricsRequest) -> R<Metrics> {
        self.checked(&req, "GetMetrics", async {
            let mut m = Metrics::new();
            m.metrics = super::metrics::render(self.gate.as_deref());
            Ok(m)
        })
        .await
    }

    async fn get_volume_stats(&self, _: &TtrpcContext, req: VolumeStatsRequest) -> R<VolumeStatsResponse> {
        self.checked(&req, "GetVolumeStats", async {
            let u = guestops::volume::stats(&req.volume_guest_path)?;
            Ok(convert::volume_stats(&u))
        })
        .await
    }

    async fn resize_volume(&self, _: &TtrpcContext, req: ResizeVolumeRequest) -> R<Empty> {
        self.checked(&req, "ResizeVolume", async {
            guestops::volume::resize(&req.volume_guest_path, req.size)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn add_swap(&self, _: &TtrpcContext, req: AddSwapRequest) -> R<Empty> {
        self.checked(&req, "AddSwap", async {
            let node = guestops::add_swap(&req.PCIPath).await?;
            slog::info!(self.log, "swap on"; "target" => %node.display());
            Ok(Empty::new())
        })
        .await
    }

    async fn add_swap_path(&self, _: &TtrpcContext, req: AddSwapPathRequest) -> R<Empty> {
        self.checked(&req, "AddSwapPath", async {
            guestops::add_swap_path(&req.path)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn reseed_random_dev(&self, _: &TtrpcContext, req: ReseedRandomDevRequest) -> R<Empty> {
        self.checked(&req, "ReseedRandomDev", async {
            guestops::reseed(&req.data)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn remove_stale_virtiofs_share_mounts(
        &self,
        _: &TtrpcContext,
        req: RemoveStaleVirtiofsShareMountsRequest,
    ) -> R<Empty> {
        self.checked(&req, "RemoveStaleVirtiofsShareMounts", async {
            self.sandbox.touch_share_mounts();
            Ok(Empty::new())
        })
        .await
    }

    async fn get_ip_tables(&self, _: &TtrpcContext, req: GetIPTablesRequest) -> R<GetIPTablesResponse> {
        self.checked(&req, "GetIPTables", async {
            let mut r = GetIPTablesResponse::new();
            r.data = guestops::iptables::get(self.sandbox.reaper(), req.is_ipv6).await?;
            Ok(r)
        })
        .await
    }

    async fn set_ip_tables(&self, _: &TtrpcContext, req: SetIPTablesRequest) -> R<SetIPTablesResponse> {
        self.checked(&req, "SetIPTables", async {
            let mut r = SetIPTablesResponse::new();
            r.data = guestops::iptables::set(self.sandbox.reaper(), req.is_ipv6, &req.data).await?;
            Ok(r)
        })
        .await
    }

    async fn set_policy(&self, _: &TtrpcContext, req: SetPolicyRequest) -> R<Empty> {
        traced(&self.log, "SetPolicy", async {
            // Checked by the policy in force, then it replaces it.
            self.policy.set(&crate::policy::input::of(&req), &req.policy)?;
            Ok(Empty::new())
        })
        .await
    }

    async fn mem_agent_memcg_set(&self, _: &TtrpcContext, req: MemAgentMemcgConfig) -> R<Empty> {
        self.checked(&req, "MemAgentMemcgSet", async {
            Err(AgentError::Unimplemented(
                "/grpc.AgentService/MemAgentMemcgSet is not implemented by bosun: it has no memory agent (the Kata mem-agent's memcg reclaim daemon)".into(),
            ))
        })
        .await
    }

    async fn mem_agent_compact_set(&self, _: &TtrpcContext, req: MemAgentCompactConfig) -> R<Empty> {
        self.checked(&req, "MemAgentCompactSet", async {
            Err(AgentError::Unimplemented(
                "/grpc.AgentService/MemAgentCompactSet is not implemented by bosun: it has no memory agent (the Kata mem-agent's compaction daemon)".into(),
            ))
        })
        .await
    }
}

/// A netlink failure: a missing interface is the request's fault.
impl Agent {
    async fn read(
        &self,
        req: ReadStreamRequest,
        which: Stream,
    ) -> Result<ReadStreamResponse, crate::error::AgentError> {
        let id = ContainerId::parse(&req.container_id)?;
        let mut data = self
            .sandbox
            .read(&id, parse_exec_id(&req.exec_id)?.as_deref(), which, req.len as usize)
            .await?;
        // As the Kata agent: read, then asked; output the policy does not
        // let out is withheld (an empty answer), not an error, so that the
        // process's output keeps being drained.
        if self.policy.check_request(&req).is_err() {
            data.clear();
        }
        Ok(ReadStreamResponse {
            data,
            ..Default::default()
        })
    }

    /// `f` traced as `method`, after the policy allowed `req`.
    async fn checked<T, F>(&self, req: &dyn protobuf::MessageDyn, method: &'static str, f: F) -> R<T>
    where
        F: std::future::Future<Output = Result<T, AgentError>>,
    {
        traced(&self.log, method, async {
            self.policy.check_request(req)?;
            f.await
        })
        .await
    }
}
