//! The end-to-end harness: boots the real `wayfinder` binary and real peers on loopback so each
//! integration test reads as the scenario it checks (STYLE.md, habit 5).
//!
//! What it owns:
//! - [`Agent`]: one agent process on an ephemeral `127.0.0.1` port, its captured stdout/stderr,
//!   an HTTP client for its API, and signals. Dropping it stops the process (SIGTERM, then
//!   SIGKILL if it lingers).
//! - [`HttpBackend`] and [`TcpBackend`]: health-check targets whose answer the test switches.
//! - [`ScriptStatus`]: a file an exec check reads its exit code from.
//! - [`memcached::Memcached`]: a real memcached on a free port, killable and restartable.
//! - [`node`]: Node.js scripts from the npm fixtures, run with a deadline.
//! - [`eventually`] / [`consistently`]: polling with a deadline. Tests never sleep to
//!   synchronise; they wait for a condition and say what they waited for when it times out.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod backend;
pub mod etcd;
pub mod memcached;
pub mod node;

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use reqwest::blocking::{Body, Client};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tempfile::TempDir;
// tokio's Instant is std's outside a paused runtime; clippy.toml bans std's to keep time pausable.
use tokio::time::Instant;

/// How long an agent may take from spawn to its banner (a debug build on a busy 2-core box).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a signalled agent may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline for a health-check transition: first run within ~1 s of registration plus jitter,
/// then one interval (tests use 200 ms–1 s), with slack for a loaded machine.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a dropped agent gets to shut down on SIGTERM before it is killed.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// How often [`eventually`] re-probes.
const POLL: Duration = Duration::from_millis(50);
/// How much captured stderr goes into a panic message.
const STDERR_TAIL: usize = 6000;
/// One MiB: the request body limit.
pub const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// Polls `probe` until it returns `Ok`, and returns that value. `probe` returns `Err(state)`
/// describing what it saw, so a timeout says both what was awaited and what was there instead.
#[track_caller]
pub fn eventually<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Result<T, String>) -> T {
    poll_until(timeout, probe).unwrap_or_else(|state| {
        panic!("timed out after {timeout:?} waiting for {what}; last saw: {state}")
    })
}

/// Polls `probe` until it returns `Ok` or `timeout` passes; the error is the last state seen.
fn poll_until<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(state) if Instant::now() >= deadline => return Err(state),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Asserts that `probe` keeps returning `Ok` for the whole of `window`. This is an observation
/// window ("it does not change"), not synchronisation.
pub fn consistently(window: Duration, what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        if let Err(state) = probe() {
            panic!("expected {what} to hold for {window:?}, but it broke: {state}");
        }
        thread::sleep(POLL);
    }
}

/// Whether `text` is a Go `Duration.String()` such as `0s`, `512µs`, `1.5ms`, `1m30s`.
pub fn is_go_duration(text: &str) -> bool {
    let text = text.strip_prefix('-').unwrap_or(text);
    if text == "0" || text == "0s" {
        return true;
    }
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 || rest[..digits].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "μs", "ms", "s", "m", "h"]
            .iter()
            .filter(|unit| rest.starts_with(**unit))
            .max_by_key(|unit| unit.len());
        match unit {
            Some(unit) => rest = &rest[unit.len()..],
            None => return false,
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Installs the process-wide rustls crypto provider once. reqwest is built with
/// `rustls-no-provider`, and a client cannot be built without one even for plain HTTP.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another test helper may have installed one first; either is fine for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A runtime for tests of the async client library (`wayfinder-client`): multi-threaded, so
/// its background tasks (blocking queries, heartbeats) run while the test thread makes
/// blocking requests outside it. Installs the crypto provider reqwest needs first.
pub fn client_runtime() -> tokio::runtime::Runtime {
    install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A blocking HTTP client for loopback tests: no proxy from the environment, bounded timeouts.
pub fn http_client() -> Client {
    install_crypto_provider();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("building the test HTTP client")
}

/// One HTTP answer, read whole.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Response {
    fn read(response: reqwest::blocking::Response) -> reqwest::Result<Self> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes()?.to_vec();
        Ok(Self {
            status,
            headers,
            body,
        })
    }

    /// The body as text (lossy), for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}), got {} {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// A header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Consul-Index`, which must be present and at least 1.
    pub fn index(&self) -> u64 {
        let raw = self
            .header("X-Consul-Index")
            .unwrap_or_else(|| panic!("no X-Consul-Index header in {:?}", self.headers));
        let index: u64 = raw
            .parse()
            .unwrap_or_else(|e| panic!("X-Consul-Index {raw:?} is not a u64: {e}"));
        assert!(index >= 1, "X-Consul-Index must be >= 1, got {index}");
        index
    }

    /// Asserts the status, showing the body if it differs.
    #[track_caller]
    pub fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {:?}",
            self.text()
        );
        self
    }

    /// Asserts a successful write in Consul's shape: exactly 200 and an empty body.
    #[track_caller]
    pub fn expect_write_ok(&self) {
        self.expect_status(200);
        assert!(
            self.body.is_empty(),
            "a successful write answers with an empty body, got {:?}",
            self.text()
        );
    }

    /// Asserts an error answer in Wayfinder's shape, `{"error": "...", "field": "..."}`, and
    /// returns the parsed body.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> Value {
        self.expect_status(status);
        let body = self.json();
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!("error body needs a string \"error\": {body}");
            });
        assert!(!message.is_empty(), "error message is empty: {body}");
        body
    }
}

