//! How a helper starts: forked by the zygote (`sys::zygote`) while it is
//! up, exec'd (`sys::spawn`) otherwise. The helper is the same either
//! way: the agent's child, the same descriptors, the same command line.
//!
//! The zygote is started once, with the agent (`start`). One that is lost
//! (killed, wedged past its round-trip bound) is started again at the
//! next helper, once; a zygote that cannot start (a kernel or a
//! capability set without PR_SET_MM) leaves every helper exec'd.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys::spawn::{spawn_helper, HelperFds};
use crate::sys::zygote::{SpawnError, Zygote, ZYGOTE_CMDLINE};

enum State {
    /// Never started: every helper is exec'd.
    Off,
    /// Up.
    Up(Zygote),
    /// Lost; started again at the next helper.
    Lost,
}

/// Held across a round trip (one request at a time on the socket), by
/// an async lock: callers queued behind a slow zygote hold no runtime
/// thread.
static ZYGOTE: tokio::sync::Mutex<State> = tokio::sync::Mutex::const_new(State::Off);
/// Helpers started so far: forked by the zygote, exec'd.
static FORKED: AtomicU64 = AtomicU64::new(0);
static EXECD: AtomicU64 = AtomicU64::new(0);

/// Helpers started so far, (forked by the zygote, exec'd): GetMetrics.
pub fn starts() -> (u64, u64) {
    (FORKED.load(Ordering::Relaxed), EXECD.load(Ordering::Relaxed))
}

/// Starts the zygote; returns its pid. On failure helpers are exec'd.
pub async fn start() -> io::Result<i32> {
    if crate::faults::fail_point("zygote-start") {
        return Err(io::Error::other("BOSUN_FAIL_AT=zygote-start"));
    }
    let z = Zygote::start()?;
    let pid = z.pid;
    *ZYGOTE.lock().await = State::Up(z);
    Ok(pid)
}

/// Lets the zygote go (it exits); helpers are exec'd from now on.
pub async fn stop() {
    *ZYGOTE.lock().await = State::Off;
}

/// Starts a helper running `bosun init CONFIG` with `fds`; returns its
/// pid, and a pidfd on it when the zygote forked it.
pub async fn start_helper(config: &Path, fds: HelperFds) -> io::Result<(u32, Option<OwnedFd>)> {
    {
        let mut state = ZYGOTE.lock().await;
        if matches!(*state, State::Lost) {
            *state = Zygote::start().map(State::Up).unwrap_or(State::Off);
        }
        if let State::Up(z) = &*state {
            match z.spawn(config, &fds).await {
                Ok((pid, pidfd)) => {
                    FORKED.fetch_add(1, Ordering::Relaxed);
                    return Ok((pid as u32, Some(pidfd)));
                }
                Err(SpawnError::Refused(e)) => return Err(e),
                Err(SpawnError::Unsent(_)) => *state = State::Lost,
                Err(SpawnError::Lost(e)) => {
                    // Let go (killed, and waited for) before the strays
                    // are looked for: it forks no more.
                    *state = State::Lost;
                    end_strays(config);
                    return Err(io::Error::other(format!("the zygote did not answer: {e}")));
                }
            }
        }
    }
    let pid = spawn_helper(config, fds)?;
    EXECD.fetch_add(1, Ordering::Relaxed);
    Ok((pid, None))
}

/// After a zygote was lost with a request in flight: a helper it forked
/// for that request before it died is the agent's child, named for the
/// request's config, or still named as the zygote if it died before
/// naming itself. It is ended, so that the failed call leaves nothing.
fn end_strays(config: &Path) {
    use crate::process::monitor::{kill_if, kill_monitor};
    for pid in crate::process::children(std::process::id()) {
        let pid = pid as i32;
        kill_monitor(pid, config);
        kill_if(pid, || {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == ZYGOTE_CMDLINE)
        });
    }
}
