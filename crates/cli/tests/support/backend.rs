//! Backend instances for the gateway tests: real processes (`fixtures/backend.py`, standard
//! library only) that can be killed with SIGKILL and restarted on the same port.

use super::eventually;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a backend may take to print its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One backend process, answering as `id`.
pub struct Backend {
    /// What it answers as (`"id"` in its JSON).
    pub id: String,
    /// Where it listens.
    pub addr: SocketAddr,
    status: Option<u16>,
    /// Certificate and key files when it speaks HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/backend.py")
}

fn spawn(
    id: &str,
    port: u16,
    status: Option<u16>,
    tls: Option<&(PathBuf, PathBuf)>,
) -> Result<(Child, SocketAddr), String> {
    let mut command = Command::new("python3");
    command.arg(script()).arg(id).arg(port.to_string());
    if let Some((cert, key)) = tls {
        command
            .env("BACKEND_TLS_CERT", cert)
            .env("BACKEND_TLS_KEY", key);
    }
    if let Some(status) = status {
        command.arg(status.to_string());
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 tests/fixtures/backend.py");
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("backend {id}: no stdout to read its address from"));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(START_TIMEOUT)
        .map_err(|_| format!("backend {id} printed no port within {START_TIMEOUT:?}"))?;
    match line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
    {
        Some(addr) => Ok((child, addr)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("backend {id} printed {line:?}, not its address"))
        }
    }
}

impl Backend {
    /// Starts a backend answering 200.
    pub fn start(id: &str) -> Backend {
        Self::start_with(id, None)
    }

    /// Starts a backend that answers every plain request with `status` (up, but broken).
    pub fn failing(id: &str, status: u16) -> Backend {
        Self::start_with(id, Some(status))
    }

    /// Starts a backend answering 200 over HTTPS with this certificate and key (PEM files).
    pub fn start_tls(id: &str, cert: PathBuf, key: PathBuf) -> Backend {
        Self::start_full(id, None, Some((cert, key)))
    }

    fn start_with(id: &str, status: Option<u16>) -> Backend {
        Self::start_full(id, status, None)
    }

    fn start_full(id: &str, status: Option<u16>, tls: Option<(PathBuf, PathBuf)>) -> Backend {
        let (child, addr) = spawn(id, 0, status, tls.as_ref()).unwrap_or_else(|e| panic!("{e}"));
        Backend {
            id: id.to_owned(),
            addr,
            status,
            tls,
            child: Some(child),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGKILL: connections are reset, new ones refused.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`Backend::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port();
        // The port was just released; binding can race the kernel's cleanup for a moment.
        let (id, status, tls) = (self.id.clone(), self.status, self.tls.clone());
        let (child, addr) = eventually(
            Duration::from_secs(10),
            "the backend's port to be free again",
            || spawn(&id, port, status, tls.as_ref()),
        );
        self.child = Some(child);
        self.addr = addr;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}