// ---------------------------------------------------------------------------------------------
// Agent process
// ---------------------------------------------------------------------------------------------

/// Captured output of a child process, filled by a background reader so the pipe never fills.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn append(&self, bytes: &[u8]) {
        self.0
            .lock()
            .expect("capture lock")
            .extend_from_slice(bytes);
    }

    /// Everything captured so far, as text, without ANSI colour codes (the agent's text logs
    /// may carry them even into a pipe; tests read words, not colours).
    pub fn text(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &self.0.lock().expect("capture lock"),
        ))
    }

    /// The last `max` bytes, for panic messages.
    pub fn tail(&self, max: usize) -> String {
        let text = self.text();
        if text.len() <= max {
            return text;
        }
        let mut start = text.len() - max;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        format!("…{}", &text[start..])
    }
}

/// `text` without ANSI CSI sequences (`ESC [ ... final-byte`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why an agent did not come up.
pub struct StartFailure {
    /// The exit status, if it exited (as opposed to timing out).
    pub status: Option<ExitStatus>,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl fmt::Debug for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "agent did not start ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
            match self.status {
                Some(status) => format!("exited: {status}"),
                None => format!("no banner within {START_TIMEOUT:?}"),
            },
            self.stdout,
            self.stderr
        )
    }
}

/// Reads one stream into `captured`, line by line, sending the banner's address when it sees
/// `HTTP API: http://<addr>` and `None` at end of stream.
fn spawn_stdout_reader(
    stdout: ChildStdout,
    captured: Captured,
    banner: mpsc::Sender<Option<String>>,
) {
    thread::Builder::new()
        .name("agent-stdout".into())
        .spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        captured.append(&line);
                        if let Some(addr) = banner_address(&String::from_utf8_lossy(&line)) {
                            let _ = banner.send(Some(addr));
                        }
                    }
                }
            }
            let _ = banner.send(None);
        })
        .expect("spawning the stdout reader");
}

fn spawn_stderr_reader(mut stderr: ChildStderr, captured: Captured) {
    thread::Builder::new()
        .name("agent-stderr".into())
        .spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                match stderr.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => captured.append(&buffer[..n]),
                }
            }
        })
        .expect("spawning the stderr reader");
}

/// The address in a banner line matching `^\s*HTTP API:\s+https?://(\S+)$`.
pub fn banner_address(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("HTTP API:")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("http://")
        .or_else(|| rest.strip_prefix("https://"))?;
    let rest = rest.trim_end_matches(['\n', '\r']);
    (!rest.is_empty() && !rest.contains(char::is_whitespace)).then(|| rest.to_owned())
}

/// A running `wayfinder agent` on an ephemeral loopback port.
pub struct Agent {
    child: Child,
    /// The bound HTTP address from the banner.
    pub addr: SocketAddr,
    stdout: Captured,
    stderr: Captured,
    data_dir: Option<PathBuf>,
    // Keeps a harness-made data dir alive as long as the agent.
    _owned_data_dir: Option<TempDir>,
    // The process's working directory, so nothing it writes by default lands in the repo.
    work_dir: TempDir,
    http: Client,
    exited: Option<ExitStatus>,
}

