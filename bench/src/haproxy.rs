//! HAProxy as a peer for the gateway: a reverse proxy to the same backends, on a loopback port,
//! with a configuration written for the one run.
//!
//! What the configuration chooses, and why (docs/BENCHMARKS.md repeats this):
//! - `nbthread` as given (`bench/run` passes 2: one thread per core, as the agent's tokio
//!   runtime has one worker per core).
//! - `balance roundrobin` over every backend, as the gateway's route does.
//! - keep-alive on both sides: `option http-keep-alive` towards clients and `http-reuse always`
//!   towards the backends, so that, like the gateway's pooled client, HAProxy does not open a
//!   connection per request. Timeouts are long enough never to close a connection in a run.
//! - `option forwardfor` and an `X-Forwarded-Proto`, because the gateway writes forwarding
//!   headers too (it also writes `X-Forwarded-Host` and `Forwarded`).
//! - no logging: neither the gateway nor nginx logs requests in the benchmark.
//!
//! HAProxy runs in the foreground (`-db`) in a process group of its own, and its pid is written
//! to `haproxy.pid` in its directory, so that `bench/run` can still kill it if the benchmark
//! binary itself dies.

use crate::client::Connection;
use crate::process_group::{ProcessGroup, log_summary};
use anyhow::Context;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::{Instant, sleep};

/// How long HAProxy may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Another process may take the port between our probe bind and HAProxy's: try again this often.
const START_ATTEMPTS: u32 = 3;

/// What HAProxy proxies to, and how.
#[derive(Debug, Clone)]
pub struct HAProxyConfig {
    /// The `haproxy` binary.
    pub binary: PathBuf,
    /// A directory of its own for the configuration, its pid file and its output.
    pub dir: PathBuf,
    /// `nbthread`.
    pub threads: u32,
    /// The backends, balanced round robin.
    pub backends: Vec<SocketAddr>,
}

/// A running HAProxy; stopped by [`HAProxy::stop`], or killed when dropped.
pub struct HAProxy {
    process: ProcessGroup,
    addr: SocketAddr,
    log: PathBuf,
}

impl HAProxy {
    /// Starts HAProxy on a free loopback port and waits until it answers `GET probe_path` with
    /// a 200 (from a backend).
    pub async fn start(config: &HAProxyConfig, probe_path: &str) -> anyhow::Result<HAProxy> {
        anyhow::ensure!(!config.backends.is_empty(), "HAProxy needs a backend");
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create {}", config.dir.display()))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(config, probe_path).await {
                Ok(haproxy) => return Ok(haproxy),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("HAProxy did not start")))
    }

    async fn try_start(config: &HAProxyConfig, probe_path: &str) -> anyhow::Result<HAProxy> {
        // Take a free port from the kernel and hand it over (HAProxy would take port 0, but then
        // we would have to ask it which port it got).
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let conf = config.dir.join("haproxy.cfg");
        std::fs::write(&conf, render_config(config, addr))
            .with_context(|| format!("cannot write {}", conf.display()))?;
        let log = config.dir.join("haproxy.log");
        let output = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let process = ProcessGroup::spawn(
            Command::new(&config.binary)
                .arg("-db")
                .arg("-f")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(output.try_clone()?)
                .stderr(output),
            &config.binary.display().to_string(),
        )?;
        let pid = process.pid();
        let mut haproxy = HAProxy { process, addr, log };
        let pid_file = config.dir.join("haproxy.pid");
        std::fs::write(&pid_file, format!("{pid}\n"))
            .with_context(|| format!("cannot write {}", pid_file.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = haproxy.process.exited()? {
                anyhow::bail!("HAProxy exited ({status}): {}", haproxy.errors());
            }
            if haproxy.fetch(probe_path).await.is_ok() {
                return Ok(haproxy);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "HAProxy did not answer within {START_TIMEOUT:?}: {}",
                haproxy.errors()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its pid (one process; its threads are counted in its CPU).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// `GET path`, expecting a 200; the body.
    pub async fn fetch(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let mut connection = Connection::open(self.addr).await?;
        let what = format!("HAProxy GET {path}");
        Ok(connection.get(path).await?.expect_ok(&what)?.body)
    }

    /// What it printed (alerts and warnings), on one line, for error messages and the report.
    pub fn errors(&self) -> String {
        log_summary(&self.log, "no lines in its output")
    }

    /// SIGTERM to its group, then SIGKILL if it is still there after a few seconds.
    pub async fn stop(self) {
        self.process.stop().await;
    }
}

fn render_config(config: &HAProxyConfig, addr: SocketAddr) -> String {
    let mut servers = String::new();
    for (n, backend) in (1..).zip(&config.backends) {
        let _ = writeln!(servers, "    server backend-{n} {backend}");
    }
    format!(
        "# Written by wayfinder-bench (bench/src/haproxy.rs) for one benchmark run.
global
    nbthread {threads}
    maxconn 8192

defaults
    mode http
    option http-keep-alive
    http-reuse always
    option forwardfor
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s
    timeout http-request 30s

frontend gateway-peer
    bind {addr}
    default_backend backends

backend backends
    balance roundrobin
    http-request set-header X-Forwarded-Proto http
{servers}",
        threads = config.threads,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_balances_every_backend_from_loopback() {
        let config = HAProxyConfig {
            binary: "haproxy".into(),
            dir: "/tmp/x".into(),
            threads: 2,
            backends: vec![
                "127.0.0.1:4001".parse().expect("addr"),
                "127.0.0.1:4002".parse().expect("addr"),
            ],
        };
        let addr: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
        let text = render_config(&config, addr);
        for line in [
            "bind 127.0.0.1:4242",
            "nbthread 2",
            "balance roundrobin",
            "http-reuse always",
            "option http-keep-alive",
            "server backend-1 127.0.0.1:4001",
            "server backend-2 127.0.0.1:4002",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
