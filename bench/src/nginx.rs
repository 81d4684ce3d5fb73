//! nginx as the peer for read throughput: a static file server returning the same bytes the
//! agent returns, on a loopback port, with a configuration written for the one run.
//!
//! What the configuration chooses, and why (docs/BENCHMARKS.md repeats this):
//! - `worker_processes` as given (`bench/run` passes `auto`: one worker per core, as the
//!   agent's tokio runtime has one worker thread per core).
//! - keep-alive on, and `keepalive_requests` raised from nginx's default of 1,000 so that nginx,
//!   like the agent, never closes a client's connection during a run; otherwise each wrk
//!   connection would be reopened every 1,000 requests and nginx would pay for the handshakes.
//! - `open_file_cache`, so the file is not opened and stat'ed on every request (the agent does
//!   not touch the disk for a read either); no access log (the agent logs no reads).
//! - the same body at the same path, as `application/json`, and the agent's `Cache-Control` and
//!   `X-Cache-Status` headers, so both send about as many bytes per response.
//!
//! nginx runs in its own process group, in the foreground (`daemon off`), so that stopping it
//! (or dropping [`Nginx`]) signals the master and its workers together.

use crate::client::Connection;
use anyhow::Context;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

/// How long nginx may take to serve its first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long nginx may take to exit after SIGTERM before the group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Another process may take the port between our probe bind and nginx's: try again this often.
const START_ATTEMPTS: u32 = 3;

/// What nginx serves, and how.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// The `nginx` binary.
    pub binary: PathBuf,
    /// A directory of its own for the configuration, the served file, logs and temp files.
    pub dir: PathBuf,
    /// `worker_processes`: a number or `auto`.
    pub workers: String,
    /// The URL path to serve, e.g. `/v1/endpoints/worker-service`.
    pub path: String,
}

/// A running nginx; stopped by [`Nginx::stop`], or killed when dropped.
pub struct Nginx {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    error_log: PathBuf,
}

impl Nginx {
    /// Writes `body` where `config.path` is served from, starts nginx on a free loopback port and
    /// waits until it answers that path with exactly `body`.
    pub async fn start(config: &NginxConfig, body: &[u8]) -> anyhow::Result<Nginx> {
        let file = served_file(&config.dir, &config.path);
        let parent = file.parent().context("the served path has no parent")?;
        for dir in [parent, &config.dir.join("tmp")] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&file, body).with_context(|| format!("cannot write {}", file.display()))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(config, body).await {
                Ok(nginx) => return Ok(nginx),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
    }

    async fn try_start(config: &NginxConfig, body: &[u8]) -> anyhow::Result<Nginx> {
        // nginx cannot listen on port 0, so take a free port from the kernel and hand it over.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let conf = config.dir.join("nginx.conf");
        std::fs::write(
            &conf,
            render_config(config, addr, nix::unistd::geteuid().is_root()),
        )
        .with_context(|| format!("cannot write {}", conf.display()))?;
        let error_log = config.dir.join("error.log");
        let child = Command::new(&config.binary)
            .arg("-e")
            .arg(&error_log)
            .arg("-p")
            .arg(&config.dir)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", config.binary.display()))?;
        let pid = child.id().context("nginx exited at once")?;
        let mut nginx = Nginx {
            child,
            pid,
            addr,
            error_log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                anyhow::bail!("nginx exited ({status}): {}", nginx.errors());
            }
            if let Ok(served) = nginx.fetch(&config.path).await {
                anyhow::ensure!(
                    served == body,
                    "nginx serves {} bytes at {}, not the {} written",
                    served.len(),
                    config.path,
                    body.len()
                );
                return Ok(nginx);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nginx did not answer within {START_TIMEOUT:?}: {}",
                nginx.errors()
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master's pid (its workers are its children).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `GET path`, expecting a 200; the body.
    pub async fn fetch(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let mut connection = Connection::open(self.addr).await?;
        let what = format!("nginx GET {path}");
        Ok(connection.get(path).await?.expect_ok(&what)?.body)
    }

    /// Its error log (level `warn` and worse), on one line, for error messages and the report.
    pub fn errors(&self) -> String {
        let log = std::fs::read_to_string(&self.error_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            "no lines in its error log".to_owned()
        } else {
            lines.join(" / ")
        }
    }

    /// SIGTERM to the master and workers, then SIGKILL if they are still there after
    /// [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        let group = Pid::from_raw(self.pid as i32);
        let _ = killpg(group, Signal::SIGTERM);
        if timeout(STOP_TIMEOUT, self.child.wait()).await.is_err() {
            let _ = killpg(group, Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // After `stop` the group is gone and this does nothing; on an early return it takes the
        // workers down with the master (kill_on_drop alone would orphan them).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

fn render_config(config: &NginxConfig, addr: SocketAddr, as_root: bool) -> String {
    let dir = config.dir.display();
    // As root, the workers would switch to `nobody`, who cannot read a mktemp -d directory.
    let user = if as_root { "user root;\n" } else { "" };
    format!(
        "# Written by wayfinder-bench (bench/src/nginx.rs) for one benchmark run.
{user}worker_processes {workers};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    default_type application/json;
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    tcp_nodelay on;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {addr};
        root {dir}/www;
        location = {path} {{
            add_header Cache-Control no-cache;
            add_header X-Cache-Status HIT;
        }}
    }}
}}
",
        workers = config.workers,
        path = config.path,
    )
}

/// Where the file served at URL `path` is kept under `dir`.
pub fn served_file(dir: &Path, path: &str) -> PathBuf {
    dir.join("www").join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_serves_the_path_on_loopback() {
        let config = NginxConfig {
            binary: "nginx".into(),
            dir: "/tmp/x".into(),
            workers: "auto".into(),
            path: "/v1/endpoints/worker-service".into(),
        };
        let addr: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
        let text = render_config(&config, addr, false);
        assert!(text.contains("listen 127.0.0.1:4242;"), "{text}");
        assert!(
            text.contains("location = /v1/endpoints/worker-service {"),
            "{text}"
        );
        assert!(text.contains("worker_processes auto;"), "{text}");
        assert!(!text.contains("user root"), "{text}");
        assert!(render_config(&config, addr, true).contains("\nuser root;\n"));
    }
}
