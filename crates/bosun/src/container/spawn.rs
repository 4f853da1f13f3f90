//! Agent side of `bosun init`: write the config, create the pipes, start
//! the helper and read its report.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;

use super::init_config::{InitConfig, Payload};
use super::message::Message;
use crate::process::monitor::{exit_file, Monitor, EXIT_FD, KEEP_STDERR_FD, KEEP_STDIN_FD, KEEP_STDOUT_FD, STATUS_FD};
use crate::process::{Process, Streams};
use crate::sys::fd::pipe as mkpipe;
use crate::sys::spawn::HelperFds;

/// Bound on the helper's set-up (namespaces, mounts, pivot). A healthy one
/// takes milliseconds; this only keeps a wedged helper from hanging a call.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest report line read (an error message).
const MAX_REPORT_LINE: usize = 4096;

/// The helper's report pipe.
pub struct Report(BufReader<pipe::Receiver>);

impl Report {
    /// The next line, `None` at EOF; `Err` on timeout or read error.
    pub async fn line(&mut self, timeout: Duration) -> Result<Option<String>, String> {
        let mut buf = Vec::new();
        let read = async {
            loop {
                let chunk = self.0.fill_buf().await.map_err(|e| format!("read report: {e}"))?;
                if chunk.is_empty() {
                    return Ok(());
                }
                let (n, done) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                buf.extend_from_slice(&chunk[..n]);
                self.0.consume(n);
                if done || buf.len() > MAX_REPORT_LINE {
                    return Ok(());
                }
            }
        };
        match tokio::time::timeout(timeout, read).await {
            Err(_) => Err(format!("no word from the container helper within {timeout:?}")),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) if buf.is_empty() => Ok(None),
            Ok(Ok(())) => Ok(Some(String::from_utf8_lossy(&buf).trim_end().to_string())),
        }
    }

    /// After the start gate opened: `Ok` when the pipe closes without a
    /// word (exec succeeded), `Err(message)` otherwise.
    pub async fn exec_result(&mut self) -> Result<(), String> {
        match self.line(SETUP_TIMEOUT).await? {
            None => Ok(()),
            Some(l) => Err(match Message::parse(&l) {
                Ok(Message::Error(e)) => e,
                Ok(other) => format!("unexpected report {other:?} after the start gate"),
                Err(e) => e,
            }),
        }
    }
}

/// A process the helper started.
pub struct Spawned {
    /// The process, with its pipes.
    pub process: Arc<Process>,
    /// Write end of the start gate, when the process waits for it.
    pub gate: Option<OwnedFd>,
    /// The report pipe, still open when waiting for the start gate.
    pub report: Report,
    /// The read end of the monitor's exit pipe, until its watcher takes it.
    pub exit: Option<OwnedFd>,
}

/// Why a helper could not start the process; `pid` is set when a process
/// exists and must be reaped or killed.
#[derive(Debug)]
pub struct SpawnError {
    /// The process, if it got that far.
    pub pid: Option<i32>,
    /// What went wrong.
    pub reason: String,
}

fn serr(pid: Option<i32>, reason: impl Into<String>) -> SpawnError {
    SpawnError {
        pid,
        reason: reason.into(),
    }
}

/// The process's side of its standard streams, and the agent's side.
struct Stdio {
    child: (OwnedFd, OwnedFd, OwnedFd),
    agent: AgentSide,
}

enum AgentSide {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty {
        master: OwnedFd,
    },
}

fn stdio(cfg: &InitConfig, pipe_buffer: usize) -> Result<Stdio, SpawnError> {
    let terminal = match &cfg.payload {
        Payload::Exec(p) => p.terminal,
        Payload::BuiltinPause => None,
    };
    if let Some((rows, cols)) = terminal {
        let (master, slave) =
            crate::sys::tty::open(rows, cols).map_err(|e| serr(None, format!("open a terminal: {e}")))?;
        let dup = |f: &OwnedFd| f.try_clone().map_err(|e| serr(None, format!("dup terminal: {e}")));
        return Ok(Stdio {
            child: (dup(&slave)?, dup(&slave)?, slave),
            agent: AgentSide::Tty { master },
        });
    }
    let p = |what: &str| mkpipe().map_err(|e| serr(None, format!("{what} pipe: {e}")));
    let (in_r, in_w) = p("stdin")?;
    let (out_r, out_w) = p("stdout")?;
    let (err_r, err_w) = p("stderr")?;
    for r in [&out_r, &err_r] {
        size_pipe(r, pipe_buffer);
    }
    Ok(Stdio {
        child: (in_r, out_w, err_w),
        agent: AgentSide::Pipes {
            stdin: in_w,
            stdout: out_r,
            stderr: err_r,
        },
    })
}

/// Sets an output pipe's capacity to `bytes`; without CAP_SYS_RESOURCE
/// the kernel grants no more than /proc/sys/fs/pipe-max-size, so that is
/// asked next; failing both, the pipe keeps the kernel's 64 KiB.
fn size_pipe(fd: &OwnedFd, bytes: usize) {
    if crate::sys::fd::set_pipe_size(fd, bytes).is_ok() {
        return;
    }
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(max) = max.filter(|m| *m < bytes) {
        let _ = crate::sys::fd::set_pipe_size(fd, max);
    }
}

