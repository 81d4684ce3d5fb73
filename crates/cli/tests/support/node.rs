//! Node.js scripts from npm fixtures (`fixtures/<name>/`, whose pinned packages `scripts/test`
//! installs with `npm ci`): run with a deadline, their output collected whole.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tokio::time::Instant;

/// The npm project `fixtures/<name>`.
pub fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Panics with how to install it unless `package` is in `dir`'s `node_modules`.
#[track_caller]
pub fn require_installed(dir: &Path, package: &str) {
    assert!(
        dir.join("node_modules")
            .join(package)
            .join("package.json")
            .is_file(),
        "{} has no node_modules/{package}: run `npm ci --no-audit --no-fund` there (scripts/test does)",
        dir.display()
    );
}

/// What a run of a script left behind.
pub struct ScriptRun {
    /// The exit status, or `None` when it was killed at its deadline.
    pub status: Option<ExitStatus>,
    /// Everything it printed on stdout (its step log).
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl ScriptRun {
    /// Whether it exited 0.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// How it ended, for a failure message.
    pub fn outcome(&self, script: &str, timeout: Duration) -> String {
        match self.status {
            Some(status) => format!("{script} exited with {status}"),
            None => format!("{script} was killed after {timeout:?}"),
        }
    }
}

/// Reads a child's pipe to the end on its own thread, so a chatty script never blocks on a
/// full pipe while the test waits for it to exit.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Runs `node <script> <args>` in `dir`, killing it after `timeout`.
pub fn run(dir: &Path, script: &str, args: &[&str], timeout: Duration) -> ScriptRun {
    let mut child = Command::new("node")
        .current_dir(dir)
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A developer's NODE_OPTIONS (--inspect, --require ...) must not change the run.
        .env_remove("NODE_OPTIONS")
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running `node` failed ({e}); install Node.js (scripts/test installs nodejs)")
        });
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("waiting for node") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    };
    ScriptRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
