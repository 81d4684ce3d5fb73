//! A real `memcached` on a free loopback port, for the cache tests (issue 3, "Memcached").
//!
//! [`Memcached`] starts the Debian binary (installed by `scripts/test`), waits until it answers,
//! can be killed and restarted on the same port (an outage and its end), and reads keys with
//! the plain text protocol so a test sees exactly the bytes stored, independent of the client
//! crate the agent uses. Dropping it kills the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;
use tokio::time::Instant;

/// How long memcached may take to accept connections (it needs ~0.3 s; reference §2b).
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One memcached process on `127.0.0.1`.
pub struct Memcached {
    port: u16,
    child: Option<Child>,
}

impl Memcached {
    /// Starts memcached on a free port and waits until it answers `version`.
    pub fn start() -> Memcached {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("finding a free port");
            listener.local_addr().expect("local address").port()
        };
        let mut memcached = Memcached { port, child: None };
        memcached.launch();
        memcached
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "memcached is already running");
        let mut command = Command::new("memcached");
        command.args([
            "-l",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "0",
            "-m",
            "16",
        ]);
        // memcached refuses to run as root without -u, and -u is refused when not root.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        if root {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting memcached failed ({e}); is it installed? scripts/test installs it")
            });
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.version().is_some() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "memcached exited at start-up with {status} (port {} taken?)",
                    self.port
                );
            }
            assert!(
                Instant::now() < deadline,
                "memcached did not answer on port {} within {READY_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `memcached://127.0.0.1:PORT`, for `--cache`.
    pub fn url(&self) -> String {
        format!("memcached://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (as a restarted memcached is).
    pub fn restart(&mut self) {
        self.launch();
    }

    fn connect(&self) -> Option<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        Some(stream)
    }

    fn version(&self) -> Option<String> {
        let mut stream = self.connect()?;
        stream.write_all(b"version\r\n").ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        line.starts_with("VERSION").then_some(line)
    }

    /// The value stored under `key` (text protocol `get`), or `None` when there is none.
    /// Panics if memcached does not answer.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut stream = self
            .connect()
            .unwrap_or_else(|| panic!("memcached on port {} is not answering", self.port));
        stream
            .write_all(format!("get {key}\r\n").as_bytes())
            .expect("sending get");
        let mut reader = BufReader::new(stream);
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .expect("reading the get answer");
        if header == "END\r\n" {
            return None;
        }
        // VALUE <key> <flags> <bytes>
        let length: usize = header
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected get answer {header:?}"));
        let mut value = vec![0; length + 2];
        reader.read_exact(&mut value).expect("reading the value");
        value.truncate(length);
        Some(value)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}
