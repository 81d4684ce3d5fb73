//! TTL heartbeats through any agent: a heartbeat for a check another member runs is handed to
//! that member's HTTP API, so the owner's TTL timer restarts.
//!
//! Writing the status through etcd instead would not do: a heartbeat that does not change the
//! status writes nothing (DESIGN.md), so the owner would never hear of it and its TTL would
//! expire under a service that heartbeats faithfully through another agent.

use reqwest::{Client, StatusCode};
use std::time::Duration;
use wayfinder_catalog::Status;
use wayfinder_store::MemberRecord;

/// Set on a forwarded heartbeat: the receiving agent handles it itself, even if its view of
/// the member set names another owner, so a heartbeat is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-wayfinder-forwarded";

/// How long a forwarded heartbeat may take before the agent falls back to writing the status.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a heartbeat could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client that forwards TTL heartbeats: {0}")]
    Client(String),
    /// The owner's address is not a usable URL.
    #[error("member {member} announces an unusable address {address:?}")]
    Address {
        /// The member's ID.
        member: String,
        /// What it announced.
        address: String,
    },
    /// The owner could not be reached, or did not answer in time.
    #[error("member {member} at {address} unreachable: {source}")]
    Unreachable {
        /// The member's ID.
        member: String,
        /// Its address.
        address: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The owner answered with something other than 200.
    #[error("member {member} answered {status} to a forwarded heartbeat")]
    Refused {
        /// The member's ID.
        member: String,
        /// Its answer's status.
        status: StatusCode,
    },
}

/// Forwards TTL heartbeats to the member that runs the check.
#[derive(Debug, Clone)]
pub struct Forwarder {
    http: Client,
}

impl Forwarder {
    /// A forwarder with its own small HTTP client (plain HTTP: agents' APIs are plain HTTP).
    pub fn new() -> Result<Self, ForwardError> {
        let http = Client::builder()
            .tls_backend_preconfigured(
                wayfinder_client::tls::platform_config()
                    .map_err(|e| ForwardError::Client(e.to_string()))?,
            )
            // Agents talk to each other directly; a proxy meant for the outside must not
            // capture it.
            .no_proxy()
            .timeout(FORWARD_TIMEOUT)
            .user_agent(concat!(
                "wayfinder/",
                env!("CARGO_PKG_VERSION"),
                " (heartbeat forward)"
            ))
            .build()
            .map_err(|e| ForwardError::Client(e.to_string()))?;
        Ok(Self { http })
    }

    /// Hands the heartbeat to `owner` as `PUT /v1/agent/check/update/{check}`.
    pub async fn heartbeat(
        &self,
        owner: &MemberRecord,
        check: &str,
        status: Status,
        output: &str,
        token: Option<&str>,
    ) -> Result<(), ForwardError> {
        let bad_address = || ForwardError::Address {
            member: owner.id.clone(),
            address: owner.address.clone(),
        };
        let mut url = reqwest::Url::parse(&format!("http://{}/", owner.address))
            .map_err(|_| bad_address())?;
        url.path_segments_mut()
            .map_err(|()| bad_address())?
            .clear()
            .extend(["v1", "agent", "check", "update", check]);
        let body = serde_json::json!({"Status": status.as_str(), "Output": output});
        let mut request = self.http.put(url).header(FORWARDED_HEADER, "1").json(&body);
        // Under ACLs the owner checks the caller's token again.
        if let Some(token) = token {
            request = request.header("X-Consul-Token", token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ForwardError::Unreachable {
                member: owner.id.clone(),
                address: owner.address.clone(),
                source,
            })?;
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(ForwardError::Refused {
                member: owner.id.clone(),
                status,
            }),
        }
    }
}