impl Agent {
    /// Starts `wayfinder agent <args> --http-addr 127.0.0.1:0`, adding a fresh temporary
    /// `--data-dir` unless `args` has `--data-dir` or `--dev`, and waits for the banner.
    pub fn start(args: &[&str]) -> Agent {
        Self::try_start(args).unwrap_or_else(|failure| panic!("{failure:?}"))
    }

    /// Starts an agent on `data_dir` (which outlives it, for restarts) with extra `args`.
    pub fn start_on(data_dir: &Path, args: &[&str]) -> Agent {
        let dir = path_str(data_dir);
        let mut all = vec!["--data-dir", dir];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// Like [`Agent::start`], but returns how it failed instead of panicking: the exit status
    /// and output when it exited before the banner, or no status when it timed out (then the
    /// process has been killed).
    pub fn try_start(args: &[&str]) -> Result<Agent, StartFailure> {
        let owns_data = !args
            .iter()
            .any(|a| *a == "--dev" || a.starts_with("--data-dir"));
        let owned_data_dir = owns_data.then(|| {
            tempfile::Builder::new()
                .prefix("wayfinder-data-")
                .tempdir()
                .expect("creating a data dir")
        });
        let data_dir = match &owned_data_dir {
            Some(dir) => Some(dir.path().to_path_buf()),
            None => args
                .iter()
                .position(|a| *a == "--data-dir")
                .and_then(|i| args.get(i + 1))
                .map(PathBuf::from),
        };

        let work_dir = temp_dir("wayfinder-cwd-");
        let mut command = Command::new(env!("CARGO_BIN_EXE_wayfinder"));
        command.current_dir(work_dir.path()).arg("agent").args(args);
        command.args(["--http-addr", "127.0.0.1:0"]);
        if let Some(dir) = &owned_data_dir {
            command.arg("--data-dir").arg(dir.path());
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG")
            .env_remove("WAYFINDER_LOG")
            .env_remove("WAYFINDER_DATA_DIR");
        let mut child = command.spawn().expect("spawning target/debug/wayfinder");

        let stdout = Captured::default();
        let stderr = Captured::default();
        let (banner_tx, banner_rx) = mpsc::channel();
        spawn_stdout_reader(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            banner_tx,
        );
        spawn_stderr_reader(child.stderr.take().expect("piped stderr"), stderr.clone());

        let failure = |child: &mut Child, status: Option<ExitStatus>| {
            let status = match status {
                Some(status) => Some(status),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    None
                }
            };
            // Let the readers drain what the process wrote before it went.
            thread::sleep(Duration::from_millis(100));
            StartFailure {
                status,
                stdout: stdout.text(),
                stderr: stderr.text(),
            }
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            match banner_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(addr)) => break addr,
                Ok(None) => {
                    // stdout closed: the process is exiting (or closed stdout, which it must not).
                    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
                    return Err(failure(&mut child, status));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_with_deadline(&mut child, Duration::from_secs(5));
                    return Err(failure(&mut child, status));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Err(failure(&mut child, Some(status)));
                    }
                    if Instant::now() >= deadline {
                        return Err(failure(&mut child, None));
                    }
                }
            }
        };
        let addr: SocketAddr = match addr.parse() {
            Ok(addr) => addr,
            Err(e) => {
                let mut failure = failure(&mut child, None);
                failure.stderr = format!(
                    "banner address {addr:?} is not host:port ({e})\n{}",
                    failure.stderr
                );
                return Err(failure);
            }
        };

        Ok(Agent {
            child,
            addr,
            stdout,
            stderr,
            data_dir,
            _owned_data_dir: owned_data_dir,
            work_dir,
            http: http_client(),
            exited: None,
        })
    }

    /// Starts the agent with `args`, expecting it to exit before it listens; returns the exit
    /// status and stderr. Panics if it comes up instead.
    pub fn start_expecting_failure(args: &[&str]) -> (ExitStatus, String, String) {
        match Self::try_start(args) {
            Ok(agent) => panic!(
                "expected the agent to refuse to start, but it listens on {}; stderr:\n{}",
                agent.addr,
                agent.stderr_tail()
            ),
            Err(StartFailure {
                status: Some(status),
                stdout,
                stderr,
            }) => (status, stdout, stderr),
            Err(failure) => panic!("expected the agent to exit, but it hung: {failure:?}"),
        }
    }

    /// The gateway's address from the banner (`gateway:       http(s)://ADDR`).
    pub fn gateway_addr(&self) -> SocketAddr {
        self.stdout()
            .lines()
            .find_map(|line| line.trim().strip_prefix("gateway:"))
            .map(str::trim)
            .and_then(|rest| {
                rest.strip_prefix("http://")
                    .or_else(|| rest.strip_prefix("https://"))
            })
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no gateway line in the banner:\n{}", self.stdout()))
    }

    /// The bound HTTP API address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's base URL, `http://host:port` (a TLS agent is reached with its own client).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The data dir the agent was started with (`None` with `--dev`).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// The agent's working directory (a fresh temporary one).
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    /// Everything the agent wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Everything the agent wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// The end of the agent's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        self.stderr.tail(STDERR_TAIL)
    }

    // --- requests -----------------------------------------------------------------------------

    fn send(&self, builder: reqwest::blocking::RequestBuilder, what: &str) -> Response {
        builder.send().and_then(Response::read).unwrap_or_else(|e| {
            panic!(
                "{what} failed: {e:?}\n--- agent stderr ---\n{}",
                self.stderr_tail()
            )
        })
    }

    /// `GET path` (path starts with `/v1/...`, may carry a query).
    pub fn get(&self, path: &str) -> Response {
        let url = format!("{}{path}", self.base_url());
        self.send(self.http.get(&url), &format!("GET {path}"))
    }

    /// `method path` with extra request headers (a token, say) and an optional JSON body.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let url = format!("{}{path}", self.base_url());
        let mut builder = self.http.request(method.clone(), &url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder.body(body.to_string());
        }
        self.send(builder, &format!("{method} {path}"))
    }

    /// Every sample of `GET /metrics`, keyed by name and labels as exposed
    /// (`wayfinder_x_total{a="b"}`).
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let response = self.get("/metrics");
        response.expect_status(200);
        response
            .text()
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                Some((key.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// `PUT path` with a raw body and no Content-Type (as python-consul sends it).
    pub fn put(&self, path: &str, body: impl Into<Body>) -> Response {
        let url = format!("{}{path}", self.base_url());
        self.send(self.http.put(&url).body(body), &format!("PUT {path}"))
    }

    /// `PUT path` with no body.
    pub fn put_empty(&self, path: &str) -> Response {
        let url = format!("{}{path}", self.base_url());
        self.send(self.http.put(&url), &format!("PUT {path}"))
    }

    /// `PUT path` with `body` serialised as JSON.
    pub fn put_json(&self, path: &str, body: &Value) -> Response {
        self.put(path, body.to_string())
    }

    // --- the API, as tests use it ---------------------------------------------------------------

    /// Registers a service and asserts Consul's success shape (200, empty body).
    #[track_caller]
    pub fn register(&self, body: &Value) {
        let response = self.put_json("/v1/agent/service/register", body);
        assert_eq!(
            response.status,
            200,
            "registering {body} failed: {}\n--- agent stderr ---\n{}",
            response.text(),
            self.stderr_tail()
        );
        response.expect_write_ok();
    }

    /// Deregisters a service instance with PUT and asserts success.
    #[track_caller]
    pub fn deregister(&self, id: &str) {
        self.put_empty(&format!("/v1/agent/service/deregister/{id}"))
            .expect_write_ok();
    }

    /// `GET /v1/agent/services` as a map from instance ID.
    pub fn services(&self) -> serde_json::Map<String, Value> {
        let response = self.get("/v1/agent/services");
        response.expect_status(200);
        match response.json() {
            Value::Object(map) => map,
            other => panic!("/v1/agent/services must be an object, got {other}"),
        }
    }

    /// `GET /v1/agent/checks` as a map from check ID.
    pub fn checks(&self) -> serde_json::Map<String, Value> {
        let response = self.get("/v1/agent/checks");
        response.expect_status(200);
        match response.json() {
            Value::Object(map) => map,
            other => panic!("/v1/agent/checks must be an object, got {other}"),
        }
    }

    /// One check from `/v1/agent/checks`.
    pub fn check(&self, id: &str) -> Option<Value> {
        self.checks().remove(id)
    }

    /// A check's status, or `None` when the check does not exist.
    pub fn check_status(&self, id: &str) -> Option<String> {
        self.check(id)
            .and_then(|c| c.get("Status").and_then(Value::as_str).map(str::to_owned))
    }

    /// Waits until check `id` has `status`, and returns the check.
    #[track_caller]
    pub fn wait_for_status(&self, id: &str, status: &str) -> Value {
        self.wait_for_check(id, &format!("check {id} to be {status}"), |check| {
            check.get("Status").and_then(Value::as_str) == Some(status)
        })
    }

    /// Waits until check `id` has run at least once (it reports a `Latency`), and returns it.
    #[track_caller]
    pub fn wait_for_first_run(&self, id: &str) -> Value {
        self.wait_for_check(id, &format!("check {id} to have run"), |check| {
            check
                .get("Latency")
                .and_then(Value::as_str)
                .is_some_and(|l| !l.is_empty())
        })
    }

    /// Waits until check `id` satisfies `ready`, and returns it.
    #[track_caller]
    pub fn wait_for_check(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        self.eventually(CHECK_TIMEOUT, what, || match self.check(id) {
            Some(check) if ready(&check) => Ok(check),
            Some(check) => Err(check.to_string()),
            None => Err(format!("no check {id} in /v1/agent/checks")),
        })
    }

    /// IDs of `/v1/health/service/{name}{query}` entries, sorted.
    pub fn health_service_ids(&self, name: &str, query: &str) -> Vec<String> {
        let response = self.get(&format!("/v1/health/service/{name}{query}"));
        response.expect_status(200);
        response.index();
        let mut ids: Vec<String> = response
            .json()
            .as_array()
            .unwrap_or_else(|| panic!("health/service must answer an array"))
            .iter()
            .map(|entry| {
                entry["Service"]["ID"]
                    .as_str()
                    .unwrap_or_else(|| panic!("entry without Service.ID: {entry}"))
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids
    }

    /// IDs of instances `/v1/health/service/{name}?passing` lists.
    pub fn passing_ids(&self, name: &str) -> Vec<String> {
        self.health_service_ids(name, "?passing")
    }

    /// `X-Consul-Index` of `GET /v1/catalog/services`.
    pub fn catalog_index(&self) -> u64 {
        let response = self.get("/v1/catalog/services");
        response.expect_status(200);
        response.index()
    }

    /// [`eventually`], with the agent's stderr in the panic message.
    #[track_caller]
    pub fn eventually<T>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl FnMut() -> Result<T, String>,
    ) -> T {
        poll_until(timeout, probe).unwrap_or_else(|state| {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last saw: {state}\n\
                 --- agent stderr ---\n{}",
                self.stderr_tail()
            )
        })
    }

    // --- process control ----------------------------------------------------------------------

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    /// Sends `sig` to the agent.
    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).unwrap_or_else(|e| panic!("sending {sig} failed: {e}"));
    }

    /// SIGTERM: graceful shutdown.
    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// SIGINT: graceful shutdown.
    pub fn sigint(&self) {
        self.signal(Signal::SIGINT);
    }

    /// SIGHUP: reload the config dir.
    pub fn sighup(&self) {
        self.signal(Signal::SIGHUP);
    }

    /// `kill -9`, and reap the process.
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.wait_exit(EXIT_TIMEOUT);
        assert!(
            status.code().is_none(),
            "SIGKILL should end the process by signal, got {status}"
        );
    }

    /// Waits for the process to exit and returns its status; panics (with stderr) on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        match wait_with_deadline(&mut self.child, timeout) {
            Some(status) => {
                self.exited = Some(status);
                // Let the readers drain the last lines.
                thread::sleep(Duration::from_millis(100));
                status
            }
            None => panic!(
                "agent did not exit within {timeout:?}\n--- agent stderr ---\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.exited.is_none() {
            // Gracefully first, so a --dev agent removes its temporary data dir; then for sure.
            let _ = signal::kill(self.pid(), Signal::SIGTERM);
            if wait_with_deadline(&mut self.child, DROP_GRACE).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if thread::panicking() {
            eprintln!(
                "--- wayfinder agent {} stderr ---\n{}\n--- end of agent stderr ---",
                self.addr,
                self.stderr_tail()
            );
        }
    }
}

fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for the agent failed: {e}"),
        }
    }
}

/// A path as `&str` for argument lists (test paths are always UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A fresh temporary directory (a data dir that outlives one agent, or a config dir).
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a temp dir")
}

// ---------------------------------------------------------------------------------------------
// Backends: what checks probe
// ---------------------------------------------------------------------------------------------

/// A runtime for backends: one worker thread is plenty for a health-check target.
fn backend_runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("building a backend runtime")
}

/// An HTTP server on loopback that answers every request with the status the test set
/// (200 at first) and a body naming it, and counts requests.
pub struct HttpBackend {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

impl HttpBackend {
    /// Starts the server answering 200.
    pub fn start() -> HttpBackend {
        let runtime = backend_runtime("http-backend");
        let status = Arc::new(AtomicU16::new(200));
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the HTTP backend");
        let addr = listener.local_addr().expect("backend address");
        let app = {
            let status = status.clone();
            let hits = hits.clone();
            axum::Router::new().fallback(move || {
                // Count before reading the status: a request counted after a test's
                // `set_status` + `hits()` is then sure to answer the new status.
                hits.fetch_add(1, Ordering::SeqCst);
                let code = status.load(Ordering::SeqCst);
                async move {
                    let code = axum::http::StatusCode::from_u16(code)
                        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                    (code, format!("backend says {}", code.as_u16()))
                }
            })
        };
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HttpBackend {
            runtime: Some(runtime),
            addr,
            status,
            hits,
        }
    }

