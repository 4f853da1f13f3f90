//! The reaper: bosun is a subreaper (or PID 1), so every container process
//! ends up as its child. One task collects every exit on SIGCHLD and keeps
//! the statuses for `wait`; nothing is left a zombie.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::sys::process::{self as sysproc, Exit};

/// Exits remembered for processes nobody has asked about yet (helpers,
/// orphans). Bounded so that a pod that forks a lot cannot grow the agent.
const REMEMBERED_EXITS: usize = 4096;

/// What `Reaper::output` saw of a command.
#[derive(Debug)]
pub struct Output {
    /// Exit code, or 128 + signal.
    pub status: i32,
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// It outlived the timeout and was killed.
    pub timed_out: bool,
}

/// Collects child exits.
#[derive(Default)]
pub struct Reaper {
    exits: Mutex<Exits>,
    changed: Notify,
}

#[derive(Default)]
struct Exits {
    by_pid: HashMap<i32, i32>,
    order: VecDeque<i32>,
}

impl Reaper {
    /// Starts the reaping task on the current runtime. Call before the first
    /// child is started.
    pub fn start() -> std::io::Result<Arc<Self>> {
        let r = Arc::new(Self::default());
        let mut sigchld = signal(SignalKind::child())?;
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                me.reap_all();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(r)
    }

    fn reap_all(&self) {
        let mut any = false;
        while let Some(Exit { pid, status }) = sysproc::reap_one() {
            let mut e = crate::sync::lock(&self.exits);
            if e.by_pid.insert(pid, status).is_none() {
                e.order.push_back(pid);
            }
            while e.order.len() > REMEMBERED_EXITS {
                if let Some(old) = e.order.pop_front() {
                    e.by_pid.remove(&old);
                }
            }
            any = true;
        }
        if any {
            self.changed.notify_waiters();
        }
    }

    /// The exit status of `pid`, if it has exited.
    pub fn status(&self, pid: i32) -> Option<i32> {
        crate::sync::lock(&self.exits).by_pid.get(&pid).copied()
    }

    /// Waits until `pid` has exited; returns its status.
    pub async fn wait(&self, pid: i32) -> i32 {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.status(pid) {
                return s;
            }
            notified.await;
        }
    }

    /// Runs `cmd` to its end: `stdin` written to it, stdout and stderr
    /// collected, the status taken from this reaper (which collects every
    /// child, so a plain `wait` would find none). A command still running
    /// after `timeout` is killed (and says so).
    pub async fn output(
        &self,
        mut cmd: std::process::Command,
        stdin: &[u8],
        timeout: std::time::Duration,
    ) -> std::io::Result<Output> {
        use std::io::{Read, Write};
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = child.id() as i32;
        let (mut i, mut o, mut e) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let input = stdin.to_vec();
        // Pipes are drained on blocking threads so a chatty command never
        // stalls on a full pipe while the agent waits for its exit.
        let feed = tokio::task::spawn_blocking(move || {
            if let Some(i) = i.as_mut() {
                let _ = i.write_all(&input); // one that does not read is fine
            }
        });
        let read = |r: Option<Box<dyn Read + Send>>| {
            tokio::task::spawn_blocking(move || {
                let mut v = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut v);
                }
                v
            })
        };
        let out = read(o.take().map(|x| Box::new(x) as Box<dyn Read + Send>));
        let err = read(e.take().map(|x| Box::new(x) as Box<dyn Read + Send>));
        let (status, timed_out) = match tokio::time::timeout(timeout, self.wait(pid)).await {
            Ok(s) => (s, false),
            Err(_) => {
                let _ = sysproc::kill(pid, nix::sys::signal::Signal::SIGKILL as i32);
                (self.wait(pid).await, true)
            }
        };
        self.forget(pid);
        // A daemon the command left behind may hold its pipes open: once
        // the command has exited, its output gets a short grace, no more
        // (the blocked reader threads end when the pipes close).
        let grace = std::time::Duration::from_millis(500);
        let _ = tokio::time::timeout(grace, feed).await;
        let out = tokio::time::timeout(grace, out)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let err = tokio::time::timeout(grace, err)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Ok(Output {
            status,
            stdout: out,
            stderr: err,
            timed_out,
        })
    }

    /// Forgets `pid`'s status once nobody will ask again.
    pub fn forget(&self, pid: i32) {
        let mut e = crate::sync::lock(&self.exits);
        if e.by_pid.remove(&pid).is_some() {
            e.order.retain(|p| *p != pid);
        }
    }
}
