//! OnlineCPUMem and MemHotplugByProbe: CPUs and memory the hypervisor
//! hot-added come online (sysfs), as the Kata agent brings them up.

use std::path::Path;
use std::time::Duration;

use crate::error::AgentError;

const CPUS: &str = "/sys/devices/system/cpu";
const MEMORY: &str = "/sys/devices/system/memory";
/// How long `wait` waits for `nb_cpus` CPUs to show up (the Kata agent
/// retries for about as long).
const CPU_WAIT: Duration = Duration::from_secs(5);

/// What OnlineCPUMem did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Onlined {
    /// CPUs brought online.
    pub cpus: u32,
    /// Memory blocks brought online.
    pub memory_blocks: u32,
}

/// Writes `1`/`online` to each offline entry under `dir` named `prefix*`
/// whose `file` says offline, at most `max`; returns how many.
fn online_all(dir: &Path, prefix: &str, file: &str, offline: &str, online: &str, max: u32) -> u32 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    let mut n = 0;
    let mut entries: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for e in entries {
        let name = e
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if n >= max || !name.starts_with(prefix) || !name[prefix.len()..].chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let f = e.join(file);
        if std::fs::read_to_string(&f).is_ok_and(|s| s.trim() == offline) && std::fs::write(&f, online).is_ok() {
            n += 1;
        }
    }
    n
}

/// OnlineCPUMem: up to `nb_cpus` offline CPUs (0: all), then, unless
/// `cpu_only`, every offline memory block. With `wait`, waits until as
/// many CPUs were brought online as asked.
pub async fn online(nb_cpus: u32, cpu_only: bool, wait: bool) -> Result<Onlined, AgentError> {
    super::guest_only("bringing CPUs and memory online")?;
    let max = if nb_cpus == 0 { u32::MAX } else { nb_cpus };
    let deadline = tokio::time::Instant::now() + CPU_WAIT;
    let mut done = Onlined::default();
    loop {
        done.cpus += online_all(Path::new(CPUS), "cpu", "online", "0", "1", max - done.cpus);
        if !wait || nb_cpus == 0 || done.cpus >= nb_cpus || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if wait && nb_cpus > 0 && done.cpus < nb_cpus {
        return Err(AgentError::Unavailable(format!(
            "{} of {nb_cpus} CPUs came online within {CPU_WAIT:?}",
            done.cpus
        )));
    }
    if !cpu_only {
        done.memory_blocks = online_all(Path::new(MEMORY), "memory", "state", "offline", "online", u32::MAX);
    }
    Ok(done)
}

/// MemHotplugByProbe: tells the kernel of memory at each physical address
/// (the probe interface), then onlines what came.
pub fn probe(addrs: &[u64]) -> Result<u32, AgentError> {
    super::guest_only("adding memory")?;
    let probe = Path::new(MEMORY).join("probe");
    for a in addrs {
        std::fs::write(&probe, format!("{a:#x}"))
            .map_err(|e| AgentError::Internal(format!("{}: {a:#x}: {e}", probe.display())))?;
    }
    Ok(online_all(
        Path::new(MEMORY),
        "memory",
        "state",
        "offline",
        "online",
        u32::MAX,
    ))
}
