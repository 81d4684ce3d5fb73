//! A real 3-member etcd cluster on free loopback ports, for the cluster tests (issue 7).
//!
//! [`EtcdCluster`] starts the Debian `etcd` binary three times (installed by `scripts/test`,
//! flags from reference §2a), waits until every member answers `GET /health` with
//! `"health":"true"`, and can kill a member (SIGKILL: an outage) and start it again on the same
//! ports and data dir (it rejoins). Dropping it kills every member; the data dirs are
//! temporary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;
use tempfile::TempDir;
use tokio::time::Instant;

/// How long a member may take to become healthy (about 1.5 s for a fresh cluster, §2a).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// Three etcd members on `127.0.0.1`.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("finding a free port");
    listener.local_addr().expect("local address").port()
}

impl EtcdCluster {
    /// Starts a fresh 3-member cluster and waits until every member is healthy.
    pub fn start() -> EtcdCluster {
        let members = (1..=3)
            .map(|i| Member {
                name: format!("n{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("wayfinder-etcd-")
            .tempdir()
            .expect("creating etcd data dirs");
        let mut cluster = EtcdCluster { members, dir };
        for i in 0..cluster.members.len() {
            cluster.launch(i);
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// `etcd://127.0.0.1:A,127.0.0.1:B,127.0.0.1:C`, for `--store`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// `etcd://127.0.0.1:PORT` naming member `i` alone: an agent that loses etcd when that
    /// one member dies, while agents using [`EtcdCluster::url`] go on.
    pub fn member_url(&self, i: usize) -> String {
        format!("etcd://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Compacts the key-value history up to `revision` (physically), through member `i`'s
    /// HTTP gateway: a watch from an older revision then fails with "compacted".
    pub fn compact(&self, i: usize, revision: u64) {
        let body = format!("{{\"revision\":\"{revision}\",\"physical\":true}}");
        let answer = self.http(i, "POST", "/v3/kv/compaction", &body);
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "compaction at {revision} failed: {answer}"
        );
    }

    /// One HTTP/1.0 request to member `i`'s client port; the whole answer, or "" on failure.
    fn http(&self, i: usize, method: &str, path: &str, body: &str) -> String {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.members[i].client_port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return String::new();
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    fn launch(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect();
        let data_dir: PathBuf = self.dir.path().join(&self.members[i].name);
        let member = &mut self.members[i];
        assert!(member.child.is_none(), "{} is already running", member.name);
        let client = format!("http://127.0.0.1:{}", member.client_port);
        let peer = format!("http://127.0.0.1:{}", member.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &member.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "wayfinder-test"])
            .args(["--logger=zap", "--log-outputs=stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting etcd failed ({e}); is it installed? scripts/test installs it")
            });
        member.child = Some(child);
    }

    fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + READY_TIMEOUT;
        // A member restarted on its fixed ports can find one still held for a moment (by its
        // previous process's sockets, or taken by another test's ephemeral bind): it exits at
        // once. Launch it again a few times before calling that a failure.
        let mut relaunches = 0;
        loop {
            if self.healthy(i) {
                return;
            }
            let member = &mut self.members[i];
            if let Some(child) = member.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                assert!(
                    relaunches < 3,
                    "etcd {} exited at start-up with {status}, {relaunches} relaunches",
                    member.name
                );
                relaunches += 1;
                member.child = None;
                thread::sleep(Duration::from_millis(500));
                self.launch(i);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} was not healthy within {READY_TIMEOUT:?}",
                member.name
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether member `i` answers `GET /health` with `"health":"true"` (it has a leader).
    fn healthy(&self, i: usize) -> bool {
        self.http(i, "GET", "/health", "")
            .contains("\"health\":\"true\"")
    }

    /// Kills member `i` (SIGKILL: an outage) and waits for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its ports and data dir, and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.launch(i);
        self.wait_healthy(i);
    }

    /// Kills every member (followers and leader alike: SIGKILL needs no leadership transfer).
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every killed member again and waits until all are healthy.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.launch(i);
            }
        }
        for i in 0..self.members.len() {
            self.wait_healthy(i);
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
