//! nginx as a peer, on a loopback port, with a configuration written for the one run: for read
//! throughput, a static file server returning the same bytes the agent returns
//! ([`Site::StaticFile`]); for the gateway, a reverse proxy to the same backends
//! ([`Site::Proxy`]: an upstream of every backend, round robin, `keepalive 64` idle connections
//! per worker, HTTP/1.1 without `Connection: close`, `keepalive_requests` raised on both sides).
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
use crate::process_group::{ProcessGroup, log_summary};
use anyhow::Context;
use bytes::Bytes;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::{Instant, sleep};

/// How long nginx may take to serve its first request.
const START_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// What it serves.
    pub site: Site,
}

/// What nginx serves.
#[derive(Debug, Clone)]
pub enum Site {
    /// `body` as a static file at URL `path`, e.g. `/v1/endpoints/worker-service`.
    StaticFile {
        /// The URL path.
        path: String,
        /// The bytes served there.
        body: Bytes,
    },
    /// A reverse proxy to `backends`, at every path.
    Proxy {
        /// The backends, balanced round robin.
        backends: Vec<SocketAddr>,
    },
}

/// A running nginx; stopped by [`Nginx::stop`], or killed when dropped.
pub struct Nginx {
    process: ProcessGroup,
    addr: SocketAddr,
    error_log: PathBuf,
}

impl Nginx {
    /// Writes what the site serves, starts nginx on a free loopback port and waits until it
    /// answers: a static file with exactly its bytes, a proxy with a 200 from a backend.
    pub async fn start(config: &NginxConfig) -> anyhow::Result<Nginx> {
        let tmp = config.dir.join("tmp");
        std::fs::create_dir_all(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        if let Site::StaticFile { path, body } = &config.site {
            let file = served_file(&config.dir, path);
            let parent = file.parent().context("the served path has no parent")?;
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            std::fs::write(&file, body)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(config).await {
                Ok(nginx) => return Ok(nginx),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("nginx did not start")))
    }

    async fn try_start(config: &NginxConfig) -> anyhow::Result<Nginx> {
        // nginx cannot listen on port 0, so take a free port from the kernel and hand it over.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let conf = config.dir.join("nginx.conf");
        std::fs::write(
            &conf,
            render_config(config, addr, nix::unistd::geteuid().is_root()),
        )
        .with_context(|| format!("cannot write {}", conf.display()))?;
        let error_log = config.dir.join("error.log");
        let process = ProcessGroup::spawn(
            Command::new(&config.binary)
                .arg("-e")
                .arg(&error_log)
                .arg("-p")
                .arg(&config.dir)
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            &config.binary.display().to_string(),
        )?;
        let mut nginx = Nginx {
            process,
            addr,
            error_log,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = nginx.process.exited()? {
                anyhow::bail!("nginx exited ({status}): {}", nginx.errors());
            }
            match &config.site {
                Site::StaticFile { path, body } => {
                    if let Ok(served) = nginx.fetch(path).await {
                        anyhow::ensure!(
                            served == body,
                            "nginx serves {} bytes at {path}, not the {} written",
                            served.len(),
                            body.len()
                        );
                        return Ok(nginx);
                    }
                }
                Site::Proxy { .. } => {
                    if nginx.fetch("/").await.is_ok() {
                        return Ok(nginx);
                    }
                }
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
        self.process.pid()
    }

    /// `GET path`, expecting a 200; the body.
    pub async fn fetch(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        let mut connection = Connection::open(self.addr).await?;
        let what = format!("nginx GET {path}");
        Ok(connection.get(path).await?.expect_ok(&what)?.body)
    }

    /// Its error log (level `warn` and worse), on one line, for error messages and the report.
    pub fn errors(&self) -> String {
        log_summary(&self.error_log, "no lines in its error log")
    }

    /// SIGTERM to the master and workers, then SIGKILL if they are still there after a few
    /// seconds.
    pub async fn stop(self) {
        self.process.stop().await;
    }
}

fn render_config(config: &NginxConfig, addr: SocketAddr, as_root: bool) -> String {
    let dir = config.dir.display();
    // As root, the workers would switch to `nobody`, who cannot read a mktemp -d directory.
    let user = if as_root { "user root;\n" } else { "" };
    let site = match &config.site {
        Site::StaticFile { path, .. } => format!(
            "    default_type application/json;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    server {{
        listen {addr};
        root {dir}/www;
        location = {path} {{
            add_header Cache-Control no-cache;
            add_header X-Cache-Status HIT;
        }}
    }}
"
        ),
        Site::Proxy { backends } => {
            let servers: String = backends
                .iter()
                .map(|b| format!("        server {b};\n"))
                .collect();
            format!(
                "    upstream backends {{
{servers}        keepalive 64;
        keepalive_requests 100000000;
        keepalive_timeout 75s;
    }}
    server {{
        listen {addr};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
"
            )
        }
    };
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
    keepalive_timeout 75s;
    keepalive_requests 100000000;
    tcp_nodelay on;
    client_body_temp_path {dir}/tmp/client_body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
{site}}}
",
        workers = config.workers,
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
            site: Site::StaticFile {
                path: "/v1/endpoints/worker-service".into(),
                body: Bytes::new(),
            },
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

    #[test]
    fn a_proxy_reaches_every_backend_with_keepalive() {
        let config = NginxConfig {
            binary: "nginx".into(),
            dir: "/tmp/x".into(),
            workers: "auto".into(),
            site: Site::Proxy {
                backends: ["127.0.0.1:4001", "127.0.0.1:4002"]
                    .iter()
                    .map(|a| a.parse().expect("addr"))
                    .collect(),
            },
        };
        let addr: SocketAddr = "127.0.0.1:4242".parse().expect("addr");
        let text = render_config(&config, addr, false);
        for line in [
            "listen 127.0.0.1:4242;",
            "server 127.0.0.1:4001;",
            "server 127.0.0.1:4002;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "worker_processes auto;",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }
}
