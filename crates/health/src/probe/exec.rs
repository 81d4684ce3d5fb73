//! Exec (script) checks: run a program, no shell; exit 0 passing, 1 warning, else critical.
//!
//! Like Consul's `CheckMonitor`:
//! - stdout and stderr share one pipe, so the output interleaves as the program wrote it, and
//!   only the last 4 KiB are kept (`Captured N of M bytes` says when some were dropped: the end
//!   of a script's output is where the error is);
//! - the program runs in its own process group, and a run that outlives its timeout has the
//!   whole group killed, so `sh -c 'sleep 100'` does not leave the `sleep` behind;
//! - stdin is `/dev/null`.
//!
//! At most [`SchedulerConfig::max_concurrent_exec`](crate::SchedulerConfig) programs run at
//! once; a run waits for a slot before its timeout starts, because waiting on our own limit
//! says nothing about the instance's health.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io;
use std::os::fd::OwnedFd;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::debug;
use wayfinder_catalog::{MAX_OUTPUT_BYTES, Status, go_duration};

use super::ProbeResult;

/// How long output is still read after the program exits, for what a background child of it
/// still holds the pipe open for; then the run ends with what it has.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// Room kept for the `Captured N of M bytes` header within the 4 KiB output.
const TAIL_BYTES: usize = MAX_OUTPUT_BYTES - 64;

/// An exec check prepared to run.
#[derive(Debug)]
pub(crate) struct ExecProbe {
    program: String,
    args: Vec<String>,
    timeout: Duration,
    slots: Arc<Semaphore>,
}

impl ExecProbe {
    pub(crate) fn new(
        args: &[String],
        timeout: Duration,
        slots: &Arc<Semaphore>,
    ) -> Result<Self, String> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| "exec check has no program to run".to_owned())?;
        Ok(Self {
            program: program.clone(),
            args: rest.to_vec(),
            timeout,
            slots: Arc::clone(slots),
        })
    }

    /// Runs the program once: waits for a slot, then gives it `timeout` to finish.
    pub(crate) async fn run(&self) -> ProbeResult {
        let Ok(_slot) = self.slots.acquire().await else {
            return ProbeResult::critical("exec checks are shut down".to_owned());
        };
        let (reader, writer) = match pipe_pair() {
            Ok(pair) => pair,
            Err(error) => {
                return ProbeResult::critical(format!("cannot capture check output: {error}"));
            }
        };
        let mut child = {
            let (stdout, stderr) = match writer.try_clone() {
                Ok(copy) => (copy, writer),
                Err(error) => {
                    return ProbeResult::critical(format!("cannot capture check output: {error}"));
                }
            };
            let mut command = tokio::process::Command::new(&self.program);
            command
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .process_group(0)
                .kill_on_drop(true);
            // `command` is dropped at the end of this block, closing our copies of the pipe's
            // write end: the reader then sees EOF when the program (and its children) exit.
            match command.spawn() {
                Ok(child) => child,
                Err(error) => {
                    return ProbeResult::critical(format!(
                        "Failed to start {:?}: {error}",
                        self.program
                    ));
                }
            }
        };
        let mut group = GroupKiller::new(child.id());
        let deadline = Instant::now() + self.timeout;
        let mut tail = Tail::default();
        match collect(&mut child, reader, &mut tail, deadline).await {
            Some(Ok(exit)) => {
                group.disarm();
                let status = match exit.code() {
                    Some(0) => Status::Passing,
                    Some(1) => Status::Warning,
                    _ => Status::Critical,
                };
                ProbeResult::new(status, tail.into_output())
            }
            Some(Err(error)) => {
                ProbeResult::critical(format!("waiting for {:?}: {error}", self.program))
            }
            None => {
                group.kill();
                if let Err(error) = child.kill().await {
                    debug!(%error, "killing a timed-out check");
                }
                ProbeResult::critical(format!(
                    "Timed out ({}) running check",
                    go_duration(self.timeout)
                ))
            }
        }
    }
}

/// A pipe whose read end is registered with Tokio and whose write end goes to the child.
fn pipe_pair() -> io::Result<(pipe::Receiver, std::io::PipeWriter)> {
    let (reader, writer) = std::io::pipe()?;
    let reader = pipe::Receiver::from_owned_fd(OwnedFd::from(reader))?;
    Ok((reader, writer))
}

/// Reads output and waits for the exit until `deadline`. `None` means the program did not exit
/// in time.
async fn collect(
    child: &mut Child,
    mut reader: pipe::Receiver,
    tail: &mut Tail,
    deadline: Instant,
) -> Option<io::Result<ExitStatus>> {
    let mut buf = vec![0u8; 8192];
    let mut exit = None;
    let mut eof = false;
    let mut stop_at = deadline;
    loop {
        tokio::select! {
            status = child.wait(), if exit.is_none() => {
                exit = Some(status);
                if eof {
                    break;
                }
                stop_at = stop_at.min(Instant::now() + DRAIN_GRACE);
            }
            read = reader.read(&mut buf), if !eof => match read {
                Ok(0) | Err(_) => {
                    eof = true;
                    if exit.is_some() {
                        break;
                    }
                }
                Ok(n) => tail.push(&buf[..n]),
            },
            () = tokio::time::sleep_until(stop_at) => break,
        }
    }
    exit
}

/// Kills the program's process group unless disarmed: on timeout, and when the run itself is
/// dropped (its runner was stopped mid-run).
struct GroupKiller {
    group: Option<Pid>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> Self {
        Self {
            group: pid
                .and_then(|pid| i32::try_from(pid).ok())
                .map(Pid::from_raw),
        }
    }

    fn disarm(&mut self) {
        self.group = None;
    }

    fn kill(&mut self) {
        if let Some(group) = self.group.take()
            && let Err(error) = killpg(group, Signal::SIGKILL)
        {
            debug!(%error, "killing a check's process group");
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last [`TAIL_BYTES`] of the output, and how much there was in all.
#[derive(Debug, Default)]
struct Tail {
    kept: Vec<u8>,
    total: usize,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len();
        if data.len() >= TAIL_BYTES {
            self.kept.clear();
            self.kept
                .extend_from_slice(&data[data.len() - TAIL_BYTES..]);
            return;
        }
        let overflow = (self.kept.len() + data.len()).saturating_sub(TAIL_BYTES);
        self.kept.drain(..overflow);
        self.kept.extend_from_slice(data);
    }

    fn into_output(self) -> String {
        let text = String::from_utf8_lossy(&self.kept);
        if self.total > self.kept.len() {
            format!(
                "Captured {} of {} bytes\n...\n{text}",
                self.kept.len(),
                self.total
            )
        } else {
            text.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        tail.push(b"hello ");
        tail.push(b"world");
        assert_eq!(tail.into_output(), "hello world");

        let mut tail = Tail::default();
        for _ in 0..TAIL_BYTES {
            tail.push(b"a");
        }
        tail.push(b"END");
        let out = tail.into_output();
        assert!(out.starts_with(&format!(
            "Captured {TAIL_BYTES} of {} bytes\n...\n",
            TAIL_BYTES + 3
        )));
        assert!(out.ends_with("aEND"));
        assert!(out.len() <= MAX_OUTPUT_BYTES);

        let mut tail = Tail::default();
        tail.push(&vec![b'x'; TAIL_BYTES * 3]);
        assert_eq!(tail.kept.len(), TAIL_BYTES);
        assert_eq!(tail.total, TAIL_BYTES * 3);
    }
}
