//! A peer or helper process (nginx, HAProxy, the backends) in a process group of its own.
//!
//! Owns the lifecycle every such process shares: spawned as the leader of a new group (so a
//! master and its workers are signalled together), stopped with SIGTERM and then SIGKILL if it
//! lingers, and killed with its whole group when dropped on an early return (`kill_on_drop`
//! alone would orphan nginx's workers). Also the one-line summary of a log file that start-up
//! errors and reports quote.

use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// How long a process may take to exit after SIGTERM before its group is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running process leading its own process group.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    pid: u32,
}

impl ProcessGroup {
    /// Spawns `command` as the leader of a new process group; `what` names it in errors.
    pub fn spawn(command: &mut Command, what: &str) -> anyhow::Result<Self> {
        let child = command
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {what}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{what} exited at once"))?;
        Ok(ProcessGroup { child, pid })
    }

    /// The leader's pid (its children are in its group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The leader's exit status, if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The leader, for its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGTERM to the group, then SIGKILL if the leader is still there after [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // After `stop` the group is gone and this does nothing; on an early return it takes the
        // whole group down with the leader.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// The non-empty lines of the log at `path` joined on one line, or `empty` when there are none.
pub fn log_summary(path: &Path, empty: &str) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        empty.to_owned()
    } else {
        lines.join(" / ")
    }
}
