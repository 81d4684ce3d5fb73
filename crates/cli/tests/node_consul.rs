//! The Node.js `consul` client from npm (pinned in `fixtures/node-consul/package-lock.json`)
//! against the real agent (issue 6): registration with HTTP and TTL checks, TTL
//! pass/warn/fail, `health.service` with `passing` and `tag`, `catalog.services`,
//! `catalog.service.nodes`, `agent.services`, `agent.checks`, deregistration, and a blocking
//! `consul.watch` on `health.service` that fires when an instance is added and when one fails.
//!
//! The scenario lives in `fixtures/node-consul/compat.mjs`, written the way a user of that
//! library writes it, so it checks what the library makes of our answers rather than what we
//! think Consul answers. This test boots the agent, runs the script against it, and shows the
//! script's step log and the agent's stderr when it fails.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::Agent;
use tokio::time::Instant;

/// How long the whole script may run before it is killed. It bounds every wait itself (20 s
/// per condition, 80 s in all); this is the backstop if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The npm project holding `compat.mjs` and the pinned `consul` package.
fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-consul")
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

/// What a run of the script left behind.
struct ScriptRun {
    /// The exit status, or `None` when it was killed at [`SCRIPT_TIMEOUT`].
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `node compat.mjs <host> <port>` in `dir`, killing it after [`SCRIPT_TIMEOUT`].
fn run_script(dir: &Path, agent: &Agent) -> ScriptRun {
    let mut child = Command::new("node")
        .current_dir(dir)
        .arg("compat.mjs")
        .arg(agent.addr.ip().to_string())
        .arg(agent.addr.port().to_string())
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

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
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

#[test]
#[ignore = "needs node and npm ci: scripts/test"]
fn the_npm_consul_client_registers_reads_and_watches() {
    let dir = fixture_dir();
    assert!(
        dir.join("node_modules/consul/package.json").is_file(),
        "{} has no node_modules/consul: run `npm ci --no-audit --no-fund` there (scripts/test does)",
        dir.display()
    );
    let agent = Agent::start(&[]);

    let run = run_script(&dir, &agent);
    // The step log, for `--nocapture`.
    print!("{}", run.stdout);

    let outcome = match run.status {
        Some(status) if status.success() => return,
        Some(status) => format!("compat.mjs failed ({status})"),
        None => format!("compat.mjs was killed after {SCRIPT_TIMEOUT:?}"),
    };
    panic!(
        "{outcome}\n--- compat.mjs stdout ---\n{}\n--- compat.mjs stderr ---\n{}\n--- agent stderr ---\n{}",
        run.stdout,
        run.stderr,
        agent.stderr_tail()
    );
}
