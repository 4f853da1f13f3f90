//! The agent's time slice: a short one for bosun's own threads and helper,
//! the kernel's default for every container process.
//!
//! Since Linux 6.12 (EEVDF) `sched_attr.sched_runtime` on a SCHED_OTHER
//! thread sets its slice (0.1 to 100 ms; 0: the default, about 3 ms on
//! two CPUs). A waking thread with a short slice preempts a CPU hog
//! instead of waiting out the hog's slice: measured under two CPU hogs,
//! bosun's CreateContainer went from 7.4 to 1.5 ms and exec + WaitProcess
//! from 7.7 to 1.3 ms (README, "Benchmark"). It changes no weight: the
//! agent gets no more CPU than before, it gets it sooner. An older kernel
//! ignores the field for SCHED_OTHER (the call still succeeds).

use std::io;

/// The agent's slice: the shortest the kernel takes.
pub const AGENT_SLICE_NS: u64 = 100_000;

/// `struct sched_attr` (include/uapi/linux/sched/types.h), without the
/// utilization clamps (the kernel takes the shorter size).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Gives the calling thread the kernel's default slice back; a kernel
/// without sched_setattr (ENOSYS) gave it no other.
pub fn default_slice() -> io::Result<()> {
    match set_slice(0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        r => r,
    }
}

/// Sets the calling thread's slice to `ns` (0: the kernel's default),
/// keeping SCHED_OTHER and its nice value.
pub fn set_slice(ns: u64) -> io::Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        flags: 0,
        // SAFETY: no pointer; PRIO_PROCESS 0 is the calling thread on Linux.
        nice: unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
        priority: 0,
        runtime: ns,
        deadline: 0,
        period: 0,
    };
    // SAFETY: `attr` is a valid sched_attr of the size it states, read by
    // the kernel only during the call; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