impl AgentSide {
    /// Copies for the monitor to keep, at its fixed numbers.
    fn copies(&self) -> std::io::Result<Vec<(i32, OwnedFd)>> {
        Ok(match self {
            Self::Pipes { stdin, stdout, stderr } => vec![
                (KEEP_STDIN_FD, stdin.try_clone()?),
                (KEEP_STDOUT_FD, stdout.try_clone()?),
                (KEEP_STDERR_FD, stderr.try_clone()?),
            ],
            Self::Tty { master } => vec![(KEEP_STDIN_FD, master.try_clone()?)],
        })
    }

    fn streams(self) -> std::io::Result<Streams> {
        match self {
            Self::Pipes { stdin, stdout, stderr } => Ok(Streams::pipes(Some(stdin), Some(stdout), Some(stderr))),
            Self::Tty { master } => Streams::terminal(master),
        }
    }
}

/// Starts the helper with `cfg` (written to `config_path`), waits until the
/// process is set up (and, if it does not wait for a start gate, exec'd).
/// The helper stays as the process's monitor, writing its exit status to
/// `exit-<exec_id>` beside the config. On an error the monitor is ended,
/// so that the process, if any, is the agent's child to kill and reap.
pub async fn start(
    config_path: &Path,
    cfg: &InitConfig,
    exec_id: &str,
    pipe_buffer: usize,
) -> Result<Spawned, SpawnError> {
    let json = serde_json::to_vec(cfg).map_err(|e| serr(None, format!("encode init config: {e}")))?;
    std::fs::write(config_path, json).map_err(|e| serr(None, format!("write {}: {e}", config_path.display())))?;
    let dir = config_path.parent().unwrap_or(Path::new("."));
    let status_path = exit_file(dir, exec_id);
    let status = std::fs::File::create(&status_path)
        .map_err(|e| serr(None, format!("create {}: {e}", status_path.display())))?;
    let p = |what: &str| mkpipe().map_err(|e| serr(None, format!("{what} pipe: {e}")));
    let io = stdio(cfg, pipe_buffer)?;
    let (rep_r, rep_w) = p("report")?;
    let (exit_r, exit_w) = p("exit")?;
    let (gate_r, gate_w) = if cfg.wait_for_start {
        let (r, w) = p("gate")?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let mut keep = io.agent.copies().map_err(|e| serr(None, format!("dup stdio: {e}")))?;
    keep.push((STATUS_FD, status.into()));
    keep.push((EXIT_FD, exit_w));
    let (stdin, stdout, stderr) = io.child;
    let fds = HelperFds {
        stdin,
        stdout,
        stderr,
        gate: gate_r,
        report: rep_w,
        keep,
    };
    let (helper_pid, pidfd) = super::zygote::start_helper(config_path, fds)
        .await
        .map_err(|e| serr(None, format!("start helper: {e}")))?;
    let monitor = Monitor::attach(helper_pid as i32, pidfd);
    let set_up = async {
        let conv = |e: std::io::Error| serr(None, format!("pipe: {e}"));
        let mut report = Report(BufReader::new(pipe::Receiver::from_owned_fd(rep_r).map_err(conv)?));
        let pid = read_setup(&mut report, cfg.wait_for_start).await?;
        let streams = io.agent.streams().map_err(|e| serr(Some(pid), format!("stdio: {e}")))?;
        let start_time = crate::process::start_time(pid).unwrap_or(0);
        Ok((report, pid, streams, start_time))
    };
    match set_up.await {
        Ok((report, pid, streams, start_time)) => Ok(Spawned {
            process: Arc::new(Process::new(
                exec_id.to_string(),
                pid,
                start_time,
                streams,
                Some(monitor),
            )),
            gate: gate_w,
            report,
            exit: Some(exit_r),
        }),
        Err(e) => {
            monitor.release();
            Err(e)
        }
    }
}

/// Reads the helper's report until the process is set up. The helper's
/// `pid` line and the child's `ready`/`error` line may come in either order.
async fn read_setup(report: &mut Report, gated: bool) -> Result<i32, SpawnError> {
    let (mut pid, mut ready) = (None, false);
    loop {
        if let (Some(p), true) = (pid, ready) {
            return Ok(p);
        }
        let line = report.line(SETUP_TIMEOUT).await.map_err(|e| serr(pid, e))?;
        match line.map(|l| Message::parse(&l)).transpose().map_err(|e| serr(pid, e))? {
            Some(Message::Pid(p)) => {
                pid = Some(p);
                if !gated {
                    // Not gated: the child execs at once; the pipe closes on
                    // success or carries its error.
                    report.exec_result().await.map_err(|e| serr(pid, e))?;
                    return Ok(p);
                }
            }
            Some(Message::Ready) if gated => ready = true,
            Some(Message::Ready) => return Err(serr(pid, "a process not waiting for a start gate said ready")),
            Some(Message::Error(e)) => return Err(serr(pid, e)),
            None => return Err(serr(pid, "container helper exited during set-up")),
        }
    }
}
