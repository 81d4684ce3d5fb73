//! TCP checks: a connection accepted within the timeout is passing, anything else critical.

use std::time::Duration;
use wayfinder_catalog::{Status, go_duration};

use super::ProbeResult;

/// A TCP check prepared to run.
#[derive(Debug)]
pub(crate) struct TcpProbe {
    address: String,
    timeout: Duration,
}

impl TcpProbe {
    pub(crate) fn new(address: &str, timeout: Duration) -> Self {
        Self {
            address: address.to_owned(),
            timeout,
        }
    }

    /// Connects and hangs up (Consul's output: `TCP connect <addr>: Success`).
    pub(crate) async fn run(&self) -> ProbeResult {
        let connect = tokio::net::TcpStream::connect(self.address.as_str());
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(_stream)) => ProbeResult::new(
                Status::Passing,
                format!("TCP connect {}: Success", self.address),
            ),
            Ok(Err(error)) => {
                ProbeResult::critical(format!("TCP connect {}: {error}", self.address))
            }
            Err(_) => ProbeResult::critical(format!(
                "TCP connect {}: timed out after {}",
                self.address,
                go_duration(self.timeout)
            )),
        }
    }
}
