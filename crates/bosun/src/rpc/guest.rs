//! GetGuestDetails: what the guest and the agent offer.

use crate::protocols::agent::{AgentDetails, GuestDetailsRequest, GuestDetailsResponse};

const MEM_BLOCK_SIZE: &str = "/sys/devices/system/memory/block_size_bytes";
const MEM_PROBE: &str = "/sys/devices/system/memory/probe";

/// The answer to GetGuestDetails.
pub fn details(req: &GuestDetailsRequest) -> GuestDetailsResponse {
    let mut r = GuestDetailsResponse::new();
    if req.mem_block_size {
        // The file holds the size in hex without a prefix.
        r.mem_block_size_bytes = std::fs::read_to_string(MEM_BLOCK_SIZE)
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
    }
    if req.mem_hotplug_probe {
        r.support_mem_hotplug_probe = std::path::Path::new(MEM_PROBE).exists();
    }
    let mut d = AgentDetails::new();
    d.version = super::AGENT_VERSION.to_string();
    d.init_daemon = std::process::id() == 1;
    // From the drivers' table: what is served, never a second list.
    d.storage_handlers = crate::mount::storage::served_names()
        .into_iter()
        .map(String::from)
        .collect();
    r.agent_details = Some(d).into();
    r
}
