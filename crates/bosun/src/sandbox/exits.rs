//! How bosun learns each process's exit status: from its monitor's exit
//! pipe while bosun is up, from the exit file the monitor wrote while it
//! was down. A process whose monitor is gone without a word (killed by
//! someone else) was reparented to bosun, a subreaper, whose reaper has
//! its status; one that ended while no bosun was up to reap it has none
//! (`ADOPTED_EXIT_UNKNOWN`).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::{Sandbox, ADOPTED_EXIT_UNKNOWN};
use crate::process::monitor::{parse_status, read_exit_file};
use crate::process::reaper::Reaper;
use crate::process::Process;

/// How long the reaper gets to collect a process seen ended.
const REAP_GRACE: Duration = Duration::from_millis(200);

impl Sandbox {
    /// Records `p`'s exit status once known; then, once its output has
    /// been read to the end, ends its monitor (nothing is left to keep).
    pub(super) fn watch_exit(&self, p: Arc<Process>, exit_pipe: Option<OwnedFd>, exit_file: PathBuf) {
        let reaper = self.reaper.clone();
        tokio::spawn(async move {
            let mut status = match exit_pipe {
                Some(fd) => read_exit_pipe(fd).await,
                None => None,
            };
            if status.is_none() {
                status = read_exit_file(&exit_file);
            }
            let status = match status {
                Some(s) => s,
                None => unrecorded(&reaper, &p).await,
            };
            p.set_exit(status);
            futures::join!(p.stdout.ended(), p.stderr.ended());
            p.release_monitor();
        });
    }
}

/// The monitor's line, read to the pipe's EOF (the monitor closes it
/// after the line, or dies without one).
async fn read_exit_pipe(fd: OwnedFd) -> Option<i32> {
    let rx = pipe::Receiver::from_owned_fd(fd).ok()?;
    let mut buf = Vec::new();
    rx.take(64).read_to_end(&mut buf).await.ok()?;
    parse_status(&buf)
}

/// A process whose monitor left no status: waits on its pidfd until it
/// ends (no polling; it may not be bosun's child), then takes its status
/// from the reaper if bosun reaped it.
async fn unrecorded(reaper: &Reaper, p: &Process) -> i32 {
    if reaper.status(p.pid).is_none() {
        if let Ok(fd) = crate::sys::pidfd::open(p.pid) {
            // Checked once the pidfd is open: then it names this process,
            // not one that reused the pid since.
            if crate::process::still_runs(p.pid, p.start_time) {
                let _ = crate::sys::pidfd::exited(&fd).await;
            }
        }
    }
    // A zombie of ours the reaper is about to collect, or none.
    let s = match reaper.status(p.pid) {
        Some(s) => Some(s),
        None => tokio::time::timeout(REAP_GRACE, reaper.wait(p.pid)).await.ok(),
    };
    reaper.forget(p.pid);
    s.unwrap_or(ADOPTED_EXIT_UNKNOWN)
}
