//! python-consul2 (Debian `python3-consul2`, module 0.1.5) against the real agent, unmodified
//! (issue 6): `tests/fixtures/python_consul2.py` registers services with `Check.http` and
//! `Check.ttl`, drives TTL pass/warn/fail, reads `health.service` (with `passing=True`, `tag=`
//! and a blocking `index=`/`wait=`), `catalog.services()`, `catalog.service()`,
//! `agent.services()`, `agent.checks()`, deregisters, and asserts on what the library returns,
//! including the `(index, data)` pairs built from `X-Consul-Index`. The script prints one
//! `ok: <step>` line per step and names the first step that fails.
//!
//! Ignored by default because it needs `/usr/bin/python3` with `consul` importable;
//! `scripts/test` installs `python3-consul2` and runs ignored tests.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use support::Agent;
use tokio::time::Instant;

/// The interpreter Debian's `python3-consul2` installs into (a venv's python would not see it).
const PYTHON: &str = "/usr/bin/python3";
/// How long the whole script may run: its slowest step is waiting up to 20 s for an HTTP check.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/python_consul2.py")
}

/// Reads a child's stream to its end on a thread, so neither pipe can fill and stall it.
fn drain(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for `child` until `timeout`; kills it then and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("waiting for python3") {
            Some(status) => return Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
#[ignore = "needs python3-consul2: scripts/test"]
fn python_consul2_gets_what_consul_gives() {
    let agent = Agent::start(&[]);
    let host = agent.addr.ip().to_string();
    let port = agent.addr.port().to_string();

    let mut child = Command::new(PYTHON)
        .arg(script())
        .args([&host, &port])
        .current_dir(agent.work_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The script talks to this agent only: no address, token or TLS from the environment,
        // no proxy in between, unbuffered output so a kill still shows how far it got.
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_SSL")
        .env_remove("CONSUL_HTTP_SSL_VERIFY")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()
        .unwrap_or_else(|e| panic!("starting {PYTHON}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));

    let status = wait_or_kill(&mut child, SCRIPT_TIMEOUT);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let report = || {
        format!(
            "--- python_consul2.py stdout ---\n{stdout}\n--- python_consul2.py stderr ---\n\
             {stderr}\n--- agent stderr ---\n{}",
            agent.stderr_tail()
        )
    };
    match status {
        None => panic!(
            "python_consul2.py ran over {SCRIPT_TIMEOUT:?} and was killed\n{}",
            report()
        ),
        Some(status) if !status.success() => {
            panic!("python_consul2.py failed ({status})\n{}", report())
        }
        Some(_) => {}
    }
    assert!(
        stdout.contains("ok: all python-consul2 steps"),
        "the script exited 0 without finishing\n{}",
        report()
    );
}