    /// The URL an HTTP check should probe.
    pub fn url(&self) -> String {
        format!("http://{}/health", self.addr)
    }

    /// Makes every following request answer `status`.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// How many requests it has answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A TCP listener on loopback that accepts and drops connections, and can be closed and
/// reopened on the same port.
pub struct TcpBackend {
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    accept_loop: Option<tokio::task::JoinHandle<()>>,
}

impl TcpBackend {
    /// Starts listening on an ephemeral port.
    pub fn start() -> TcpBackend {
        let mut backend = TcpBackend {
            runtime: Some(backend_runtime("tcp-backend")),
            port: 0,
            accept_loop: None,
        };
        backend.open();
        backend
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("backend runtime")
    }

    fn open(&mut self) {
        let port = self.port;
        let listener = self
            .runtime()
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("binding the TCP backend on port {port}: {e}"));
        self.port = listener.local_addr().expect("backend address").port();
        self.accept_loop = Some(self.runtime().spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
            }
        }));
    }

    /// `host:port` for a TCP check.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops listening: connections to the port are refused until [`TcpBackend::reopen`].
    pub fn close(&mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            accept_loop.abort();
            // The listener is dropped once the aborted task has finished.
            let _ = self.runtime().block_on(accept_loop);
        }
    }

    /// Listens again on the same port.
    pub fn reopen(&mut self) {
        assert!(self.accept_loop.is_none(), "reopen a closed backend only");
        self.open();
    }
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A file an exec check reads its exit code from, so a test can flip the script's result:
/// the check runs `/bin/sh -c 'echo "exit code $(cat FILE)"; exit $(cat FILE)'`.
pub struct ScriptStatus {
    dir: TempDir,
}

