//! The README's client walkthrough, run for real: three `worker` example processes register
//! themselves with the agent, the `consumer` example calls `worker-service` through the client
//! library, one worker is killed with SIGKILL mid-run and every call still succeeds; a worker
//! sent SIGTERM deregisters before it exits (issue 5).
//!
//! The examples are built by `cargo test --workspace` (as `scripts/test` runs it); a run of
//! this test alone needs `cargo build -p wayfinder-client --examples` first.

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;
use support::Agent;

/// How long an example may take to start and print its first line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the agent's HTTP checks may take to pass a new worker (1 s interval).
const PASSING_TIMEOUT: Duration = Duration::from_secs(20);

/// `target/<profile>/examples/<name>`, next to this test's own `deps` directory.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build -p wayfinder-client --examples` (cargo test \
         --workspace builds it)",
        path.display()
    );
    path
}

/// A running example process whose stdout lines arrive on a channel.
struct Process {
    child: Child,
    lines: Receiver<String>,
}

impl Process {
    fn start(name: &str, args: &[&str]) -> Process {
        Self::start_with_env(name, args, &[])
    }

    /// Like [`Process::start`], with extra environment variables.
    fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(example(name))
            .args(args)
            .env_remove("WAYFINDER_TOKEN")
            .env_remove("CONSUL_HTTP_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("WAYFINDER_HTTP_ADDR")
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {name} example: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, lines }
    }

    /// The next line of output, within `timeout`.
    fn line(&self, timeout: Duration, what: &str) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("{what}: no output within {timeout:?}"))
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits i32");
        kill(Pid::from_raw(pid), signal).expect("signalling the example");
    }

    /// Waits for the exit, at most `timeout` (then kills it and fails).
    fn wait(&mut self, timeout: Duration, what: &str) -> std::process::ExitStatus {
        support::eventually(timeout, what, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".to_owned()),
            Err(e) => Err(e.to_string()),
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker(agent: &Agent, id: &str) -> Process {
    let url = agent.base_url();
    let process = Process::start("worker", &["--agent", &url, "--id", id]);
    let line = process.line(START_TIMEOUT, id);
    assert!(
        line.starts_with(&format!("worker {id} listening on 127.0.0.1:")),
        "{line}"
    );
    process
}

#[test]
fn the_consumer_keeps_succeeding_while_a_worker_is_killed() {
    let agent = Agent::start(&[]);
    let mut workers: Vec<Process> = ["worker-1", "worker-2", "worker-3"]
        .iter()
        .map(|id| worker(&agent, id))
        .collect();
    agent.eventually(
        PASSING_TIMEOUT,
        "three workers passing their HTTP checks",
        || {
            let passing = agent.passing_ids("worker-service");
            (passing.len() == 3)
                .then_some(())
                .ok_or(format!("{passing:?}"))
        },
    );

    let url = agent.base_url();
    let mut consumer = Process::start(
        "consumer",
        &["--agent", &url, "--count", "60", "--interval-ms", "50"],
    );
    let mut output = Vec::new();
    for _ in 0..15 {
        output.push(consumer.line(START_TIMEOUT, "the consumer's calls"));
    }
    // worker-2 dies without deregistering; the catalog lists it until its check fails.
    workers[1].signal(Signal::SIGKILL);
    let status = consumer.wait(Duration::from_secs(60), "the consumer finishing 60 calls");
    // The reader thread ends (and drops its sender) at EOF: drain until then, so the last
    // lines are not lost to a race with the exit.
    while let Ok(line) = consumer.lines.recv_timeout(START_TIMEOUT) {
        output.push(line);
    }
    let text = output.join("\n");
    assert!(status.success(), "the consumer failed:\n{text}");
    assert!(!text.contains("FAILED"), "{text}");
    let summary = output.last().expect("a summary line");
    assert!(
        summary.starts_with("60 calls, 60 succeeded, 0 failed"),
        "{summary}"
    );
    for id in ["worker-1", "worker-3"] {
        assert!(text.contains(&format!("answered by {id}")), "{text}");
    }

    // SIGTERM: the worker deregisters itself, then exits cleanly.
    workers[0].signal(Signal::SIGTERM);
    let status = workers[0].wait(Duration::from_secs(20), "worker-1 exiting on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        !agent.services().contains_key("worker-1"),
        "worker-1 deregistered itself before exiting"
    );
    assert!(agent.services().contains_key("worker-3"));
}

/// Under ACLs with `default_policy = "deny"`, a worker registers itself with the token from
/// `CONSUL_HTTP_TOKEN`, as a Consul client would, and is refused without it.
#[test]
fn a_worker_registers_with_the_token_in_its_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716";
    let file = dir.path().join("agent.hcl");
    let acl = format!(
        "acl {{\n enabled = true\n default_policy = \"deny\"\n token \"workers\" {{\n secret = \"{secret}\"\n service \"worker-service\" {{ policy = \"write\" }}\n }}\n}}\n"
    );
    std::fs::write(&file, acl).expect("write the acl file");
    let agent = Agent::start(&["--config-file", file.to_str().expect("utf-8 path")]);
    let url = agent.base_url();

    let mut refused = Process::start("worker", &["--agent", &url, "--id", "no-token"]);
    let status = refused.wait(START_TIMEOUT, "a worker without a token giving up");
    assert!(!status.success(), "a worker without a token was let in");

    let with_token = Process::start_with_env(
        "worker",
        &["--agent", &url, "--id", "with-token"],
        &[("CONSUL_HTTP_TOKEN", secret)],
    );
    let line = with_token.line(START_TIMEOUT, "the worker with a token");
    assert!(line.starts_with("worker with-token listening"), "{line}");
    let listed = agent.request(
        reqwest::Method::GET,
        "/v1/catalog/service/worker-service",
        &[("X-Consul-Token", secret)],
        None,
    );
    listed.expect_status(200);
    assert!(listed.text().contains("with-token"), "{}", listed.text());
}