impl ScriptStatus {
    /// A status file holding `code`.
    pub fn new(code: u8) -> ScriptStatus {
        let status = ScriptStatus {
            dir: temp_dir("wayfinder-script-"),
        };
        status.set(code);
        status
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    /// The check's `Args`.
    pub fn args(&self) -> Value {
        let file = self.file();
        let file = path_str(&file);
        json!([
            "/bin/sh",
            "-c",
            format!("code=$(cat '{file}'); echo \"exit code $code\"; exit $code")
        ])
    }

    /// Makes the next runs exit with `code`. Written via rename so a run never reads a
    /// half-written file.
    pub fn set(&self, code: u8) {
        let staging = self.dir.path().join("status.new");
        std::fs::write(&staging, format!("{code}\n")).expect("writing the script status");
        std::fs::rename(&staging, self.file()).expect("publishing the script status");
    }
}

// ---------------------------------------------------------------------------------------------
// Watch streams: a Server-Sent Events reader over plain HTTP/1.1
// ---------------------------------------------------------------------------------------------

use std::io::Write as _;
use std::net::TcpStream;

/// One Server-Sent Event as a watcher receives it (comments and keep-alives are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`registered`, `deregistered`, `health`, `resync`).
    pub event: String,
    /// The `id:` field, what a reconnecting client sends back as `Last-Event-ID`.
    pub id: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// The data parsed as JSON; panics with the event if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }

    /// The id as `(index, place)`; an id without a place (`resync`'s) covers its whole index,
    /// so it sorts after every event of that index.
    pub fn position(&self) -> (u64, u32) {
        let bad = |e: std::num::ParseIntError| -> ! {
            panic!("event id {:?} is not INDEX[.SEQ] ({e})", self.id)
        };
        let (index, seq) = match self.id.split_once('.') {
            Some((index, seq)) => (index, seq.parse().unwrap_or_else(|e| bad(e))),
            None => (self.id.as_str(), u32::MAX),
        };
        (index.parse().unwrap_or_else(|e| bad(e)), seq)
    }
}

/// An open `GET` of an SSE endpoint on a raw socket, so the test controls every read's
/// deadline and sees exactly when the server ends the stream.
pub struct SseStream {
    reader: BufReader<ChunkedBody<BufReader<TcpStream>>>,
    socket: TcpStream,
    /// Response headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Every event read so far, for failure messages.
    seen: Vec<SseEvent>,
}

impl SseStream {
    /// Opens `GET path` on `addr`, sending `Last-Event-ID` when given, and panics unless the
    /// answer is a 200 chunked event stream.
    pub fn open(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> SseStream {
        let socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("setting a read timeout");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        (&socket)
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("sending GET {path}: {e}"));

        let mut head = BufReader::new(socket.try_clone().expect("cloning the socket"));
        let mut status_line = String::new();
        head.read_line(&mut status_line)
            .unwrap_or_else(|e| panic!("reading the status of GET {path}: {e}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            head.read_line(&mut line)
                .unwrap_or_else(|e| panic!("reading the headers of GET {path}: {e}"));
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert!(
            status_line.starts_with("HTTP/1.1 200"),
            "GET {path} answered {status_line:?} {headers:?}"
        );
        assert_eq!(
            header("transfer-encoding"),
            Some("chunked"),
            "an event stream has no length: {headers:?}"
        );
        SseStream {
            reader: BufReader::new(ChunkedBody::new(head)),
            socket,
            headers,
            seen: Vec::new(),
        }
    }

    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next event, or `None` when the server ended the stream. Panics if neither happens
    /// within `timeout`.
    #[track_caller]
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut event = SseEvent {
            event: String::new(),
            id: String::new(),
            data: String::new(),
        };
        let mut has_data = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no event within {timeout:?}; events so far: {:#?}",
                self.seen
            );
            self.socket
                .set_read_timeout(Some(left))
                .expect("setting a read timeout");
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "no event within {timeout:?}; events so far: {:#?}",
                        self.seen
                    )
                }
                // A reset connection is also the end of the stream.
                Err(_) => return None,
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !event.event.is_empty() || has_data {
                    self.seen.push(event.clone());
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_owned(),
                "id" => event.id = value.to_owned(),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// The next event, which must come within `timeout`.
    #[track_caller]
    pub fn expect_event(&mut self, timeout: Duration) -> SseEvent {
        self.next_event(timeout).unwrap_or_else(|| {
            panic!(
                "the stream ended while an event was expected; events so far: {:#?}",
                self.seen
            )
        })
    }
}

/// Reads an HTTP/1.1 chunked body as the plain bytes it carries; end of body reads as EOF.
struct ChunkedBody<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> ChunkedBody<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for ChunkedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut size_line = String::new();
            if self.inner.read_line(&mut size_line)? == 0 {
                self.done = true;
                return Ok(0);
            }
            let size = size_line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("bad chunk size {size_line:?}: {e}"),
                )
            })?;
            if size == 0 {
                self.done = true;
                return Ok(0);
            }
            self.left = size;
        }
        let wanted = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..wanted])?;
        if n == 0 {
            self.done = true;
            return Ok(0);
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

impl Agent {
    /// Opens a watch stream (`/v1/watch` or `/v1/watch/{service}`), resuming after
    /// `last_event_id` when given.
    pub fn watch(&self, path: &str, last_event_id: Option<&str>) -> SseStream {
        SseStream::open(self.addr, path, last_event_id)
    }
}

// ---------------------------------------------------------------------------------------------
// A relay: a fixed address in front of a peer that restarts on another port
// ---------------------------------------------------------------------------------------------

/// A TCP relay on a fixed loopback port that forwards each connection to a target the test
/// switches. An agent pointed at the relay (`--upstream-consul`) keeps one address while the
/// peer behind it is killed and restarted on a new ephemeral port. Without a target (or when
/// the target does not answer) a connection is accepted and closed at once, which a client sees
/// as the peer being down.
pub struct TcpRelay {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
}

impl TcpRelay {
    /// Starts relaying to `target` (or to nothing).
    pub fn start(target: Option<SocketAddr>) -> TcpRelay {
        let runtime = backend_runtime("tcp-relay");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the relay");
        let addr = listener.local_addr().expect("relay address");
        let target = Arc::new(Mutex::new(target));
        let current = Arc::clone(&target);
        runtime.spawn(async move {
            loop {
                let Ok((mut downstream, _)) = listener.accept().await else {
                    continue;
                };
                let target = *current.lock().expect("relay target lock");
                tokio::spawn(async move {
                    let Some(target) = target else {
                        return;
                    };
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                    }
                });
            }
        });
        TcpRelay {
            runtime: Some(runtime),
            addr,
            target,
        }
    }

    /// `http://<relay address>`, for `--upstream-consul`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forwards new connections to `target` from now on (connections already relayed stay
    /// with the old target until it closes them).
    pub fn set_target(&self, target: Option<SocketAddr>) {
        *self.target.lock().expect("relay target lock") = target;
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests in flight: blocking queries observed from the test's side
// ---------------------------------------------------------------------------------------------

/// What a [`PendingGet`]'s thread hands back: when the request left, when its answer was read,
/// and the answer (or why there was none).
type Answered = (Instant, Instant, Result<Response, String>);

/// A `GET` running on its own thread with its own client, so a test can observe that a
/// blocking query is still open, make a change, and measure when the answer arrives. Every
/// wait on it is a bounded wait on the answer itself (a channel `recv_timeout`), never a sleep.
pub struct PendingGet {
    path: String,
    answer: mpsc::Receiver<Answered>,
}

/// A [`PendingGet`]'s answer and its timing.
#[derive(Debug)]
pub struct Answer {
    /// The response.
    pub response: Response,
    /// When the request was sent.
    pub sent: Instant,
    /// When the whole response had been read.
    pub arrived: Instant,
}

impl Answer {
    /// How long the request was open.
    pub fn took(&self) -> Duration {
        self.arrived.saturating_duration_since(self.sent)
    }
}

impl PendingGet {
    /// Asserts that no answer arrives within `window`: the query is still blocked.
    #[track_caller]
    pub fn assert_pending_for(&self, window: Duration) {
        match self.answer.recv_timeout(window) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok((sent, arrived, answer)) => panic!(
                "GET {} answered after {:?} while it should still be blocked: {answer:?}",
                self.path,
                arrived.saturating_duration_since(sent)
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("GET {}: the request thread went away", self.path)
            }
        }
    }

    /// The answer, which must arrive within `timeout` from now.
    #[track_caller]
    pub fn answer_within(self, timeout: Duration) -> Answer {
        match self.answer.recv_timeout(timeout) {
            Ok((sent, arrived, Ok(response))) => Answer {
                response,
                sent,
                arrived,
            },
            Ok((_, _, Err(error))) => panic!("GET {} failed: {error}", self.path),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("GET {} did not answer within {timeout:?}", self.path)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("GET {}: the request thread went away", self.path)
            }
        }
    }
}

impl Agent {
    /// Starts `GET path` on a thread of its own and returns at once (for blocking queries).
    /// The thread is detached: if the test fails first, it ends when the agent goes away.
    pub fn get_in_background(&self, path: &str) -> PendingGet {
        let url = format!("{}{path}", self.base_url());
        let (sender, answer) = mpsc::channel();
        thread::Builder::new()
            .name("pending-get".into())
            .spawn(move || {
                let client = http_client();
                let sent = Instant::now();
                let result = client
                    .get(&url)
                    .send()
                    .and_then(Response::read)
                    .map_err(|e| format!("{e:?}"));
                let _ = sender.send((sent, Instant::now(), result));
            })
            .expect("spawning a request thread");
        PendingGet {
            path: path.to_owned(),
            answer,
        }
    }

    /// `GET path` with extra request headers (`If-None-Match`, ...).
    pub fn get_with_headers(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base_url());
        let mut request = self.http.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, &format!("GET {path} with {headers:?}"))
    }
}
